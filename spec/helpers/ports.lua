-- ports.lua: TCP ports for the specs' servers: which ones something
-- listens on, whether a given process holds one, and free ones to use.
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")

local M = {}

--- Listening TCP sockets: { [port] = { [inode] = true } }. Reading
-- /proc/net/tcp costs milliseconds of kernel time on a big machine (it
-- walks the whole socket hash), so callers read it once, not in a loop.
function M.listening()
  local ports = {}
  for _, table_path in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for line in (fs.read(table_path) or ""):gmatch("[^\n]+") do
      local lport, st, inode = line:match(
        "^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
      if lport and st == "0A" then
        local port = tonumber(lport, 16)
        ports[port] = ports[port] or {}
        ports[port][inode] = true
      end
    end
  end
  return ports
end

--- Does pid hold a socket listening on port (in the table from listening())?
function M.listens(pid, port, sockets)
  local inodes = sockets[port]
  if not inodes then return false end
  for _, fd in ipairs(fs.list("/proc/" .. pid .. "/fd") or {}) do
    local target = fs.readlink("/proc/" .. pid .. "/fd/" .. fd)
    local inode = target and target:match("^socket:%[(%d+)%]$")
    if inode and inodes[inode] then return true end
  end
  return false
end

-- Ports: a base in 20000-39999 that differs per process and per call, then
-- upwards, skipping ports something listens on and ports this process
-- handed out before. A port taken between this check and the server's
-- bind is the caller's to retry (spec.helpers.sshd does).
local counter, taken = 0, {}

--- n ports nothing listens on and this process has not handed out: a list.
function M.free(n)
  counter = counter + 1
  local pid = require("orch.core.info").pid
  local seed = pid * 7919 + math.floor(loop.time() * 1000) + counter * 613
  local port = 20000 + seed % 20000
  local busy = M.listening()
  local out = {}
  for _ = 1, 20000 do
    if not busy[port] and not taken[port] then
      taken[port] = true
      out[#out + 1] = port
      if #out == n then return out end
    end
    port = port + 1
    if port >= 40000 then port = 20000 end
  end
  error("no free TCP port found in 20000-39999")
end

return M
