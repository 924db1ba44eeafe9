-- host/known_hosts.lua: is this the host we think it is? A server's key
-- against an OpenSSH known_hosts file, with OpenSSH's rules: host patterns
-- (`*`, `?`, `!negated`, comma lists, `[host]:port` off port 22), hashed
-- names (`|1|salt|hash`, HashKnownHosts), `@revoked` keys (refused even
-- where another line lists them), and `@cert-authority` lines, which orch
-- can't act on (libssh2 negotiates no host certificates): a host they cover
-- is refused with a message that says so, never trusted in silence.
local fs = require("orch.core.fs")
local base64 = require("orch.base64")

local M = {}

local unbase64 = base64.decode

local function hex_bytes(hex) return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)) end

--- "SHA256:..." of a base64 key blob, as ssh-keygen -l shows it.
function M.fingerprint(blob)
  local digest = require("orch.core.digest")
  return "SHA256:" .. base64.encode(hex_bytes(digest.sha256_data(unbase64(blob))), false)
end

-- The name a known_hosts line gives host at port.
local function host_name(host, port)
  return port == 22 and host or ("[%s]:%d"):format(host, port)
end
M.host_name = host_name

--- OpenSSH's pattern (known_hosts, ssh_config's Host): * any run, ? one
-- character, nothing else special; host names know no case.
function M.glob_match(pattern, name)
  local lua = "^" .. pattern:lower():gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return name:lower():find(lua) ~= nil
end
local glob_match = M.glob_match

-- Does a line's host field cover name? Hashed: HMAC-SHA1 of the name keyed
-- with the salt. A list: some pattern matches and no negated one does.
local function covers(field, name)
  local salt, hash = field:match("^|1|([^|]+)|(.+)$")
  if salt then
    local digest = require("orch.core.digest")
    return digest.equal(hex_bytes(digest.hmac_sha1(unbase64(salt), name)), unbase64(hash))
  end
  local matched = false
  for pattern in field:gmatch("[^,]+") do
    local negated = pattern:sub(1, 1) == "!"
    if glob_match(negated and pattern:sub(2) or pattern, name) then
      if negated then return false end
      matched = true
    end
  end
  return matched
end

--- The entries of file that cover host at port: { marker, type, key, line }
-- (marker "revoked", "cert-authority" or nil). A missing file is empty.
function M.entries(file, host, port)
  local text, err, code = fs.read(file)
  if not text then
    if code == "ENOENT" then return {} end
    return nil, err, code
  end
  local name, out, n = host_name(host, port), {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local marker, rest = line:match("^%s*@(%S+)%s+(.*)$")
    local fields = rest or line
    local hosts, ktype, key = fields:match("^%s*(%S+)%s+(%S+)%s+(%S+)")
    if hosts and hosts:sub(1, 1) ~= "#" and covers(hosts, name) then
      out[#out + 1] = { marker = marker, type = ktype, key = key, line = n }
    end
  end
  return out
end

--- Check the server's key (type name, base64 blob, fingerprint) for host
-- at port against file. Returns "match", or nil, why, code: EHOSTKEY_REVOKED,
-- EHOSTKEY_CHANGED, EHOSTKEY_CA (only a @cert-authority covers it) or
-- EHOSTKEY_UNKNOWN (then the caller may add it).
function M.check(file, host, port, key)
  local entries, err, code = M.entries(file, host, port)
  if not entries then return nil, err, code end
  local found, other, ca
  for _, e in ipairs(entries) do
    if e.marker == "revoked" and e.key == key.blob then
      return nil, ("the server's %s key %s is marked @revoked in %s:%d; refusing to connect"):format(
        key.type, key.fingerprint, file, e.line), "EHOSTKEY_REVOKED"
    elseif e.marker == "cert-authority" then
      ca = ca or e
    elseif e.marker == nil then
      if e.key == key.blob then found = found or e
      elseif e.type == key.type then other = other or e end
    end
  end
  if found then return "match" end
  if other then
    return nil, ("HOST KEY CHANGED: the server offers %s key %s, but %s:%d has %s for this host; refusing to"
      .. " connect (if the change is expected, remove the old entry: ssh-keygen -R '%s' -f %s)"):format(
      key.type, key.fingerprint, file, other.line, M.fingerprint(other.key), host_name(host, port), file), "EHOSTKEY_CHANGED"
  end
  if ca then
    return nil, ("%s:%d trusts a @cert-authority for this host, but orch can't check host certificates"
      .. " (libssh2 offers none): add the host's own key (ssh-keyscan -p %d %s >> %s)"):format(
      file, ca.line, port, host, file), "EHOSTKEY_CA"
  end
  return nil, ("unknown host key (%s %s) not in %s; add it (ssh-keyscan -p %d %s >> %s) or set"
    .. ' host_key_checking = "accept-new"'):format(key.type, key.fingerprint, file, port, host, file), "EHOSTKEY_UNKNOWN"
end

--- Record key for host at port at the end of file (a plain name, so
-- ssh-keygen -F/-R and people can read it; hashed lines already there stay).
function M.add(file, host, port, key)
  local dir = file:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then fs.mkdir(dir, "0700") end
  local f, err = io.open(file, "a")
  if not f then return nil, err end
  local ok, werr = f:write(("%s %s %s\n"):format(host_name(host, port), key.type, key.blob))
  local closed, cerr = f:close()
  if not ok or not closed then return nil, ("%s: %s"):format(file, werr or cerr) end
  return true
end

return M
