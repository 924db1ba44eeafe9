-- lab.lua: what the lab provider leaves on this machine, as the system
-- shows it: network namespaces, links, and whether anything still holds
-- the shared orch0 bridge. Other projects' labs may run on the same
-- machine, so a spec asks about the names it made, never about all orch-*.
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local support = require("spec.helpers.support")

local M = {}

M.BRIDGE, M.GATEWAY, M.CLAIMS = "orch0", "10.77.0.1", "/run/orch-lab"

--- Why a lab spec cannot run here (not root, or the first of `tools` not
-- on PATH), or nil: for `pending(why)`.
function M.unmet(tools)
  if not support.is_root() then
    return "needs root: network namespaces, veth, the orch0 bridge, files under /run and /var/lib"
  end
  local tool = support.missing(tools)
  return tool and ("needs " .. tool)
end

--- The network namespaces: { [name] = true }.
function M.namespaces()
  local set = {}
  for line in proc.check({ "ip", "netns", "list" }).stdout:gmatch("[^\n]+") do set[line:match("^(%S+)")] = true end
  return set
end

--- The links of this namespace: { [name] = true }.
function M.links()
  local set = {}
  for name in proc.check({ "ip", "-o", "link", "show" }).stdout:gmatch("\n?%d+: ([^:@%s]+)") do set[name] = true end
  return set
end

--- Does anything still hold the bridge, as the provider decides when it may
-- delete it (common.release_bridge): an orch- namespace, an address claim,
-- or a server on the bridge's address? Once a spec has deleted all it made,
-- what is left is someone else's, so the bridge must be there exactly when
-- this is true.
function M.bridge_held()
  for ns in pairs(M.namespaces()) do
    if ns:match("^orch%-") then return true end
  end
  if next(fs.list(M.CLAIMS) or {}) then return true end
  -- /proc/net/tcp writes 10.77.0.1 as its bytes in reverse, in hex
  local a, b, c, d = M.GATEWAY:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  local hex = ("%02X%02X%02X%02X"):format(tonumber(d), tonumber(c), tonumber(b), tonumber(a))
  for addr, st in (fs.read("/proc/net/tcp") or ""):gmatch("\n%s*%d+:%s+(%x+):%x+%s+%x+:%x+%s+(%x+)") do
    if addr == hex and st == "0A" then return true end
  end
  return false
end

--- Is the bridge there?
function M.has_bridge()
  return fs.stat("/sys/class/net/" .. M.BRIDGE) ~= nil
end

--- The id of the state a provider folder `dir` stands for when the ctx
-- has none (the provider's own rule, lab/common.lua's scope).
function M.scope(dir)
  return fs.sha256_data(dir):sub(1, 6)
end

--- A lab host's namespace and link (for names of 8 characters or fewer)
-- in the state `id`: lab/host.lua's rule, restated.
function M.netns(id, name) return ("orch-%s-%s"):format(id, name) end
function M.link(id, name)
  assert(#name <= 8, "spec names of lab hosts stay within 8 characters")
  return "o" .. id .. name
end

--- The id a run gives the lab objects of store `path` (and `workspace`,
-- for infrastructure): resource/ctx.lua's rule, restated.
function M.state_id(path, workspace)
  return fs.sha256_data((fs.realpath(path) or path) .. "\n" .. (workspace or "")):sub(1, 6)
end

--- Where the lab's databases for provider folder `dir` keep their
-- clusters (as lab/database.lua names it): gone with the last one.
function M.db_root(dir, id)
  return ("/var/lib/orch-lab/%s-%s"):format(fs.sha256_data(dir):sub(1, 12), id or M.scope(dir))
end

return M
