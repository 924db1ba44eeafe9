-- lab/common.lua: what lab's types share: the root check, the provider's
-- folder, one lock for what the machine has only one of (the bridge, the
-- address pool, ports), processes (alive, ours, stopped) and the bridge.
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local task = require("orch.task")

local M = {}

local ROOT_MSG = "lab: needs root (network namespaces, veth and bridges); run as root or use sudo"

--- Raise the one line a user acts on when this process is not root. The
-- effective uid comes from /proc, so the check costs no process.
function M.check_root(ctx)
  local status = ctx.host:read("/proc/self/status")
  local euid = status and status:match("\nUid:%s+%d+%s+(%d+)")
  if euid ~= "0" then error(ROOT_MSG, 0) end
end

--- The provider's folder (ctx.dir), absolute, since sshd and pg_ctl
-- change directory.
function M.dir(ctx)
  local dir = ctx.dir
  if dir:sub(1, 1) ~= "/" then dir = assert(fs.cwd()) .. "/" .. dir end
  dir = dir:gsub("/+$", ""):gsub("/%./", "/")
  -- sshd_config and postgresql.conf would need quoting rules of their own
  if dir:find("[%s\"'%%\\#]") then
    error(("lab: the folder %q has a character sshd_config or postgresql.conf can't take "
      .. "(space, quote, %%, \\, #); move the playbook"):format(dir), 0)
  end
  return dir
end

--- The short id (6 hex digits) of the state this lab belongs to: a state
-- store and workspace (ctx.state_id), or for a caller without one, the
-- provider's folder. It is in every machine-wide name a lab object has
-- (namespace, link, cgroup, cluster), so two checkouts or two workspaces
-- that both declare "web1" get two hosts.
function M.scope(ctx)
  return ctx.state_id or require("orch.core.fs").sha256_data(M.dir(ctx)):sub(1, 6)
end

--- The provider's folder, made if missing (before anything inside it, or
-- mkdir would give every level the inner folder's mode). 0711: postgres
-- must pass through it to its data dir; nobody needs to list it.
function M.make_dir(ctx)
  local dir = M.dir(ctx)
  if not ctx.host:stat(dir) then assert(ctx.host:mkdir(dir, "0711")) end
  return dir
end

--- A name that is safe as a file name, a namespace name and a config word.
function M.check_name(tname, name)
  if type(name) ~= "string" or #name > 40 or not name:match("^[%w][%w_.-]*$") then
    error(("%s: bad name %q: letters, digits, '_', '.' and '-' (not first), at most 40"):format(
      tname, tostring(name)), 0)
  end
end

-- One holder at a time in this process (tasks), then across processes (a
-- flock; two playbooks on one machine share the bridge and the ports).
local mutex = task.semaphore(1)
local LOCK = "/run/lock/orch-lab.lock"
M.LOCK_WAIT = 60

local function with_flock(fn, ...)
  if not fs.stat("/run/lock") then assert(fs.mkdir("/run/lock", "0755")) end
  local deadline = loop.now() + M.LOCK_WAIT
  local lk, err, code
  repeat
    lk, err, code = fs.lock(LOCK)
    if not lk then
      if code ~= "LOCKED" then error("lab: " .. err, 0) end
      if loop.now() > deadline then
        error(("lab: %s held by another process for %d s"):format(LOCK, M.LOCK_WAIT), 0)
      end
      task.sleep(0.02)
    end
  until lk
  local res = table.pack(pcall(fn, ...))
  lk:unlock()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- fn(...) holding the lab lock; keep it short: every create waits on it.
function M.locked(fn, ...)
  return mutex:with(with_flock, fn, ...)
end

--- A live process: { pid, comm, state, cmdline } (cmdline's NULs as
-- spaces), or nil. A zombie counts as gone: where PID 1 reaps nothing
-- (a container), a killed daemon stays in /proc as one.
function M.process(ctx, pid)
  pid = math.tointeger(tonumber(pid))
  if not pid or pid <= 0 then return nil end
  local stat = ctx.host:read("/proc/" .. pid .. "/stat")
  local comm, state = (stat or ""):match("^%d+ %((.*)%) (%S)")
  if not comm or state == "Z" or state == "X" then return nil end
  local cmdline = (ctx.host:read("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
  return { pid = pid, comm = comm, state = state, cmdline = cmdline }
end

--- The process in pidfile if it is alive, named comm and started with
-- marker (a path of ours) on its command line; so a recycled pid is never
-- taken for ours.
function M.owned(ctx, pidfile, comm, marker)
  local pid = (ctx.host:read(pidfile) or ""):match("^%s*(%d+)")
  local p = pid and M.process(ctx, pid)
  if p and p.comm == comm and p.cmdline:find(marker, 1, true) then return p end
end

--- Poll check() until it returns a value (timeout seconds); nil on timeout.
function M.wait_for(check, timeout)
  local deadline = loop.now() + timeout
  local pause = 0.002
  while true do
    local v = check()
    if v then return v end
    if loop.now() > deadline then return nil end
    task.sleep(pause)
    pause = math.min(pause * 2, 0.01)
  end
end

--- TERM the processes, give them 5 s, then KILL; raises if one survives.
function M.stop(ctx, pids)
  local function alive()
    local left = {}
    for _, pid in ipairs(pids) do
      if M.process(ctx, pid) then left[#left + 1] = tostring(pid) end
    end
    return left
  end
  for _, sig in ipairs({ "TERM", "KILL" }) do
    local left = alive()
    if #left == 0 then return end
    ctx.host:exec({ "kill", "-s", sig, table.unpack(left) }, { check = false })
    if M.wait_for(function() return #alive() == 0 end, sig == "TERM" and 5 or 2) then return end
  end
  error("lab: processes survive SIGKILL: " .. table.concat(alive(), " "), 0)
end

--- Ports something listens on (TCP, v4 and v6): { [port] = true }.
function M.listening(ctx)
  local ports = {}
  for _, path in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for lport, st in (ctx.host:read(path) or ""):gmatch("\n%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)") do
      if st == "0A" then ports[tonumber(lport, 16)] = true end
    end
  end
  return ports
end

--- The first port from `from` up that nothing listens on and `taken`
-- (a set the caller keeps) doesn't hold; it is added to `taken`.
function M.free_port(ctx, from, taken)
  local busy = M.listening(ctx)
  for port = from, 65535 do
    if not busy[port] and not taken[port] then
      taken[port] = true
      return port
    end
  end
  error(("lab: no free TCP port from %d up"):format(from), 0)
end

-- ---- the bridge, which lab hosts and databases share ----

M.BRIDGE, M.GATEWAY = "orch0", "10.77.0.1"
-- Who holds which address: /run/orch-lab/<namespace> holds its address and
-- the pid of the orch that claimed it. In /run (tmpfs), so claims go with
-- the namespaces at a reboot.
M.CLAIMS = "/run/orch-lab"

--- The bridge, made on first use: 10.77.0.1/24, up. Under the lock.
function M.ensure_bridge(ctx)
  local flags = ctx.host:read("/sys/class/net/" .. M.BRIDGE .. "/flags")
  if not flags then
    ctx.host:exec({ "ip", "-batch", "-" }, { stdin = ("link add %s type bridge\naddr add %s/24 dev %s\nlink set %s up\n")
      :format(M.BRIDGE, M.GATEWAY, M.BRIDGE, M.BRIDGE) })
  elseif (tonumber((flags:gsub("%s", ""))) or 0) & 1 == 0 then
    ctx.host:exec({ "ip", "link", "set", M.BRIDGE, "up" })
  end
end

-- Does a socket listen on the bridge's address (a lab database)? As
-- /proc/net/tcp writes it: the address's bytes in reverse, in hex.
local function gateway_listened(ctx)
  local a, b, c, d = M.GATEWAY:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  local hex = ("%02X%02X%02X%02X"):format(tonumber(d), tonumber(c), tonumber(b), tonumber(a))
  for addr, st in (ctx.host:read("/proc/net/tcp") or ""):gmatch("\n%s*%d+:%s+(%x+):%x+%s+%x+:%x+%s+(%x+)") do
    if addr == hex and st == "0A" then return true end
  end
  return false
end

--- The bridge goes with the last thing on it: no orch- namespace, no
-- claim on an address (a host being made), nothing listening on its
-- address. Under the lock; true when it is gone.
function M.release_bridge(ctx)
  for _, e in ipairs(ctx.host:walk("/run/netns") or {}) do
    if e.path:match("^orch%-[^/]*$") then return false end
  end
  for _, e in ipairs(ctx.host:walk(M.CLAIMS) or {}) do
    if not e.path:find("/") then return false end
  end
  if gateway_listened(ctx) then return false end
  if ctx.host:stat("/sys/class/net/" .. M.BRIDGE) then ctx.host:exec({ "ip", "link", "del", M.BRIDGE }) end
  ctx.host:remove(M.CLAIMS)
  return true
end

--- Remove a tree if it is there (fs.remove says false for "nothing there").
function M.remove_tree(ctx, path)
  local ok, err = ctx.host:remove(path, { recursive = true })
  if ok == nil then error("lab: " .. err, 0) end
end

--- The last lines of a file, for an error message.
function M.tail(ctx, path, n)
  local lines = {}
  for l in (ctx.host:read(path) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 10) + 1))
end

--- The first line of a command's stderr (or stdout), for an error message.
function M.why(res)
  local text = (res.stderr ~= "" and res.stderr or res.stdout):gsub("%s+$", "")
  return text ~= "" and text or ("exit code " .. tostring(res.code))
end

return M
