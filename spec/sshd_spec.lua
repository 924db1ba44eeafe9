local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local proc = require("orch.proc")
local fs = require("orch.core.fs")
local yaml = require("orch.core.yaml")

-- A script for SSH_ASKPASS that answers every prompt with `secret`.
local function askpass(dir, secret)
  local path = dir .. "/askpass-" .. fs.sha256_data(secret):sub(1, 8)
  assert(fs.write(path, "#!/bin/sh\nprintf '%s\\n' '" .. secret .. "'\n", { mode = "0700" }))
  return { SSH_ASKPASS = path, SSH_ASKPASS_REQUIRE = "force", DISPLAY = "none" }
end

describe("spec.helpers.sshd", function()
  if not sshd.available() then return pending("needs sshd (" .. sshd.sshd .. ")") end
  local lab
  lazy_setup(function() lab = sshd.start(3, { groups = { web = { 1, 2 }, db = { 3 } } }) end)
  lazy_teardown(function() if lab then lab:stop() end end)

  it("starts servers that run commands for the lab's key, with the lab's remote HOME", function()
    assert.equals(3, #lab.hosts)
    for i, h in ipairs(lab.hosts) do
      assert.equals("h" .. i, h.name)
      assert.equals("127.0.0.1", h.address)
      assert.is_true(support.alive(h.pid))
      local res = lab:ssh(i, "echo ok; echo $HOME")
      assert.equals(0, res.code, res.stderr)
      assert.equals("ok\n" .. lab.remote_home .. "\n", res.stdout)
    end
    assert.are_not.equal(lab.hosts[1].port, lab.hosts[2].port)
    assert.are_not.equal(lab.hosts[2].port, lab.hosts[3].port)
    assert.are_not.equal(lab.hosts[1].port, lab.hosts[3].port)
  end)

  it("gives the client a HOME with the key, known_hosts for every server and an empty config", function()
    assert.equals(lab.home .. "/.ssh/id_ed25519", lab.key)
    assert.equals("", support.read(lab.home .. "/.ssh/config"))
    local known = support.read(lab.home .. "/.ssh/known_hosts")
    for _, h in ipairs(lab.hosts) do
      assert.matches("[127.0.0.1]:" .. h.port .. " ssh-ed25519 ", known, 1, true)
    end
    -- HOME's files are all a client needs (OpenSSH itself finds ~ through
    -- the passwd entry, not $HOME, hence the explicit paths)
    local res = proc.run({ "ssh", "-F", lab.home .. "/.ssh/config", "-o", "BatchMode=yes",
      "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
      "-o", "UserKnownHostsFile=" .. lab.home .. "/.ssh/known_hosts",
      "-i", lab.home .. "/.ssh/id_ed25519", "-p", tostring(lab.hosts[1].port),
      lab.user .. "@127.0.0.1", "true" }, { env = { HOME = lab.home } })
    assert.equals(0, res.code, res.stderr)
  end)

  it("refuses the wrong key", function()
    local res = lab:ssh(1, "echo ok", { key = lab.wrong_key })
    assert.equals(255, res.code)
    assert.matches("Permission denied (publickey", res.stderr, 1, true)
    assert.equals("", res.stdout)
  end)

  it("accepts the PEM ECDSA key", function()
    assert.matches("^%-%-%-%-%-BEGIN EC PRIVATE KEY", support.read(lab.ecdsa_key))
    local res = lab:ssh(2, "echo ecdsa", { key = lab.ecdsa_key })
    assert.equals(0, res.code, res.stderr)
    assert.equals("ecdsa\n", res.stdout)
  end)

  it("accepts the encrypted keys with the passphrase, and only with it", function()
    for _, key in ipairs({ lab.encrypted_key, lab.encrypted_pem_key }) do
      local pub = support.read(key .. ".pub"):match("^%S+ %S+")
      local res = proc.run({ "ssh-keygen", "-y", "-P", lab.passphrase, "-f", key })
      assert.equals(0, res.code, res.stderr)
      assert.equals(pub, res.stdout:match("^%S+ %S+"))
      assert.are_not.equal(0, proc.run({ "ssh-keygen", "-y", "-P", "wrong", "-f", key }).code)

      res = lab:ssh(3, "echo unlocked", { key = key, batch = false, env = askpass(lab.dir, lab.passphrase) })
      assert.equals(0, res.code, res.stderr)
      assert.equals("unlocked\n", res.stdout)
    end
  end)

  it("starts an ssh-agent that holds the lab key", function()
    local sock = lab:agent()
    assert.equals(sock, lab:agent())
    local listed = proc.run({ "ssh-add", "-L" }, { env = { SSH_AUTH_SOCK = sock } })
    assert.equals(0, listed.code, listed.stderr)
    assert.matches(support.read(lab.key .. ".pub"):match("^%S+ %S+"), listed.stdout, 1, true)
    local res = lab:ssh(1, "echo agent", { key = false, agent = sock })
    assert.equals(0, res.code, res.stderr)
    assert.equals("agent\n", res.stdout)
    -- and without the agent (and no key file) the same login is refused
    assert.equals(255, lab:ssh(1, "echo agent", { key = false }).code)
  end)

  it("writes an Ansible-style inventory with groups", function()
    local path = lab:inventory_yaml({ host_vars = { [2] = { root = "/tmp/x" } }, vars = { port = 8080 } })
    local inv = yaml.load_file(path)
    assert.same({ port = 8080 }, inv.all.vars)
    for i, h in ipairs(lab.hosts) do
      local vars = inv.all.hosts[h.name]
      assert.same("127.0.0.1", vars.ansible_host)
      assert.same(h.port, vars.ansible_port)
      assert.same(lab.user, vars.ansible_user)
      assert.same(lab.key, vars.ansible_ssh_private_key_file)
      assert.same(i == 2 and "/tmp/x" or nil, vars.root)
    end
    assert.is_not_nil(inv.all.children.web.hosts.h1)
    assert.is_not_nil(inv.all.children.web.hosts.h2)
    assert.is_nil(inv.all.children.web.hosts.h3)
    assert.is_not_nil(inv.all.children.db.hosts.h3)
  end)

  it("stops and restarts one host: its port refuses connections in between", function()
    local port, old_pid = lab.hosts[2].port, lab.hosts[2].pid
    lab:stop_host(2)
    assert.is_false(support.alive(old_pid))
    local res = lab:ssh(2, "true")
    assert.equals(255, res.code)
    assert.matches("port " .. port .. ": Connection refused", res.stderr, 1, true)
    assert.equals(0, lab:ssh(1, "true").code)   -- the others carry on
    lab:start_host(2)
    assert.equals(port, lab.hosts[2].port)
    res = lab:ssh(2, "echo back")
    assert.equals(0, res.code, res.stderr)       -- same host key: known_hosts still holds
    assert.equals("back\n", res.stdout)
  end)
end)

describe("spec.sshd lab:stop()", function()
  if not sshd.available() then return pending("needs sshd (" .. sshd.sshd .. ")") end

  it("kills the servers and their sessions, removes the directory, and can be called twice", function()
    local lab = sshd.start(2, { distinct_host_keys = true })
    finally(function() lab:stop() end)
    local keys = support.read(lab.known_hosts)
    local k1 = keys:match("%]:%d+ (ssh%-ed25519 %S+)\n")
    assert.is_not_nil(k1)
    assert.are_not.equal(k1, keys:match("\n%[127.0.0.1%]:%d+ (ssh%-ed25519 %S+)\n"))

    -- a session that would run for a minute
    local argv = lab:ssh_argv(1)
    argv[#argv + 1] = "echo $$; exec sleep 60"
    local session = assert(proc.spawn({ argv = argv }))
    local stream, line = session:read()
    assert.equals("stdout", stream)
    local remote_sleep = assert(tonumber(line:match("^(%d+)\n$")))
    assert.is_true(support.alive(remote_sleep))
    local pids = { lab.hosts[1].pid, lab.hosts[2].pid }
    local agent = lab:agent()
    lab:stop()
    lab:stop()
    assert.equals(255, session:wait().code)   -- its connection went with the server
    session:close()
    for _, pid in ipairs(pids) do assert.is_false(support.alive(pid)) end
    assert.is_false(support.alive(remote_sleep))
    assert.same({}, support.processes_with(lab.dir))
    assert.is_nil(fs.stat(lab.dir))
    assert.is_nil(fs.stat(agent))
  end)

  it("creates a throwaway password user on request, and removes it #machine", function()
    if not support.is_root() then pending("needs root: useradd changes /etc/passwd") return end
    local lab = sshd.start(1, { password_user = true })
    finally(function() lab:stop() end)
    local user = lab.password_user
    assert.matches("^orchspec%x+$", user.name)
    local res = lab:ssh(1, "id -un", { key = false, user = user.name, batch = false,
      env = askpass(lab.dir, user.password), options = { "PubkeyAuthentication=no" } })
    assert.equals(0, res.code, res.stderr)
    assert.equals(user.name .. "\n", res.stdout)
    res = lab:ssh(1, "id -un", { key = false, user = user.name, batch = false,
      env = askpass(lab.dir, "wrong"), options = { "PubkeyAuthentication=no", "NumberOfPasswordPrompts=1" } })
    assert.equals(255, res.code)
    lab:stop()
    assert.equals(2, proc.run({ "getent", "passwd", user.name }).code)
  end)
end)
