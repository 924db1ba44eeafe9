-- lab/host.lua: lab.host, a network namespace joined to the orch0 bridge
-- with an address of 10.77.0.0/24 and an OpenSSH sshd inside: a machine to
-- SSH into, made in tens of milliseconds. It shares this machine's files
-- and users; only its network is its own.
local common = ...
local info = require("orch.core.info")

local SSHD = "/usr/sbin/sshd"
local BRIDGE, GATEWAY, CLAIMS, PREFIX = common.BRIDGE, common.GATEWAY, common.CLAIMS, "10.77.0."
local CGROUP = "/sys/fs/cgroup"

-- Interface names stop at 15 bytes: "o" and the state's id leave 8. A
-- longer name keeps its first 2 characters (to be recognisable in `ip
-- link`) and a hash of the whole (FNV-1a) to stay unique.
local function veth(id, name)
  if #name <= 8 then return "o" .. id .. name end
  local h = 2166136261
  for i = 1, #name do h = ((h ~ name:byte(i)) * 16777619) & 0xffffffff end
  return ("o%s%s%06x"):format(id, name:sub(1, 2), h & 0xffffff)
end

-- Everything host `name` of this state is called: its namespace, the
-- bridge's end of its link, its cgroup, and its files (in a folder whose
-- `owner` file says which state made it).
local function paths(ctx, name)
  local id = common.scope(ctx)
  local dir = common.dir(ctx) .. "/hosts/" .. id .. "-" .. name
  return { ns = ("orch-%s-%s"):format(id, name), dev = veth(id, name), cgroup = id .. "-" .. name,
    dir = dir, owner = dir .. "/owner", key = dir .. "/ssh_host_ed25519_key", config = dir .. "/sshd_config",
    pid = dir .. "/sshd.pid", keys = dir .. "/authorized_keys", log = dir .. "/sshd.log" }
end

--- "10.77.0.5" or "10.77.0.5/24" -> "10.77.0.5", or nil: .0, .1 (the
-- bridge) and .255 are not a host's.
local function parse_address(v)
  if type(v) ~= "string" then return nil end
  local d, prefix = v:match("^10%.77%.0%.([1-9]%d?%d?)(/?%d*)$")
  d = tonumber(d)
  if not d or d < 2 or d > 254 or (prefix ~= "" and prefix ~= "/24") then return nil end
  return PREFIX .. d
end

-- One line, "type base64 [comment]": a second line would authorize a second key.
local function parse_key(v)
  if type(v) ~= "string" then return nil end
  v = v:gsub("%s+$", "")
  if v:find("[\r\n]") or not v:match("^[%w@.-]+ [%w+/]+=*") then return nil end
  return v
end

local function exec(ctx, argv, opts) return ctx.host:exec(argv, opts) end

-- ---- the address pool (call under the lab lock) ----

local function namespaces(ctx)
  local set = {}
  for _, e in ipairs(ctx.host:walk("/run/netns") or {}) do
    if not e.path:find("/") then set[e.path] = true end
  end
  return set
end

-- Live claims: { [namespace] = address }. A claim lives while its
-- namespace exists or the orch that made it still runs (it is making the
-- namespace now: the lock is not held that long). Dead ones are dropped.
local function claims(ctx, live)
  local out = {}
  for _, e in ipairs(ctx.host:walk(CLAIMS) or {}) do
    local ns = e.path
    local address, pid = (ctx.host:read(CLAIMS .. "/" .. ns) or ""):match("^(%S+) (%d+)")
    if address and (live[ns] or common.process(ctx, pid)) then
      out[ns] = address
    else
      ctx.host:remove(CLAIMS .. "/" .. ns)
    end
  end
  return out
end

-- Addresses taken: the bridge's, the claimed ones, and those found inside
-- any unclaimed orch- namespace (made by hand, or by an older orch).
local function addresses_in_use(ctx, self_ns)
  local used = { [GATEWAY] = "the bridge " .. BRIDGE }
  local live = namespaces(ctx)
  local claimed = claims(ctx, live)
  for ns, address in pairs(claimed) do
    if ns ~= self_ns then used[address] = ns end
  end
  for ns in pairs(live) do
    if ns:match("^orch%-") and ns ~= self_ns and not claimed[ns] then
      local r = exec(ctx, { "ip", "-n", ns, "-4", "-o", "addr", "show" }, { check = false })
      for a in (r and r.stdout or ""):gmatch("inet (10%.77%.0%.%d+)/") do used[a] = ns end
    end
  end
  return used
end

local function claim(ctx, ns, address)
  if not ctx.host:stat(CLAIMS) then assert(ctx.host:mkdir(CLAIMS, "0755")) end
  assert(ctx.host:write(CLAIMS .. "/" .. ns, ("%s %d\n"):format(address, info.pid), { mode = "0644" }))
end

-- Pick (or check) the address and claim it, under the lock. Every create
-- waits on it, so it reads and writes files only: a process runs there just
-- for the bridge's first use and for orch- namespaces nobody claimed.
local function reserve(ctx, name, wanted)
  local ns = paths(ctx, name).ns
  return common.locked(function()
    common.ensure_bridge(ctx)
    local used = addresses_in_use(ctx, ns)
    local address = wanted
    if address and used[address] then
      error(("lab.host %s: address %s is taken by %s"):format(name, address, used[address]), 0)
    end
    for i = 2, 254 do
      if address then break end
      if not used[PREFIX .. i] then address = PREFIX .. i end
    end
    if not address then error(("lab.host %s: no free address left in 10.77.0.0/24"):format(name), 0) end
    claim(ctx, ns, address)
    return address
  end)
end

-- ---- cgroup v2 limits ----

local limits_warned = false

-- cgroup v2 at /sys/fs/cgroup (not the hybrid layout, where cpu and memory
-- belong to v1), with both controllers, and writable.
local function cgroup_ready(ctx)
  local controllers = ctx.host:read(CGROUP .. "/cgroup.controllers") or ""
  if not (controllers:find("%f[%w]cpu%f[%W]") and controllers:find("%f[%w]memory%f[%W]")) then return false end
  if not ctx.host:stat(CGROUP .. "/orch-lab") and not ctx.host:mkdir(CGROUP .. "/orch-lab") then return false end
  for _, d in ipairs({ CGROUP, CGROUP .. "/orch-lab" }) do
    local sub = ctx.host:read(d .. "/cgroup.subtree_control") or ""
    if not (sub:find("%f[%w]cpu%f[%W]") and sub:find("%f[%w]memory%f[%W]")) then
      -- cgroupfs takes writes in place: no atomic rename there
      local r = exec(ctx, { "sh", "-c", 'echo "+cpu +memory" > "$1"', "sh", d .. "/cgroup.subtree_control" },
        { check = false })
      if not (r and r.ok) then return false end
    end
  end
  return true
end

local function cg_write(ctx, path, value)
  exec(ctx, { "sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, path })
end

-- Apply cpus/memory to a cgroup holding sshd (its sessions inherit it).
-- Returns "applied", "unavailable" (logged once per process) or nil (none
-- asked for, none left).
local function apply_limits(ctx, name, pid, cpus, memory)
  local cg = CGROUP .. "/orch-lab/" .. paths(ctx, name).cgroup
  if cpus == nil and memory == nil then
    if ctx.host:stat(cg) then
      cg_write(ctx, cg .. "/cpu.max", "max 100000")
      cg_write(ctx, cg .. "/memory.max", "max")
    end
    return nil
  end
  if not cgroup_ready(ctx) then
    if not limits_warned then
      limits_warned = true
      ctx.log("lab.host: cpus/memory not applied: no writable cgroup v2 with cpu and memory here")
    end
    return "unavailable"
  end
  if not ctx.host:stat(cg) then assert(ctx.host:mkdir(cg)) end
  cg_write(ctx, cg .. "/cpu.max", cpus and ("%d 100000"):format(math.floor(cpus * 100000 + 0.5)) or "max 100000")
  cg_write(ctx, cg .. "/memory.max", memory and tostring(memory * 1024 * 1024) or "max")
  cg_write(ctx, cg .. "/cgroup.procs", tostring(pid))
  return "applied"
end

-- What the cgroup holds: cpus, memory (MiB); nil where unlimited or gone.
local function read_limits(ctx, name, pid)
  local cgroup = paths(ctx, name).cgroup
  local cg = CGROUP .. "/orch-lab/" .. cgroup
  local member = (ctx.host:read("/proc/" .. pid .. "/cgroup") or ""):find("0::/orch-lab/" .. cgroup .. "\n", 1, true)
  if not member then return nil, nil end
  local quota, period = (ctx.host:read(cg .. "/cpu.max") or ""):match("^(%d+) (%d+)")
  local bytes = (ctx.host:read(cg .. "/memory.max") or ""):match("^(%d+)")
  local cpus = quota and tonumber(quota) / tonumber(period)
  if cpus and math.tointeger(cpus) then cpus = math.tointeger(cpus) end
  return cpus, bytes and math.tointeger(tonumber(bytes) // (1024 * 1024))
end

-- ---- sshd ----

local function sshd_config(name, address, p)
  return table.concat({
    "# lab.host " .. name .. ": written by orch; sshd runs in network namespace " .. p.ns,
    "ListenAddress " .. address,
    "Port 22",
    "HostKey " .. p.key,
    "PidFile " .. p.pid,
    "AuthorizedKeysFile " .. p.keys,
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "StrictModes no",
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    "UseDNS no",
    "PrintMotd no",
    -- orch keeps one connection per host and opens a session per command
    "MaxSessions 64",
    "MaxStartups 100",
    "Subsystem sftp internal-sftp",
    "",
  }, "\n")
end

local function sshd_process(ctx, p) return common.owned(ctx, p.pid, "sshd", p.config) end

-- Start sshd in the namespace; its pid once it listens (it writes the
-- pidfile after binding). Errors after it forks go to its log (-E).
local function start_sshd(ctx, name, p)
  -- Debian's sshd wants its privilege separation folder, which systemd
  -- would make; a container has none.
  if not ctx.host:stat("/run/sshd") then assert(ctx.host:mkdir("/run/sshd", "0755")) end
  ctx.host:remove(p.pid)
  local r = exec(ctx, { "ip", "netns", "exec", p.ns, SSHD, "-f", p.config, "-E", p.log }, { check = false })
  local up = r and r.ok and common.wait_for(function() return sshd_process(ctx, p) end, 10)
  if not up then
    error(("lab.host %s: sshd did not start: %s\n%s"):format(name, r and common.why(r) or "",
      common.tail(ctx, p.log, 10)), 0)
  end
  return up.pid
end

-- ---- whole hosts ----

-- Stop everything the host runs and remove all it made, whatever state a
-- crash left it in; the bridge stays. A namespace deleted by hand lives on
-- in its processes: naming it again (ip netns attach) finds them all.
local function teardown(ctx, name)
  local p = paths(ctx, name)
  local ns, dev = p.ns, p.dev
  local has_ns = ctx.host:stat("/run/netns/" .. ns) ~= nil
  local sshd = sshd_process(ctx, p)
  if not has_ns and sshd then
    local r = exec(ctx, { "ip", "netns", "attach", ns, tostring(sshd.pid) }, { check = false })
    has_ns = r and r.ok
  end
  local pids = {}
  if has_ns then
    local r = exec(ctx, { "ip", "netns", "pids", ns }, { check = false })
    for pid in (r and r.stdout or ""):gmatch("%d+") do pids[#pids + 1] = pid end
  elseif sshd then
    pids[1] = sshd.pid
  end
  common.stop(ctx, pids)
  if ctx.host:stat("/sys/class/net/" .. dev) then exec(ctx, { "ip", "link", "del", dev }, { check = false }) end
  if has_ns then exec(ctx, { "ip", "netns", "del", ns }) end
  ctx.host:remove(CLAIMS .. "/" .. ns)
  local cg = CGROUP .. "/orch-lab/" .. p.cgroup
  if ctx.host:stat(cg) then ctx.host:remove(cg) end
  common.remove_tree(ctx, p.dir)
end

-- What this state owns: the folder's owner file names it. A namespace or
-- link with our name and no such folder was made by hand or by something
-- else: refused, and left alone.
local function owner_of(ctx)
  return ("lab state %s (%s)\n"):format(common.scope(ctx), common.dir(ctx))
end

local function check_not_foreign(ctx, name)
  local p = paths(ctx, name)
  if ctx.host:read(p.owner) == owner_of(ctx) then return end   -- ours, half made: teardown clears it
  local what = ctx.host:stat("/run/netns/" .. p.ns) and ("network namespace " .. p.ns)
    or ctx.host:stat("/sys/class/net/" .. p.dev) and ("network link " .. p.dev)
  if what then
    error(("lab.host %s: %s exists, but this state did not make it; orch leaves it alone (remove it"
      .. " yourself, e.g. ip netns del %s, if nothing needs it)"):format(name, what, p.ns), 0)
  end
end

local function attrs_of(want, p, address, host_key, pid, limits)
  return { name = want.name, address = address, authorized_key = parse_key(want.authorized_key),
    cpus = want.cpus, memory = want.memory, ssh_port = 22, host_key = host_key, pid = pid, limits = limits,
    netns = p.ns, interface = p.dev, dir = p.dir }
end

local function host_key_of(ctx, p)
  return ((ctx.host:read(p.key .. ".pub") or ""):match("^(%S+ %S+)"))
end

local function create(ctx, want)
  local name = want.name
  local p = paths(ctx, name)
  local ns, dev = p.ns, p.dev
  teardown(ctx, name)
  common.make_dir(ctx)
  assert(ctx.host:mkdir(p.dir, "0700"))
  assert(ctx.host:write(p.owner, owner_of(ctx), { mode = "0644" }))
  exec(ctx, { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-lab-" .. name, "-f", p.key })
  assert(ctx.host:write(p.keys, parse_key(want.authorized_key) .. "\n", { mode = "0600" }))
  local address = reserve(ctx, name, parse_address(want.address))
  -- The veth's inside end goes straight into the namespace as eth0. An
  -- address used before (a host made again) would keep its old MAC in this
  -- namespace's neighbour cache for half a minute, and orch's SSH and HAProxy
  -- talk from here: flushed in the same batch. (Other lab hosts relearn it
  -- when their entry expires.)
  exec(ctx, { "ip", "-batch", "-" }, { stdin = ("netns add %s\nlink add %s type veth peer name eth0 netns %s\n"
    .. "link set %s master %s\nlink set %s up\nneigh flush to %s\n"):format(ns, dev, ns, dev, BRIDGE, dev, address) })
  exec(ctx, { "ip", "-n", ns, "-batch", "-" }, { stdin = ("link set lo up\naddr add %s/24 dev eth0\n"
    .. "link set eth0 up\nroute add default via %s\n"):format(address, GATEWAY) })
  assert(ctx.host:write(p.config, sshd_config(name, address, p), { mode = "0644" }))
  local pid = start_sshd(ctx, name, p)
  local limits = apply_limits(ctx, name, pid, want.cpus, want.memory)
  return attrs_of(want, p, address, host_key_of(ctx, p), pid, limits)
end

local function update(ctx, want, have)
  local name, p = want.name, paths(ctx, want.name)
  local ns = p.ns
  local address, pid = have.address, have.pid
  local wanted = parse_address(want.address)
  if wanted and wanted ~= address then
    reserve(ctx, name, wanted)
    exec(ctx, { "ip", "-n", ns, "-batch", "-" }, { stdin = ("addr flush dev eth0\naddr add %s/24 dev eth0\n"
      .. "route replace default via %s\n"):format(wanted, GATEWAY) })
    exec(ctx, { "ip", "neigh", "flush", "to", wanted }, { check = false })   -- as in create
    address = wanted
    assert(ctx.host:write(p.config, sshd_config(name, address, p), { mode = "0644" }))
    local sshd = sshd_process(ctx, p)
    if sshd then common.stop(ctx, { sshd.pid }) end
    pid = start_sshd(ctx, name, p)
  end
  local key = parse_key(want.authorized_key)
  if key ~= have.authorized_key then
    assert(ctx.host:write(p.keys, key .. "\n", { mode = "0600" }))   -- sshd reads it per login
  end
  local limits = have.limits
  if want.cpus ~= have.cpus or want.memory ~= have.memory or pid ~= have.pid then
    limits = apply_limits(ctx, name, pid, want.cpus, want.memory)
  end
  return attrs_of(want, p, address, host_key_of(ctx, p), pid, limits)
end

return {
  schema = {
    name           = { type = "string", required = true, force_new = true },
    -- given as "10.77.0.5/24" (or without /24); allocated when absent.
    -- Read and returned as the bare IP.
    address        = { type = "string", computed = true, optional = true,
      check = function(v)
        if parse_address(v) then return true end
        return false, 'must be a host address of 10.77.0.0/24 (10.77.0.2 to 10.77.0.254), like "10.77.0.5/24"'
      end },
    authorized_key = { type = "string", required = true,
      check = function(v)
        if parse_key(v) then return true end
        return false, 'must be one OpenSSH public key line, like "ssh-ed25519 AAAA... me@laptop"'
      end },
    cpus           = { type = "number", check = function(v) return v > 0, "must be above 0" end },
    memory         = { type = "integer", check = function(v) return v >= 8, "is in MiB and must be at least 8" end },
    ssh_port       = { type = "integer", computed = true },
    host_key       = { type = "string", computed = true },
    pid            = { type = "integer", computed = true },
    limits         = { type = "string", computed = true },  -- "applied" or "unavailable" when cpus/memory are set
    netns          = { type = "string", computed = true },  -- the namespace's real name: orch-<state id>-<name>
    interface      = { type = "string", computed = true },  -- the bridge's end of its link
    dir            = { type = "string", computed = true },  -- its folder (goes when the host does)
  },

  -- Reality, from the name alone (state adds only what can't be seen: the
  -- limits' fate). nil unless the namespace, both veth ends on the bridge,
  -- an address and our sshd inside it are all there: apply then remakes it.
  -- One process (ip -n ... addr); the rest is /run, /sys and /proc.
  read = function(ctx, state)
    common.check_root(ctx)
    common.check_name("lab.host", state.name)
    local name = state.name
    local p = paths(ctx, name)
    local ns, dev = p.ns, p.dev
    local nsfile = ctx.host:stat("/run/netns/" .. ns)   -- what `ip netns list` lists
    if not nsfile then return nil end
    local master = ctx.host:readlink("/sys/class/net/" .. dev .. "/master")
    if not master or master:match("[^/]+$") ~= BRIDGE then return nil end
    local sshd = sshd_process(ctx, p)
    if not sshd or ctx.host:readlink("/proc/" .. sshd.pid .. "/ns/net") ~= ("net:[%d]"):format(nsfile.ino) then
      return nil
    end
    local r = exec(ctx, { "ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0" }, { check = false })
    local address = r and r.ok and r.stdout:match("inet (10%.77%.0%.%d+)/24")
    if not address then return nil end
    local cpus, memory, limits = state.cpus, state.memory, state.limits
    if limits == "applied" or ctx.host:stat(CGROUP .. "/orch-lab/" .. p.cgroup) then
      cpus, memory = read_limits(ctx, name, sshd.pid)
      limits = (cpus or memory) and "applied" or nil
    end
    return {
      name = name, address = address, ssh_port = 22, pid = sshd.pid,
      host_key = host_key_of(ctx, p),
      authorized_key = (ctx.host:read(p.keys) or ""):gsub("%s+$", ""),
      cpus = cpus, memory = memory, limits = limits, netns = ns, interface = dev, dir = p.dir,
    }
  end,

  -- The user's address may carry "/24"; have's never does.
  diff = function(ctx, want, have)
    local changes = {}
    for _, attr in ipairs({ "name", "address", "authorized_key", "cpus", "memory" }) do
      local w = want[attr]
      if attr == "address" then w = parse_address(w) end
      if attr == "authorized_key" then w = parse_key(w) end
      local h = have and have[attr]
      if w ~= nil and w ~= h then changes[#changes + 1] = { attr = attr, from = h, to = w } end
    end
    return changes
  end,

  -- Create (have == nil, after clearing what a crash may have left) or
  -- change address (sshd restarts), authorized_key, cpus, memory in place.
  apply = function(ctx, want, have)
    common.check_root(ctx)
    common.check_name("lab.host", want.name)
    -- the engine checks the schema; a direct caller gets the same words
    if not parse_key(want.authorized_key) then
      error(("lab.host %s: authorized_key must be one OpenSSH public key line"):format(want.name), 0)
    end
    if want.address ~= nil and not parse_address(want.address) then
      error(("lab.host %s: address %q is not a host address of 10.77.0.0/24"):format(want.name,
        tostring(want.address)), 0)
    end
    if have then return update(ctx, want, have) end
    check_not_foreign(ctx, want.name)
    local ok, res = pcall(create, ctx, want)
    if not ok then
      -- leave nothing half-made behind: no state will point at it
      pcall(teardown, ctx, want.name)
      ctx.host:remove(common.dir(ctx) .. "/hosts")   -- only if empty
      error(res, 0)
    end
    return res
  end,

  -- Every process in the namespace, the namespace, the veth, the data dir;
  -- the bridge too when nothing else is on it.
  delete = function(ctx, have)
    common.check_root(ctx)
    common.check_name("lab.host", have.name)
    teardown(ctx, have.name)
    ctx.host:remove(common.dir(ctx) .. "/hosts")   -- only if empty
    common.locked(function()
      claims(ctx, namespaces(ctx))   -- drops the claims of orchs that died
      common.release_bridge(ctx)
    end)
  end,
}
