-- providers/lab.lua: real infrastructure on this machine: lab.host (a
-- network namespace on a bridge, with sshd inside), lab.database (a
-- PostgreSQL instance) and lab.load_balancer (an HAProxy process). Each
-- type is a file in lab/, loaded from beside this one: providers are
-- plain files, not modules on package.path. Needs root.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function load(name, ...)
  local chunk, err = loadfile(here .. "/lab/" .. name .. ".lua", "t")
  if not chunk then error(err, 0) end
  return chunk(...)
end

local common = load("common")

return {
  host = load("host", common),
  database = load("database", common),
  load_balancer = load("load_balancer", common),
}
