-- infra/state.lua: infrastructure state in the state store: per workspace
-- a lineage and a serial, its resources (address, type, attributes,
-- dependencies), its outputs, and the lock every writing command holds.
local json = require("cjson")
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local info = require("orch.core.info")
local secret = require("orch.secret")
local sealed = require("orch.state.sealed")
local orphans = require("orch.state.orphans")

local M = {}

local Workspace = {}
Workspace.__index = Workspace

local function uuid()
  local f = io.open("/proc/sys/kernel/random/uuid")
  local id = f and f:read("l")
  if f then f:close() end
  return id or ("%x-%x"):format(os.time(), info.pid)
end

--- The workspace `name` of store (made on first use), as an object.
function M.open(store, name)
  local db = store.db
  local row = db:row("SELECT * FROM infra_workspaces WHERE name = ?", name)
  if not row then
    assert(db:exec("INSERT OR IGNORE INTO infra_workspaces (name, lineage, serial) VALUES (?, ?, 0)", name, uuid()))
    row = db:row("SELECT * FROM infra_workspaces WHERE name = ?", name)
  end
  return setmetatable({ store = store, db = db, name = name, lineage = row.lineage, serial = row.serial,
    sealer = sealed.for_store(store.path) }, Workspace)
end

-- A stored sensitive value back as a secret (a store from before sealing
-- holds it as it is).
local function unseal(self, v, what)
  if sealed.is(v) then v = self.sealer.open(v, what) end
  return secret.wrap_deep(v, what)
end

local function decode(self, r)
  r.attrs = json.decode(r.attrs)
  r.deps = json.decode(r.deps)
  r.sensitive = r.sensitive and json.decode(r.sensitive) or {}
  for _, k in ipairs(r.sensitive) do
    if r.attrs[k] ~= nil then r.attrs[k] = unseal(self, r.attrs[k], r.address .. "." .. k) end
  end
  return r
end

--- Every resource in state, by address, and their addresses in order.
function Workspace:resources()
  local by, order = {}, {}
  for _, r in ipairs(self.db:rows("SELECT * FROM infra_resources WHERE workspace = ? ORDER BY address", self.name)) do
    by[r.address] = decode(self, r)
    order[#order + 1] = r.address
  end
  return by, order
end

function Workspace:get(address)
  local r = self.db:row("SELECT * FROM infra_resources WHERE workspace = ? AND address = ?", self.name, address)
  return r and decode(self, r)
end

-- Each write is its own transaction and moves the serial on: a failure or
-- a kill -9 loses nothing already done, and a saved plan made before it
-- is stale.
local function write(self, fn)
  assert(self.store:transaction(function(st)
    fn(st.db)
    assert(st.db:exec("UPDATE infra_workspaces SET serial = serial + 1 WHERE name = ?", self.name))
    return true
  end))
  self.serial = self.db:value("SELECT serial FROM infra_workspaces WHERE name = ?", self.name)
end

--- Record resource r { address, type, attrs, deps (list), sensitive (list:
-- the attributes kept sealed) }.
function Workspace:put(r)
  local attrs = {}
  for k, v in pairs(r.attrs) do attrs[k] = secret.reveal_deep(v) end
  for _, k in ipairs(r.sensitive or {}) do
    if attrs[k] ~= nil then attrs[k] = self.sealer.seal(attrs[k]) end
  end
  write(self, function(db)
    assert(db:exec("INSERT OR REPLACE INTO infra_resources (workspace, address, type, attrs, deps, sensitive, updated)"
      .. " VALUES (?, ?, ?, ?, ?, ?, ?)", self.name, r.address, r.type, json.encode(attrs),
      json.encode(r.deps or {}), json.encode(r.sensitive or {}), loop.time()))
  end)
end

function Workspace:remove(address)
  write(self, function(db)
    assert(db:exec("DELETE FROM infra_resources WHERE workspace = ? AND address = ?", self.name, address))
  end)
end

--- Rename a resource in state (orch state mv); false if FROM is absent or TO taken.
function Workspace:move(from, to)
  if not self:get(from) then return nil, ("no %s in state (workspace %s)"):format(from, self.name) end
  if self:get(to) then return nil, ("%s is already in state"):format(to) end
  write(self, function(db)
    assert(db:exec("UPDATE infra_resources SET address = ? WHERE workspace = ? AND address = ?", to, self.name, from))
  end)
  return true
end

local function plain_json(v) return json.encode({ (secret.reveal_deep(v)) }) end

--- Record the outputs { [name] = { value, sensitive } } (a sensitive one,
-- or one holding a secret, sealed); the same ones again write nothing
-- (the serial moves only when state changes).
function Workspace:set_outputs(outputs)
  local same, n = true, 0
  for _, o in ipairs(self:outputs()) do
    local new = outputs[o.name]
    n = n + 1
    if not new or plain_json(new.value) ~= plain_json(o.value) or (new.sensitive or false) ~= o.sensitive then
      same = false
    end
  end
  for _ in pairs(outputs) do n = n - 1 end
  if same and n == 0 then return end
  write(self, function(db)
    assert(db:exec("DELETE FROM infra_outputs WHERE workspace = ?", self.name))
    for name, o in pairs(outputs) do
      local hidden = o.sensitive or secret.find(o.value) ~= nil
      local value = hidden and json.encode({ self.sealer.seal(o.value) }) or plain_json(o.value)
      assert(db:exec("INSERT INTO infra_outputs (workspace, name, value, sensitive) VALUES (?, ?, ?, ?)",
        self.name, name, value, hidden and 1 or 0))
    end
  end)
end

--- The recorded outputs, { name, value, sensitive }, in name order; a
-- sensitive value comes back a secret.
function Workspace:outputs()
  local out = {}
  for _, r in ipairs(self.db:rows("SELECT * FROM infra_outputs WHERE workspace = ? ORDER BY name", self.name)) do
    local value, sensitive = json.decode(r.value)[1], r.sensitive == 1
    if sensitive then value = unseal(self, value, "output " .. r.name) end
    out[#out + 1] = { name = r.name, value = value, sensitive = sensitive }
  end
  return out
end

-- ---- the lock -----------------------------------------------------------

local function is_dead(l)
  if l.hostname ~= info.hostname then return false end
  local stat = fs.read("/proc/" .. l.pid .. "/stat")
  return stat == nil or stat:match("^%d+ %(.*%) (%a)") == "Z"
end

local function holder(l)
  return ("lock %s: pid %d on %s (user %s), `%s`, since %s"):format(l.id, l.pid, l.hostname, l.who, l.operation,
    os.date("%Y-%m-%d %H:%M:%S", math.floor(l.since)))
end

--- Take the workspace's lock for `operation`, waiting up to timeout
-- seconds while a live process holds it. A lock left by a process that
-- died on this machine is taken over, and warn(message) says so. Returns
-- the lock id, or nil and a message naming the holder.
function Workspace:lock(operation, timeout, warn)
  local id, start = uuid(), loop.now()
  while true do
    local got, err = self.store:transaction(function(st)
      local l = st.db:row("SELECT * FROM infra_locks WHERE workspace = ?", self.name)
      if l and is_dead(l) then
        warn(("taking over the lock of a process that died: %s"):format(holder(l)))
        local ended = orphans.end_left_by(self.store.path, l.pid)
        if #ended > 0 then warn(("ended what it left running: %s"):format(table.concat(ended, "; "))) end
        assert(st.db:exec("DELETE FROM infra_locks WHERE workspace = ?", self.name))
        l = nil
      end
      if l then return false, holder(l) end
      assert(st.db:exec("INSERT INTO infra_locks (workspace, id, pid, hostname, who, operation, since)"
        .. " VALUES (?, ?, ?, ?, ?, ?, ?)", self.name, id, info.pid, info.hostname, os.getenv("USER") or info.user,
        operation, loop.time()))
      return true
    end)
    if got == nil then return nil, err end
    if got then
      self.lock_id = id
      orphans.journal(self.store.path)
      return id
    end
    if loop.now() - start >= timeout then
      return nil, ("workspace %s is locked by %s; gave up after %g s (orch state unlock %s forces it)"):format(
        self.name, err, timeout, err:match("^lock (%S+):"))
    end
    loop.sleep(math.min(0.2, timeout))
  end
end

function Workspace:unlock()
  if self.lock_id then
    self.db:exec("DELETE FROM infra_locks WHERE workspace = ? AND id = ?", self.name, self.lock_id)
    self.lock_id = nil
  end
end

--- orch state unlock ID: drop a lock whoever holds it.
function Workspace:force_unlock(id)
  local n = self.db:exec("DELETE FROM infra_locks WHERE workspace = ? AND id = ?", self.name, id)
  if n == 0 then return nil, ("workspace %s has no lock %s"):format(self.name, id) end
  return true
end

return M
