-- host/ssh.lua: connecting to a host the way a user's OpenSSH would: ~/.ssh/config
-- (HostName, User, Port, IdentityFile), host keys checked against
-- known_hosts, then the agent, key files and a password, in that order.
-- `~` is $HOME, so a user or a spec can point orch at another home.
local core = require("orch.core.ssh")
local fs = require("orch.core.fs")
local known_hosts = require("orch.host.known_hosts")

local M = {}

local function home()
  return os.getenv("HOME") or "/root"
end

local function expand(path)
  if path and path:sub(1, 2) == "~/" then return home() .. path:sub(2) end
  return path
end

local glob_match = known_hosts.glob_match

--- The ~/.ssh/config settings for `name` that orch honours: { hostname,
-- user, port, identityfile = { ... } }. First value wins, as in ssh.
function M.config_for(name, path)
  path = path or (home() .. "/.ssh/config")
  local text = fs.read(path)
  local found = { identityfile = {} }
  if not text then return found end
  local active = true   -- lines before any Host apply to all
  for line in text:gmatch("[^\n]+") do
    line = line:gsub("#.*$", "")
    local key, value = line:match("^%s*(%S+)%s*=?%s*(.-)%s*$")
    if key then
      key = key:lower()
      value = value:gsub('^"(.*)"$', "%1")
      if key == "host" then
        active = false
        for pat in value:gmatch("%S+") do
          local negated = pat:sub(1, 1) == "!"
          if glob_match(negated and pat:sub(2) or pat, name) then
            if negated then active = false; break end
            active = true
          end
        end
      elseif key == "match" then
        active = false  -- not supported: its block is skipped rather than misread
      elseif active then
        if key == "identityfile" then
          found.identityfile[#found.identityfile + 1] = expand(value)
        elseif (key == "hostname" or key == "user" or key == "port") and found[key] == nil then
          found[key] = value
        end
      end
    end
  end
  return found
end

local DEFAULT_KEYS = { "id_ed25519", "id_ecdsa", "id_rsa" }

-- Key files to try: the inventory's, then ~/.ssh/config's, then the defaults.
local function key_files(h, cfg)
  local keys, seen = {}, {}
  local function add(path)
    path = expand(path)
    if path and not seen[path] and fs.stat(path) then
      seen[path] = true
      keys[#keys + 1] = path
    end
  end
  add(h.key_file)
  for _, k in ipairs(cfg.identityfile) do add(k) end
  for _, k in ipairs(DEFAULT_KEYS) do add(home() .. "/.ssh/" .. k) end
  return keys
end

-- An encrypted key's passphrase: ORCH_SSH_PASSPHRASE, else asked on the
-- terminal once per key file.
local passphrases = {}
local function passphrase_for(path)
  if passphrases[path] then return passphrases[path] end
  local p = os.getenv("ORCH_SSH_PASSPHRASE")
  if not p then
    p = require("orch.core.term").read_secret(("Enter passphrase for key '%s': "):format(path))
  end
  passphrases[path] = p
  return p
end

-- Keys first, without asking the server which methods it takes (a round
-- trip, and nearly every server takes keys); the methods are asked only
-- when no key got in, for a password or to say what the server wants.
local function try_auth(sess, h, user, cfg)
  local reasons = {}
  local function keys()
    if os.getenv("SSH_AUTH_SOCK") and h.agent ~= false then
      local ok, err = sess:auth_agent(user)
      if ok then return true end
      reasons[#reasons + 1] = err
    end
    for _, key in ipairs(key_files(h, cfg)) do
      local ok, err, code = sess:auth_key(user, key)
      if ok then return true end
      if code == "EKEYFILE" then   -- most likely encrypted: ask for its passphrase
        local pass = passphrase_for(key)
        if pass then
          ok, err = sess:auth_key(user, key, pass)
          if ok then return true end
        end
      end
      reasons[#reasons + 1] = ("%s (%s)"):format(err, key)
    end
  end
  if keys() then return true end
  local methods = assert(sess:auth_methods(user))
  if #methods == 0 then return true end   -- the server let us in already
  local allowed = {}
  for _, m in ipairs(methods) do allowed[m] = true end
  if not allowed.publickey then reasons = {} end   -- (its refusals say nothing)
  if allowed.password and h.password then
    local ok, err = sess:auth_password(user, require("orch.secret").reveal(h.password))
    if ok then return true end
    reasons[#reasons + 1] = err
  end
  if #reasons == 0 then
    reasons[1] = ("no usable credentials: the server accepts %s; give key_file or password"):format(
      table.concat(methods, ", "))
  end
  return nil, table.concat(reasons, "; ")
end

--- Open an authenticated session to inventory host h (address, port,
-- user, key_file, password, known_hosts, host_key_checking, connect_timeout).
-- Returns the session, or nil, "host: reason", code.
function M.connect(h)
  local cfg = M.config_for(h.address or h.name)
  -- The inventory fills in address = name and port 22 when it has none;
  -- those defaults give way to ~/.ssh/config, as ssh's own defaults do.
  local name = h.address or cfg.hostname or h.name
  if cfg.hostname and (h.address == nil or h.address == h.name) then name = cfg.hostname end
  local port = h.port
  if cfg.port and (port == nil or port == 22) then port = cfg.port end
  port = math.tointeger(tonumber(port or 22)) or 22
  local user = h.user or cfg.user or os.getenv("USER") or "root"
  local addr, rerr, rcode = core.resolve(name)
  if not addr then return nil, ("%s: %s"):format(h.name, rerr), rcode end
  local sess, err, code = core.session(addr, port, h.connect_timeout or 10)
  if not sess then return nil, ("%s: %s"):format(h.name, err), code end
  local checking = h.host_key_checking or "yes"
  if checking ~= "no" then
    local known = expand(h.known_hosts) or (home() .. "/.ssh/known_hosts")
    local ktype, fingerprint, blob = sess:host_key()
    local key = { type = ktype, fingerprint = fingerprint, blob = blob }
    local ok, kerr, kcode = known_hosts.check(known, name, port, key)
    if not ok and kcode == "EHOSTKEY_UNKNOWN" and checking == "accept-new" then
      ok, kerr = known_hosts.add(known, name, port, key)
      kcode = "EHOSTKEY"
    end
    if not ok then
      sess:close()
      return nil, ("%s: %s"):format(h.name, kerr), kcode
    end
  end
  local ok, aerr = try_auth(sess, h, user, cfg)
  if not ok then
    sess:close()
    return nil, ("%s: authentication as %s failed: %s"):format(h.name, user, aerr), "EAUTH"
  end
  -- a dead peer is noticed within interval x count (OpenSSH's
  -- ServerAliveInterval and ServerAliveCountMax), not after TCP's 15 minutes
  sess:keepalive(math.tointeger(h.server_alive_interval) or 15, math.tointeger(h.server_alive_count_max) or 3)
  sess:label(h.name)   -- a later failure names the host as the inventory does
  return sess
end

return M
