-- lab_spec.lua: the lab provider against the real thing: network
-- namespaces with an sshd inside (logged in to, with the host key the
-- provider reports), PostgreSQL and HAProxy; read sees what is really
-- there, and delete leaves nothing behind. Needs root. Another project's
-- lab may share this machine: the spec asserts about the names it made.
local support = require("spec.helpers.support")
local lab_state = require("spec.helpers.lab")
local ports = require("spec.helpers.ports")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local providers = require("orch.providers")
local localhost = require("orch.host").localhost

local host_t = providers.find("lab.host", nil)
local db_t = providers.find("lab.database", nil)
local lb_t = providers.find("lab.load_balancer", nil)

local namespaces, links = lab_state.namespaces, lab_state.links

local function run(argv, opts)
  local res, err = proc.run(argv, opts)
  if not res then error(err, 2) end
  return res
end

local processes_under = support.processes_with

local tag = support.pid() % 100000
local function unique(prefix) return ("%s%05d"):format(prefix, tag) end

-- What a host `name` of this lab is called on the machine (its ctx has no
-- state id: the provider's folder stands for it).
local function ns_of(lab, name) return lab_state.netns(lab_state.scope(lab.ctx.dir), name) end
local function link_of(lab, name) return lab_state.link(lab_state.scope(lab.ctx.dir), name) end
local function dir_of(lab, name) return lab.ctx.dir .. "/hosts/" .. lab_state.scope(lab.ctx.dir) .. "-" .. name end

-- A temp folder (0711: postgres passes through it), a ctx, a client key.
local function new_lab()
  local dir = support.tmpdir()
  assert(fs.chmod(dir, "0711"))
  local logs = {}
  local lab = { dir = dir, logs = logs, key = dir .. "/id", made = {},
    ctx = { host = localhost(), dir = dir .. "/lab", log = function(msg) logs[#logs + 1] = msg end } }
  run({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-lab-spec", "-f", lab.key })
  lab.pub = support.read(lab.key .. ".pub")
  return lab
end

-- Remember what to delete however the spec ends.
local function track(lab, typedef, state)
  lab.made[#lab.made + 1] = { typedef = typedef, state = state }
  return state
end

-- Delete everything the spec made through the provider, then whatever a
-- failure left: namespaces named by the spec, processes under its folder.
local function cleanup(lab)
  for i = #lab.made, 1, -1 do
    pcall(lab.made[i].typedef.delete, lab.ctx, lab.made[i].state)
  end
  for _, m in ipairs(lab.made) do
    if m.typedef == host_t then proc.run({ "ip", "netns", "del", m.state.netns or ns_of(lab, m.state.name) }) end
  end
  for _, p in ipairs(processes_under(lab.dir)) do proc.run({ "kill", "-9", p:match("^%d+") }) end
  support.remove_tree(lab.dir)
end

-- The real ssh client, trusting only the host key the provider reported.
local function ssh(lab, h, cmd, key)
  local known = lab.dir .. "/known_hosts"
  support.write(known, h.address .. " " .. h.host_key .. "\n")
  return run({ "ssh", "-F", "/dev/null", "-i", key or lab.key, "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" .. known,
    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
    "root@" .. h.address, cmd }, { timeout = 30, env = { HOME = lab.dir } })
end

local function new_host(lab, name, extra)
  local want = { name = name, authorized_key = lab.pub }
  for k, v in pairs(extra or {}) do want[k] = v end
  -- tracked before apply, so a failure half way is still cleaned up
  local entry = track(lab, host_t, { name = name })
  local h = host_t.apply(lab.ctx, want, nil, {})
  for k, v in pairs(h) do entry[k] = v end
  return h, want
end

describe("lab.host #machine", function()
  local why = lab_state.unmet({ "ip", "ssh-keygen", "ssh", "sshd", "bash", "setpriv" })
  if why then pending(why) return end

  it("is a namespace whose sshd logs in with the host key it reports; read, re-apply, drift, delete", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("web")
    assert.is_nil(host_t.read(lab.ctx, { name = name }))
    assert.is_nil(fs.stat(lab.ctx.dir))   -- read changes nothing, not even a folder
    local h, want = new_host(lab, name)
    assert.truthy(namespaces()[ns_of(lab, name)])
    assert.equals(ns_of(lab, name), h.netns)
    assert.equals(link_of(lab, name), h.interface)
    assert.matches("^10%.77%.0%.%d+$", h.address)
    assert.equals(22, h.ssh_port)
    assert.matches("^ssh%-ed25519 AAAA%S+$", h.host_key)
    assert.equals("sshd", support.read("/proc/" .. h.pid .. "/comm"):match("%S+"))

    local r = ssh(lab, h, "hostname; echo $SSH_CONNECTION")
    assert.equals(0, r.code, r.stderr)
    assert.equals(run({ "hostname" }).stdout, r.stdout:match("^[^\n]*\n"))  -- the same machine...
    assert.matches(" " .. h.address:gsub("%.", "%%.") .. " 22\n$", r.stdout)  -- ...seen at its own address

    local have = host_t.read(lab.ctx, h)
    assert.same(h, have)
    assert.same({}, host_t.diff(lab.ctx, want, have))
    assert.same(h, host_t.apply(lab.ctx, want, have, {}))   -- nothing to do: same sshd, same key

    -- the namespace deleted by hand: absent; apply makes it again
    run({ "ip", "netns", "del", h.netns })
    assert.is_nil(host_t.read(lab.ctx, h))
    local h2 = host_t.apply(lab.ctx, want, nil, {})
    assert.falsy(support.alive(h.pid))
    r = ssh(lab, h2, "true")
    assert.equals(0, r.code, r.stderr)

    -- sshd killed by hand: absent too
    run({ "kill", tostring(h2.pid) })
    support.eventually(function() return host_t.read(lab.ctx, h2) == nil end, "read as absent")
    local h3 = host_t.apply(lab.ctx, want, nil, {})
    assert.same(h3, host_t.read(lab.ctx, h3))

    host_t.delete(lab.ctx, h3)
    assert.is_nil(host_t.read(lab.ctx, h3))
    assert.is_nil(namespaces()[ns_of(lab, name)])
    assert.is_nil(links()[link_of(lab, name)])
    assert.same({}, processes_under(lab.dir))
    assert.is_nil(fs.stat(dir_of(lab, name)))
    -- the bridge goes with the last thing on it, which may be another project's
    assert.equals(lab_state.bridge_held(), lab_state.has_bridge())
  end)

  it("gives hosts made at once different addresses, on one bridge, reaching each other", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local names = { unique("a"), unique("b") }
    local res = task.map(names, 2, function(name) return new_host(lab, name) end)
    assert(res[1].ok, res[1].err)
    assert(res[2].ok, res[2].err)
    local a, b = res[1].value, res[2].value
    assert.are_not.equal(a.address, b.address)

    -- from inside a, b's sshd answers
    local r = ssh(lab, a, ("bash -c 'exec 3<>/dev/tcp/%s/22; head -c 8 <&3'"):format(b.address))
    assert.equals(0, r.code, r.stderr)
    assert.equals("SSH-2.0-", r.stdout)

    -- an address asked for is kept; one already taken is refused
    local c = new_host(lab, unique("c"), { address = "10.77.0.250/24" })
    assert.equals("10.77.0.250", c.address)
    local ok, err = pcall(new_host, lab, unique("d"), { address = a.address })
    assert.is_false(ok)
    assert.matches("address " .. a.address:gsub("%.", "%%.") .. " is taken by " .. ns_of(lab, names[1]):gsub("%-", "%%-"), err)
    assert.is_nil(namespaces()[ns_of(lab, unique("d"))])   -- the failed one left nothing

    host_t.delete(lab.ctx, a)
    host_t.delete(lab.ctx, c)
    assert.is_true(lab_state.has_bridge())   -- b still uses it
    host_t.delete(lab.ctx, b)
    for _, name in ipairs({ names[1], names[2], unique("c") }) do
      assert.is_nil(namespaces()[ns_of(lab, name)])
      assert.is_nil(links()[link_of(lab, name)])
    end
    assert.same({}, processes_under(lab.dir))
    assert.equals(lab_state.bridge_held(), lab_state.has_bridge())
  end)

  it("changes the address and the authorized key in place, and reads an address changed by hand", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("up")
    local h, want = new_host(lab, name)
    run({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "second", "-f", lab.dir .. "/id2" })
    want.authorized_key = support.read(lab.dir .. "/id2.pub")
    want.address = "10.77.0.251/24"
    local have = host_t.read(lab.ctx, h)
    local changes = host_t.diff(lab.ctx, want, have)
    assert.same({ "address", "authorized_key" }, { changes[1].attr, changes[2].attr })
    local h2 = host_t.apply(lab.ctx, want, have, changes)
    assert.equals("10.77.0.251", h2.address)
    assert.equals(h.host_key, h2.host_key)   -- the same machine, moved
    assert.equals(0, ssh(lab, h2, "true", lab.dir .. "/id2").code)
    assert.are_not.equal(0, ssh(lab, h2, "true", lab.key).code)   -- the old key no longer logs in
    assert.same({}, host_t.diff(lab.ctx, want, host_t.read(lab.ctx, h2)))

    run({ "ip", "-n", h.netns, "addr", "flush", "dev", "eth0" })
    run({ "ip", "-n", h.netns, "addr", "add", "10.77.0.252/24", "dev", "eth0" })
    have = host_t.read(lab.ctx, h2)
    assert.equals("10.77.0.252", have.address)
    assert.same({ { attr = "address", from = "10.77.0.252", to = "10.77.0.251" } }, host_t.diff(lab.ctx, want, have))
  end)

  it("clears what a crash half way left before making the host again", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("cr")
    track(lab, host_t, { name = name })
    -- a namespace with nothing in it, a stale folder that says it is this
    -- state's (create writes that first), a claim of a dead orch
    run({ "ip", "netns", "add", ns_of(lab, name) })
    assert(fs.mkdir(dir_of(lab, name), "0700"))
    support.write(dir_of(lab, name) .. "/sshd_config", "garbage\n")
    support.write(dir_of(lab, name) .. "/owner", ("lab state %s (%s)\n"):format(lab_state.scope(lab.ctx.dir), lab.ctx.dir))
    assert(fs.mkdir("/run/orch-lab") ~= nil)
    support.write("/run/orch-lab/" .. ns_of(lab, name), "10.77.0.2 999999999\n")
    local h = new_host(lab, name)
    assert.equals(0, ssh(lab, h, "true").code)
    assert.same(h, host_t.read(lab.ctx, h))
  end)

  it("refuses a namespace with its name that this state did not make, and leaves it alone (#11)", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("fo")
    local ns = ns_of(lab, name)
    run({ "ip", "netns", "add", ns })
    track(lab, host_t, { name = name })
    local ok, err = pcall(new_host, lab, name)
    assert.is_false(ok)
    assert.matches(("lab.host %s: network namespace %s exists, but this state did not make it"):format(name, ns),
      err, 1, true)
    assert.truthy(namespaces()[ns])   -- not adopted, not removed
    assert.is_nil(fs.stat(dir_of(lab, name)))
  end)

  it("gives two states that both declare a host of one name two hosts (#11)", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("tw")
    -- one project folder, two states (two workspaces, or two stores)
    local ctx_a, ctx_b = {}, {}
    for k, v in pairs(lab.ctx) do ctx_a[k], ctx_b[k] = v, v end
    ctx_a.state_id, ctx_b.state_id = "aaaa01", "bbbb02"
    local a = host_t.apply(ctx_a, { name = name, authorized_key = lab.pub }, nil, {})
    track(lab, { delete = function() host_t.delete(ctx_a, a) end }, a)
    local b = host_t.apply(ctx_b, { name = name, authorized_key = lab.pub }, nil, {})
    track(lab, { delete = function() host_t.delete(ctx_b, b) end }, b)
    assert.equals(lab_state.netns("aaaa01", name), a.netns)
    assert.equals(lab_state.netns("bbbb02", name), b.netns)
    assert.are_not.equal(a.address, b.address)
    assert.are_not.equal(a.host_key, b.host_key)
    assert.equals(0, ssh(lab, a, "true").code)
    assert.equals(0, ssh(lab, b, "true").code)
    host_t.delete(ctx_a, a)
    assert.is_nil(host_t.read(ctx_a, a))
    assert.same(b, host_t.read(ctx_b, b))   -- the other state's host is untouched
    assert.equals(0, ssh(lab, b, "true").code)
  end)

  it("limits cpus and memory through cgroup v2, or says once that it cannot here", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local name = unique("cg")
    local h = new_host(lab, name, { cpus = 1, memory = 128 })
    local have = host_t.read(lab.ctx, h)
    assert.same({ 1, 128, h.limits }, { have.cpus, have.memory, have.limits })
    new_host(lab, unique("cg2"), { cpus = 0.5 })
    if h.limits == "applied" then
      local cg = "/sys/fs/cgroup/orch-lab/" .. lab_state.scope(lab.ctx.dir) .. "-" .. name
      assert.equals("100000 100000\n", support.read(cg .. "/cpu.max"))
      assert.equals(tostring(128 * 1024 * 1024) .. "\n", support.read(cg .. "/memory.max"))
      assert.matches("\n" .. h.pid .. "\n", "\n" .. support.read(cg .. "/cgroup.procs"))
    else
      -- hybrid cgroups, or a container's: said once, for both hosts
      assert.equals("unavailable", h.limits)
      assert.same({ "lab.host: cpus/memory not applied: no writable cgroup v2 with cpu and memory here" }, lab.logs)
    end
  end)

  it("refuses, in one line, to run without root", function()
    local code = [[
      local t = require("orch.providers").find("lab.host", nil)
      local ok, err = pcall(t.read, { host = require("orch.host").localhost(), dir = "/nonexistent" }, { name = "x" })
      io.write(err)]]
    local r = run({ "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", support.bin, "-e", code })
    assert.equals("lab: needs root (network namespaces, veth and bridges); run as root or use sudo", r.stdout)
  end)
end)

-- The newest server version under /usr/lib/postgresql, as the provider picks it.
local function db_version()
  local best
  for _, v in ipairs(fs.list("/usr/lib/postgresql") or {}) do
    if tonumber(v) and (not best or tonumber(v) > best) then best = tonumber(v) end
  end
  return best
end

describe("lab.database #machine", function()
  local why = lab_state.unmet({ "ip", "psql", "runuser" })
      or (not db_version() and "needs PostgreSQL's server (/usr/lib/postgresql/N/bin)")
  if why then pending(why) return end

  it("runs PostgreSQL with a role owning a database; the password is on no command line", function()
    local lab = new_lab()
    finally(function() cleanup(lab) end)
    local password = ("pw'%d\\:@/x"):format(math.random(1e8))
    local want = { engine = "postgresql", name = unique("app"), user = unique("u"), password = password }
    local entry = track(lab, db_t, { name = want.name })

    -- every command line while apply runs: none may hold the password
    local seen, done = {}, false
    local watcher = task.spawn(function()
      while not done do
        for _, pid in ipairs(fs.list("/proc") or {}) do
          local f = pid:match("^%d+$") and io.open("/proc/" .. pid .. "/cmdline", "rb")
          if f then
            local cmd = f:read("a") or ""
            f:close()
            if cmd:find(password, 1, true) then seen[#seen + 1] = cmd:gsub("%z", " ") end
          end
        end
        task.sleep(0.002)
      end
    end)
    local ok, db = pcall(db_t.apply, lab.ctx, want, nil, {})
    done = true
    watcher:wait()
    assert(ok, db)
    for k, v in pairs(db) do entry[k] = v end
    assert.same({}, seen)

    assert.matches("^postgresql://" .. want.user .. ":.*@127%.0%.0%.1:" .. db.port .. "/" .. want.name .. "$", db.url)
    local r = run({ "psql", "-X", "-At", db.url, "-c", "select current_user || ' ' || current_database()" })
    assert.equals(0, r.code, r.stderr)
    assert.equals(want.user .. " " .. want.name .. "\n", r.stdout)
    assert.equals("postgres", support.read("/proc/" .. db.pid .. "/comm"):match("%S+"))
    assert.same(db, db_t.read(lab.ctx, db))
    -- lab_url: on the bridge's address, where lab hosts reach it, by password
    assert.matches("@10%.77%.0%.1:" .. db.port .. "/" .. want.name .. "$", db.lab_url)
    r = run({ "psql", "-X", "-At", "-w", db.lab_url, "-c", "select inet_server_addr()" })
    assert.equals("10.77.0.1\n", r.stdout, r.stderr)

    -- a new password: in place, same server
    local old_url = db.url
    want.password = "second-" .. password
    local db2 = db_t.apply(lab.ctx, want, db, { { attr = "password" } })
    assert.equals(db.pid, db2.pid)
    assert.equals(0, run({ "psql", "-X", "-At", db2.url, "-c", "select 1" }).code)
    assert.are_not.equal(0, run({ "psql", "-X", "-At", "-w", old_url, "-c", "select 1" }).code)

    -- stopped by hand: absent; apply starts the same cluster, data kept
    -- clusters live under /var/lib/orch-lab/<hash of ctx.dir>-<state id>/ (the postgres user reaches it)
    local data = lab_state.db_root(lab.ctx.dir)
    local sock = data .. "/db/" .. want.name
    assert.equals(0, run({ "psql", "-X", "-q", db2.url, "-c", "create table kept (x int)" }).code)
    run({ "runuser", "-u", "postgres", "--", "/usr/lib/postgresql/" .. db_version() .. "/bin/pg_ctl",
      "-D", sock, "-s", "-w", "-m", "fast", "stop" }, { cwd = "/" })
    assert.is_nil(db_t.read(lab.ctx, db2))
    db2 = db_t.apply(lab.ctx, want, nil, {})
    for k, v in pairs(db2) do entry[k] = v end
    assert.equals(db.port, db2.port)
    assert.equals("0\n", run({ "psql", "-X", "-At", db2.url, "-c", "select count(*) from kept" }).stdout)

    -- a password changed behind orch's back reads as different
    run({ "runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-h", sock,
      "-p", tostring(db.port), "-d", "postgres", "-c", ("ALTER ROLE %s PASSWORD 'other'"):format(want.user) },
      { cwd = "/" })
    local have = db_t.read(lab.ctx, db2)
    assert.is_nil(have.password)
    assert.equals(want.user, have.user)

    db_t.delete(lab.ctx, db2)
    assert.equals(lab_state.bridge_held(), lab_state.has_bridge())   -- unless something else holds it
    assert.falsy(support.alive(db2.pid))
    assert.is_nil(fs.stat(sock))
    assert.is_nil(fs.stat(data))   -- the project's folder goes with its last cluster
    assert.is_nil(db_t.read(lab.ctx, db2))
    assert.same({}, processes_under(lab.dir))
    assert.same({}, processes_under(data))
  end)
end)

describe("lab.load_balancer #machine", function()
  local why = lab_state.unmet({ "haproxy", "python3", "curl" })
  if why then pending(why) return end

  -- python3's http.server on 127.0.0.1:port, answering `body`.
  local function http_server(lab, port, body)
    local root = lab.dir .. "/www" .. port
    assert(fs.mkdir(root))
    support.write(root .. "/index.html", body)
    local p = assert(proc.spawn({ argv = { "sh", "-c", 'exec "$@" >/dev/null 2>&1', "sh", "/usr/bin/python3",
      "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, tostring(port) } }))
    support.eventually(function()
      return run({ "curl", "-s", "-m", "2", ("http://127.0.0.1:%d/"):format(port) }).stdout == body
    end, "serving on " .. port)
    return p
  end

  local function get(url)
    local r = run({ "curl", "-s", "-m", "5", url })
    return r.code == 0 and r.stdout or ("curl exit " .. r.code)
  end

  it("balances round-robin over two HTTP servers, reloads in place, refuses what haproxy refuses", function()
    local lab = new_lab()
    local servers = {}
    finally(function()
      for _, p in ipairs(servers) do p:kill("KILL"); p:wait(); p:close() end
      cleanup(lab)
    end)
    local p1, p2, listen = table.unpack(ports.free(3))
    servers[1] = http_server(lab, p1, "one\n")
    servers[2] = http_server(lab, p2, "two\n")

    local want = { name = unique("lb"), listen = listen, health_check = "/",
      targets = { "127.0.0.1:" .. p1, "127.0.0.1:" .. p2 } }
    local entry = track(lab, lb_t, { name = want.name })
    local lb = lb_t.apply(lab.ctx, want, nil, {})
    for k, v in pairs(lb) do entry[k] = v end
    assert.equals(("http://127.0.0.1:%d/"):format(listen), lb.url)
    assert.equals("haproxy", support.read("/proc/" .. lb.pid .. "/comm"):match("%S+"))
    local answers = {}
    for i = 1, 4 do answers[i] = get(lb.url) end
    assert.are_not.equal(answers[1], answers[2])
    assert.same({ answers[1], answers[2] }, { answers[3], answers[4] })
    table.sort(answers)
    assert.same({ "one\n", "one\n", "two\n", "two\n" }, answers)
    assert.same(lb, lb_t.read(lab.ctx, lb))

    -- new targets: reloaded while a client keeps asking; no request fails
    local failures, requests, done = {}, 0, false
    local client = task.spawn(function()
      while not done do
        local a = get(lb.url)
        requests = requests + 1
        if a ~= "one\n" and a ~= "two\n" then failures[#failures + 1] = a end
      end
    end)
    want.targets = { "127.0.0.1:" .. p2 }
    local ok, lb2 = pcall(lb_t.apply, lab.ctx, want, lb, { { attr = "targets" } })
    task.sleep(0.2)
    done = true
    client:wait()
    assert(ok, lb2)
    for k, v in pairs(lb2) do entry[k] = v end
    assert.same({}, failures)
    assert.is_true(requests > 0)
    assert.same({ "127.0.0.1:" .. p2 }, lb_t.read(lab.ctx, lb2).targets)
    for _ = 1, 3 do assert.equals("two\n", get(lb2.url)) end

    -- a target haproxy refuses: its message, and the running one untouched
    local bad = { name = want.name, listen = listen, health_check = "/", targets = { "127.0.0.1:99999" } }
    local ok2, err = pcall(lb_t.apply, lab.ctx, bad, lb2, { { attr = "targets" } })
    assert.is_false(ok2)
    assert.matches("haproxy rejects the configuration", err)
    assert.matches("invalid port '99999'", err, 1, true)
    assert.same(lb2, lb_t.read(lab.ctx, lb2))
    assert.equals("two\n", get(lb2.url))

    lb_t.delete(lab.ctx, lb2)
    assert.is_nil(lb_t.read(lab.ctx, lb2))
    assert.falsy(support.alive(lb2.pid))
    assert.is_nil(fs.stat(lab.ctx.dir .. "/lb/" .. want.name))
    assert.matches("^curl exit", get(lb2.url))
    assert.same({}, processes_under(lab.dir .. "/lab"))
  end)
end)
