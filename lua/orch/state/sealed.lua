-- state/sealed.lua: sensitive values at rest. What the store keeps of a
-- secret (an infrastructure attribute, an output, a saved plan's
-- attributes) is sealed with a key kept outside the store, so the store
-- file can be copied, backed up or shared and grep finds no secret in it.
-- The key: ORCH_STATE_KEY (64 hex digits), else STORE.key beside the
-- store, made 0600 on first use. Lose the key and the sealed values are
-- lost with it (the resources themselves are not: refresh reads them).
local fs = require("orch.core.fs")
local json = require("cjson")
local secret = require("orch.secret")

local M = {}

local MARK = "$sealed"

local memory_key   -- a :memory: store's key lives as long as the process

local function hex_key(text)
  if not text:match("^%x+$") or #text ~= 64 then
    error("ORCH_STATE_KEY must be 64 hex digits (32 bytes), as `openssl rand -hex 32` prints", 0)
  end
  return (text:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

--- The key of the store at path (made when make is true and there is none),
-- and where it comes from; nil when there is none and make is false.
function M.key(path, make)
  local seal = require("orch.core.seal")
  local env = os.getenv("ORCH_STATE_KEY")
  if env and env ~= "" then return hex_key(env), "ORCH_STATE_KEY" end
  if path == ":memory:" then
    memory_key = memory_key or seal.key()
    return memory_key, "memory"
  end
  local file = path .. ".key"
  local key = fs.read(file)
  if key and #key == 32 then return key, file end
  if key then error(("%s: not a state key (32 bytes); restore it from a backup or set ORCH_STATE_KEY"):format(file), 0) end
  if not make then return nil, file end
  -- two processes making the first key at once must end with one key:
  -- the lock orders them and the second finds the first's
  local lock, err, code = fs.lock(file .. ".lock")
  for _ = 1, 100 do
    if lock or code ~= "LOCKED" then break end
    require("orch.core.loop").sleep(0.05)
    lock, err, code = fs.lock(file .. ".lock")
  end
  if not lock then error(("can't make the state key: %s"):format(err), 0) end
  key = fs.read(file)
  if not key then
    key = seal.key()
    local ok, werr = fs.write(file, key, { mode = "0600" })
    if not ok then lock:unlock(); error(("can't make the state key: %s"):format(werr), 0) end
  end
  lock:unlock()
  fs.remove(file .. ".lock")
  return key, file
end

--- A sealer for the store at path: seal(value) -> { ["$sealed"] = text }
-- (any value JSON holds, secrets revealed), open(marker) -> the value.
function M.for_store(path)
  local key, source
  local self = {}
  local function get(make)
    if not key then key, source = M.key(path, make) end
    return key
  end
  function self.seal(v)
    return { [MARK] = require("orch.core.seal").seal(get(true), json.encode({ (secret.reveal_deep(v)) })) }
  end
  function self.open(marker, what)
    local k = get(false)
    if not k then
      error(("%s is sealed in the state store, and its key %s is missing: restore that file or set ORCH_STATE_KEY"):format(
        what or "a sensitive value", source), 0)
    end
    local plain, err = require("orch.core.seal").open(k, marker[MARK])
    if not plain then error(("%s: %s (%s)"):format(what or "a sensitive value", err, source), 0) end
    return json.decode(plain)[1]
  end
  --- A copy of v with each secret in it sealed (a saved plan's
  -- attributes), and each string that holds a secret's text.
  function self.seal_secrets(v)
    if secret.is(v) or (type(v) == "string" and secret.contains(v)) then return self.seal(v) end
    if type(v) ~= "table" then return v end
    local copy = {}
    for k, x in pairs(v) do copy[k] = self.seal_secrets(x) end
    return copy
  end
  --- seal_secrets undone: each sealed value a secret again.
  function self.open_secrets(v, what)
    if M.is(v) then return secret.wrap_deep(self.open(v, what), what) end
    if type(v) ~= "table" then return v end
    local copy = {}
    for k, x in pairs(v) do copy[k] = self.open_secrets(x, what) end
    return copy
  end
  return self
end

--- Is v a sealed marker?
function M.is(v) return type(v) == "table" and type(v[MARK]) == "string" end

return M
