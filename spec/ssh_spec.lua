local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local fs = require("orch.core.fs")
local json = require("cjson")

describe("orch over SSH (real sshd)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir
  lazy_setup(function() lab = sshd.start(3, { groups = { web = { 1, 2 }, db = { 3 } } }) end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  -- orch with the lab's HOME (keys, known_hosts) and no agent unless asked
  local function orch(...)
    local args = { ... }
    local opts = type(args[#args]) == "table" and table.remove(args) or {}
    opts.env = opts.env or {}
    opts.env.HOME = opts.env.HOME or lab.home
    if opts.env.SSH_AUTH_SOCK == nil then opts.env.SSH_AUTH_SOCK = false end
    args[#args + 1] = opts
    return support.orch(table.unpack(args))
  end

  local function play(body, ...)
    support.write(dir .. "/site.lua", (body:gsub("%$D", function() return dir end)))
    return orch("play", dir .. "/site.lua", "-i", lab:inventory_yaml(), "--state", dir .. "/state.db", ...)
  end

  local function remote(i, cmd) return lab:ssh(i, cmd).stdout end

  describe("connecting", function()
    it("authenticates with a key file and runs commands with exit codes and stderr", function()
      local res = orch("run", "h1", "-i", lab:inventory_yaml(), "--", "echo out; echo err >&2; exit 3")
      assert.equals(1, res.code)
      assert.matches("h1 | exit code 3", res.stdout, 1, true)
      assert.matches("  out\n", res.stdout, 1, true)
      assert.matches("  err\n", res.stdout, 1, true)
    end)

    it("authenticates through ssh-agent", function()
      local sock = lab:agent()
      -- an inventory without key files: only the agent can get in
      local inv = lab:inventory_yaml({ key = false, path = dir .. "/agent.yaml" })
      local res = orch("run", "all", "-i", inv, "--", "true",
        { env = { SSH_AUTH_SOCK = sock, HOME = dir } })
      -- HOME=dir has no known_hosts: refused before auth; with the lab's home it works
      assert.equals(1, res.code)
      res = orch("run", "all", "-i", inv, "--", "true", { env = { SSH_AUTH_SOCK = sock } })
      assert.equals(0, res.code, res.stdout)
    end)

    it("refuses a wrong key, naming the host and user", function()
      local inv = lab:inventory_yaml({ key = lab.wrong_key, path = dir .. "/wrong.yaml" })
      local res = orch("run", "h1", "-i", inv, "--", "true", { env = { HOME = dir } })
      assert.equals(1, res.code)
      res = orch("run", "h1", "-i", inv, "--", "true")
      -- the lab HOME also holds the right default key (~/.ssh/id_ed25519): tried after the wrong one
      assert.equals(0, res.code, res.stdout)
      support.write(dir .. "/.ssh-config-less-home", "")
      local home = dir .. "/home"
      assert(fs.mkdir(home .. "/.ssh"))
      support.write(home .. "/.ssh/known_hosts", support.read(lab.home .. "/.ssh/known_hosts"))
      res = orch("run", "h1", "-i", inv, "--", "true", { env = { HOME = home } })
      assert.equals(1, res.code)
      assert.matches("h1: authentication as " .. lab.user .. " failed", res.stdout, 1, true)
    end)

    it("decrypts an encrypted key with the passphrase from ORCH_SSH_PASSPHRASE", function()
      local home = dir .. "/home"
      assert(fs.mkdir(home .. "/.ssh"))
      support.write(home .. "/.ssh/known_hosts", support.read(lab.home .. "/.ssh/known_hosts"))
      local inv = lab:inventory_yaml({ key = lab.encrypted_key, path = dir .. "/enc.yaml" })
      local res = orch("run", "h1", "-i", inv, "--", "echo in", { env = { HOME = home, ORCH_SSH_PASSPHRASE = lab.passphrase } })
      assert.equals(0, res.code, res.stdout)
      res = orch("run", "h1", "-i", inv, "--", "echo in", { env = { HOME = home, ORCH_SSH_PASSPHRASE = "wrong" } })
      assert.equals(1, res.code)
    end)

    it("reads HostName, Port, User and IdentityFile from ~/.ssh/config", function()
      local home = dir .. "/home"
      assert(fs.mkdir(home .. "/.ssh"))
      support.write(home .. "/.ssh/known_hosts", support.read(lab.home .. "/.ssh/known_hosts"))
      support.write(home .. "/.ssh/config", ("Host web-*\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n")
        :format(lab.hosts[2].port, lab.user, lab.key))
      support.write(dir .. "/inv.lua", 'host "web-two" { }\n')
      local res = orch("run", "web-two", "-i", dir .. "/inv.lua", "--", "echo via config", { env = { HOME = home } })
      assert.equals(0, res.code, res.stdout)
      assert.matches("via config", res.stdout, 1, true)
    end)

    it("authenticates with a password", function()
      local plab = sshd.start(1, { password_user = true })
      finally(function() plab:stop() end)
      support.write(dir .. "/pw.lua", ([[host "p1" { address = "127.0.0.1", port = %d, user = %q, password = %q }]])
        :format(plab.hosts[1].port, plab.password_user.name, plab.password_user.password))
      local res = support.orch("run", "p1", "-i", dir .. "/pw.lua", "--", "id -un",
        { env = { HOME = plab.home, SSH_AUTH_SOCK = false } })
      assert.equals(0, res.code, res.stdout)
      assert.matches(plab.password_user.name, res.stdout, 1, true)
      assert.is_nil(res.stdout:find(plab.password_user.password, 1, true))
    end)

    it("refuses an unknown host key, and records it with accept-new", function()
      local home = dir .. "/home"
      assert(fs.mkdir(home .. "/.ssh"))
      local inv = lab:inventory_yaml({ path = dir .. "/inv.yaml" })
      local res = orch("run", "h1", "-i", inv, "--", "true", { env = { HOME = home } })
      assert.equals(1, res.code)
      assert.matches("unknown host key (ssh-ed25519 SHA256:", res.stdout, 1, true)
      support.write(dir .. "/accept.lua", ([[host "h1" { address = "127.0.0.1", port = %d, user = %q,
        key_file = %q, host_key_checking = "accept-new" }]]):format(lab.hosts[1].port, lab.user, lab.key))
      res = orch("run", "h1", "-i", dir .. "/accept.lua", "--", "echo in", { env = { HOME = home } })
      assert.equals(0, res.code, res.stdout)
      assert.matches("%[127%.0%.0%.1%]:" .. lab.hosts[1].port .. " ssh%-ed25519 ", support.read(home .. "/.ssh/known_hosts"))
      res = orch("run", "h1", "-i", inv, "--", "true", { env = { HOME = home } })
      assert.equals(0, res.code, res.stdout)
    end)

    it("refuses a changed host key and shows both fingerprints", function()
      local home = dir .. "/home"
      assert(fs.mkdir(home .. "/.ssh"))
      local other = support.read(lab.wrong_key .. ".pub"):match("^(%S+ %S+)")
      support.write(home .. "/.ssh/known_hosts", ("[127.0.0.1]:%d %s\n"):format(lab.hosts[1].port, other))
      local res = orch("run", "h1", "-i", lab:inventory_yaml(), "--", "true", { env = { HOME = home } })
      assert.equals(1, res.code)
      assert.matches("HOST KEY CHANGED", res.stdout, 1, true)
      local _, n = res.stdout:gsub("SHA256:", "")
      assert.equals(2, n)
    end)

    it("reports an unreachable host and carries on with the others", function()
      lab:stop_host(3)
      finally(function() lab:start_host(3) end)
      local res = play([[play "p" { on = "all", function(h) file { "$D/" .. h.name, content = "x" } end }]])
      assert.equals(1, res.code)
      assert.matches("h3           ok=0  changed=0  failed=0  skipped=0  unreachable=1", res.stdout, 1, true)
      assert.matches("h1           ok=0  changed=1", res.stdout, 1, true)
      assert.matches("Connection refused", res.stdout, 1, true)
    end)
  end)

  describe("transport", function()
    it("moves 10 MiB of output and a large upload intact", function()
      local res = play([[
play "big" { on = "h1", function(h)
  local r = h:exec("head -c 10485760 /dev/zero | tr '\\0' 'x'")
  log("got " .. #r.stdout)
  local data = string.rep("0123456789abcdef", 1024 * 1024)   -- 16 MiB
  assert(h:write("$D/upload", data))
  log("remote sha " .. h:exec("sha256sum $D/upload").stdout:match("^%x+"))
  log("local sha " .. fs.sha256_data(data))
end }]])
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("got 10485760", res.stdout, 1, true)
      local remote_sha = res.stdout:match("remote sha (%x+)")
      assert.equals(res.stdout:match("local sha (%x+)"), remote_sha)
    end)

    it("gives a remote command EOF on stdin, as /dev/null would (#4)", function()
      local res = orch("run", "h1", "-i", lab:inventory_yaml(), "--timeout", "10", "--", "cat; echo after")
      assert.equals(0, res.code, res.stdout)
      assert.matches("after", res.stdout, 1, true)
    end)

    it("runs 200 channels at once on one session", function()
      local res = play([[
play "many" { on = "h1", function(h)
  local items = {}
  for i = 1, 200 do items[i] = i end
  local results = task.map(items, 200, function(i) return h:exec("echo " .. i).stdout end)
  local good = 0
  for i, r in ipairs(results) do if r.ok and r.value == i .. "\n" then good = good + 1 end end
  log("good " .. good .. " channels " .. h.session:stats().channels)
end }]])
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("good 200 channels 200", res.stdout, 1, true)
    end)
  end)

  describe("resources on remote hosts", function()
    it("converges every core type, then finds nothing to change, without a new channel", function()
      local body = [[
play "all types" { on = "role:web", function(h)
  local root = "$D/" .. h.name
  directory { root .. "/app", mode = "0750" }
  file { root .. "/app/a.conf", content = "name = " .. h.name .. "\n", mode = "0640" }
  template { root .. "/app/t.txt", src = "t.tmpl", vars = { n = 3 } }
  line { root .. "/app/l.conf", line = "max = 5", match = "^max", create = true }
  block { root .. "/app/b.conf", block = "x = 1\n", create = true }
  env_file { root .. "/app/app.env", vars = { A = "1", B = "two words" } }
  symlink { root .. "/current", to = root .. "/app" }
  command { "touch " .. root .. "/flag", creates = root .. "/flag" }
  absent { root .. "/junk" }
  systemd_unit { "app.service", dir = root, content = "[Unit]\nDescription=x\n" }
  log(h.name .. " channels " .. h.session:stats().channels)
end }]]
      assert(fs.mkdir(dir .. "/templates"))
      support.write(dir .. "/templates/t.tmpl", "host {{ host.name }}\n{% for i = 1, n do %}{{ i }}\n{% end %}")
      lab:ssh(1, "mkdir -p " .. dir .. "/h1/junk")
      local first = play(body)
      assert.equals(0, first.code, first.stdout .. first.stderr)
      assert.matches("h1           ok=0  changed=10  failed=0", first.stdout, 1, true)
      assert.equals("name = h1\n", remote(1, "cat " .. dir .. "/h1/app/a.conf"))
      assert.equals("640\n", remote(1, "stat -c %a " .. dir .. "/h1/app/a.conf"))
      assert.equals("host h1\n1\n2\n3\n", remote(1, "cat " .. dir .. "/h1/app/t.txt"))
      assert.equals(dir .. "/h1/app\n", remote(1, "readlink " .. dir .. "/h1/current"))
      local second = play(body)
      assert.equals(0, second.code, second.stdout .. second.stderr)
      assert.matches("h1           ok=10  changed=0  failed=0", second.stdout, 1, true)
      assert.matches("h2           ok=10  changed=0  failed=0", second.stdout, 1, true)
      -- what the first run read comes in one command (host/prefetch.lua):
      -- one exec channel for every unchanged resource
      assert.matches("h1 channels 1", second.stdout, 1, true)
      local check = play(body:gsub("name = ", "name: "), "--check", "--diff")
      assert.matches("-name = h1", check.stdout, 1, true)
      assert.equals("name = h1\n", remote(1, "cat " .. dir .. "/h1/app/a.conf"))
    end)

    it("makes directories as mkdir -p does, and says what is in the way", function()
      local res = play([[play "p" { on = "h1", function(h)
  step("mkdir", function()
    log("new " .. tostring(h:mkdir("$D/a/b/c", "0750")))
    log("again " .. tostring(h:mkdir("$D/a/b/c", "0750")))
    assert(h:write("$D/f", "x"))
    local ok, err = h:mkdir("$D/f")
    log("file " .. tostring(ok) .. " " .. tostring(err))
    ok, err = h:mkdir("$D/f/sub")
    log("under a file " .. tostring(ok) .. " " .. tostring(err))
  end)
end }]])
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.matches("new true", res.stdout, 1, true)
      assert.matches("again false", res.stdout, 1, true)
      assert.matches("file nil h1: " .. dir .. "/f: File exists", res.stdout, 1, true)
      assert.matches("under a file nil h1: ", res.stdout, 1, true)
      assert.equals("750\n", remote(1, "stat -c %a " .. dir .. "/a/b/c"))
    end)

    it("records remote file versions and rolls them back on the host", function()
      local function conf(v)
        return play(([[play "v" { on = "h2", function(h) file { "$D/v.conf", content = "v%d\n", mode = "0600" } end }]]):format(v))
      end
      for v = 1, 2 do
        local res = conf(v)
        assert.equals(0, res.code, res.stdout .. res.stderr)
      end
      local inv = lab:inventory_yaml()
      local hist = orch("history", "h2:" .. dir .. "/v.conf", "--state", dir .. "/state.db")
      assert.matches("h2:" .. dir .. "/v.conf", hist.stdout, 1, true)
      local res = orch("rollback", "h2:" .. dir .. "/v.conf", "--to", "1", "--state", dir .. "/state.db", "-i", inv)
      assert.equals(0, res.code, res.stdout .. res.stderr)
      assert.equals("v1\n", remote(2, "cat " .. dir .. "/v.conf"))
    end)
  end)

  describe("plays", function()
    it("count each host's round trips in the --json recap: a sequential SFTP stat is one", function()
      local function trips(stats)
        os.remove(dir .. "/state.db")   -- no reads of an earlier run to batch: every stat over SFTP
        local res = play(('play "p" { on = "h1", function(h) step("stats", function() for _ = 1, %d do assert(h:stat("/")) end end) end }')
          :format(stats), "--json")
        assert.equals(0, res.code, res.stdout .. res.stderr)
        for line in res.stdout:gmatch("[^\n]+") do
          local ev = json.decode(line)
          if ev.event == "recap" then return assert(ev.hosts.h1, line).round_trips end
        end
      end
      local one, eleven = trips(1), trips(11)
      -- TCP, key exchange and authentication: a handful, not dozens
      assert.is_true(one >= 5 and one <= 20, "round trips of a connection and a stat: " .. tostring(one))
      assert.equals(10, eleven - one)
    end)

    it("rolls out in serial batches, stops past max_fail and rolls back that batch", function()
      local res = play([[
play "rollout" { on = "all", serial = 1, max_fail = 0, function(h)
  file { "$D/deployed-" .. h.name, content = "new" }
  if h.name == "h2" then error("health check failed on " .. h.name) end
end, rollback = function(h)
  file { "$D/rolled-back-" .. h.name, content = "old" }
end }]], "--json")
      assert.equals(1, res.code)
      local events = {}
      for line in res.stdout:gmatch("[^\n]+") do events[#events + 1] = json.decode(line) end
      local deployed, rolled = {}, {}
      for _, ev in ipairs(events) do
        if ev.event == "resource" and ev.name:match("deployed%-") then deployed[ev.host] = true end
        if ev.event == "rollback" then rolled[ev.host] = true end
      end
      assert.same({ h1 = true, h2 = true }, deployed)   -- h3's batch never ran
      assert.same({ h2 = true }, rolled)
      assert.equals("old", remote(2, "cat " .. dir .. "/rolled-back-h2"))
      assert.matches("health check failed on h2", res.stdout, 1, true)
    end)

    it("runs a play's handlers on the hosts that notified them", function()
      local body = [[
play "p" { on = "role:web", function(h)
  file { "$D/hc-" .. h.name, content = "1", notify = "restart" }
end, handlers = { restart = function(h) log("restarting " .. h.name) end } }]]
      local res = play(body)
      assert.equals(0, res.code, res.stdout)
      assert.matches("restarting h1", res.stdout, 1, true)
      assert.matches("restarting h2", res.stdout, 1, true)
      assert.is_nil(play(body).stdout:find("restarting", 1, true))
    end)

    it("limits a play with --limit and names an unknown host with close matches", function()
      local res = play([[play "p" { on = "all", function(h) log("on " .. h.name) end }]], "--limit", "h1,h3")
      assert.equals(0, res.code, res.stdout)
      assert.is_nil(res.stdout:find("on h2", 1, true))
      res = play([[play "p" { on = "h4", function(h) end }]])
      assert.equals(2, res.code)
      assert.matches("unknown host 'h4'", res.stderr, 1, true)
    end)
  end)

  describe("orch run", function()
    it("prints each host's output as a block, and JSON per host", function()
      local res = orch("run", "role:web", "-i", lab:inventory_yaml(), "--", "echo hello")
      assert.equals(0, res.code, res.stdout)
      assert.matches("h1 | exit 0", res.stdout, 1, true)
      assert.matches("h2 | exit 0", res.stdout, 1, true)
      assert.matches("2 ok, 0 failed, 0 unreachable", res.stdout, 1, true)
      res = orch("run", "all", "-i", lab:inventory_yaml(), "--json", "--", "hostname")
      local n = 0
      for line in res.stdout:gmatch("[^\n]+") do
        local ev = json.decode(line)
        if ev.event == "result" then n = n + 1; assert.equals(0, ev.code) end
      end
      assert.equals(3, n)
    end)

    it("shows status for every host", function()
      local res = orch("status", "-i", lab:inventory_yaml())
      assert.equals(0, res.code, res.stdout)
      assert.matches("h1%s+up%s+", res.stdout)
    end)
  end)
end)
