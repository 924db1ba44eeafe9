-- host/init.lua: where work runs. An inventory entry becomes a host object:
-- the local machine, or an SSH session with the same methods, so every
-- provider runs on either unchanged.
local localhost = require("orch.host.local").localhost

local M = { localhost = localhost }

--- The host object for inventory entry h: the local machine for
-- connection = "local", else an SSH session (one kept by host/persist.lua
-- with --persist); nil, err when unreachable.
function M.connect(h)
  if h.connection == "local" then return localhost(h) end
  local persist = require("orch.host.persist")
  local seconds = persist.seconds()
  local sess, err
  if seconds then sess, err = persist.connect(h, seconds)
  else sess, err = require("orch.host.ssh").connect(h) end
  if not sess then return nil, err end
  return require("orch.host.remote").new(h, sess)
end

return M
