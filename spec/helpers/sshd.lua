-- sshd.lua: real OpenSSH servers on 127.0.0.1 for the specs, with throwaway
-- keys, a client HOME that trusts them, an inventory, and an ssh-agent.
--
--   local sshd = require("spec.helpers.sshd")
--   local lab
--   lazy_setup(function() lab = sshd.start(3) end)
--   lazy_teardown(function() lab:stop() end)
--   support.orch("play", f, "-i", lab:inventory_yaml(), { env = { HOME = lab.home } })
--
-- A lab (all under lab.dir, a fresh temp directory):
--   lab.hosts[i]        { name = "hI", address = "127.0.0.1", port, pid, log }
--   lab.user            the login user (whoever runs the specs: root in CI)
--   lab.home            a client HOME: .ssh/id_ed25519(.pub), .ssh/known_hosts
--                       ("[127.0.0.1]:PORT ssh-ed25519 ..." per server), and
--                       an empty .ssh/config
--   lab.key             = lab.home/.ssh/id_ed25519, authorized
--   lab.ecdsa_key       ECDSA P-256 in PEM ("BEGIN EC PRIVATE KEY"), authorized
--   lab.encrypted_key   ed25519, OpenSSH format, bcrypt-encrypted, authorized
--   lab.encrypted_pem_key  ECDSA, PEM, AES-encrypted, authorized
--   lab.passphrase      the passphrase of both encrypted keys
--   lab.wrong_key       ed25519, NOT authorized
--   lab.known_hosts, lab.authorized_keys, lab.remote_home (the sessions' HOME)
--   lab:ssh(i, cmd [, opts]) / lab:ssh_argv(i [, opts])   the real ssh client
--   lab:agent()         an ssh-agent holding lab.key: its socket (SSH_AUTH_SOCK)
--   lab:inventory_yaml([opts])  an Ansible-style YAML inventory: its path
--   lab:play(dir, body, ...)   orch play of body on the lab (see below)
--   lab:stop_host(i) / lab:start_host(i)   take a host down / bring it back
--   lab:stop()          everything down, lab.dir removed; safe to call twice
--
-- Call lab:stop() in lazy_teardown (or in an `it`'s finally). busted keeps
-- one finally per `it`, so this module never registers one behind your
-- back. If a lab is dropped without stop(), the garbage collector still
-- kills its sshd listeners and removes lab.dir.
--
-- Each server is `/usr/sbin/sshd -D -e -f hI/sshd_config`, started through
-- `sh -c 'exec ...'` so that its stderr (the log, with -e) goes to
-- hI/sshd.log and no pipe to this process stays open. Only processes this
-- module started are ever signalled: the recorded listener pids, the
-- ssh-agent, and the descendants of those listeners (their connections).
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local proc = require("orch.proc")
local inventory = require("spec.helpers.inventory")
local ports = require("spec.helpers.ports")
local procs = require("spec.helpers.procs")
local support = require("spec.helpers.support")

local M = {}

M.sshd = "/usr/sbin/sshd"
M.start_timeout = 10   -- seconds for every server to listen
M.passphrase = "orch-spec-passphrase"

local lab = {}
lab.__index = lab

--- Is there an sshd to start? (for `pending("needs sshd")`)
function M.available()
  local st = fs.stat(M.sshd)
  return st ~= nil and st.type == "file"
end

local function check(argv, opts)
  local res, err = proc.run(argv, opts)
  if not res then error(err, 3) end
  if not res.ok then
    error(("%s failed (%s): %s"):format(proc.display({ argv = argv }), proc.failure(res),
      res.stderr .. res.stdout), 3)
  end
  return res
end

local function write_file(path, data, mode)
  assert(fs.write(path, data, { mode = mode or "0644" }))
end

local function keygen(path, kind, passphrase, extra)
  local argv = { "ssh-keygen", "-q", "-t", kind, "-N", passphrase or "", "-C", "orch-spec", "-f", path }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  check(argv)
end

local function public_key(path)
  local pub = assert(fs.read(path .. ".pub"))
  return pub:match("^(%S+ %S+)")
end

function lab:_config(h)
  local lines = {
    "# sshd for the orch specs: host " .. h.name .. " of " .. self.dir,
    "ListenAddress 127.0.0.1",
    "Port " .. h.port,
    "HostKey " .. h.host_key,
    "PidFile " .. h.dir .. "/sshd.pid",
    "AuthorizedKeysFile " .. self.authorized_keys,
    "StrictModes no",
    "UsePAM no",
    "PermitRootLogin yes",
    "PubkeyAuthentication yes",
    "PasswordAuthentication " .. (self.password_user and "yes" or "no"),
    "PermitEmptyPasswords no",
    "KbdInteractiveAuthentication no",
    "MaxAuthTries 10",
    "MaxSessions 300",
    "MaxStartups 300",
    "UseDNS no",
    "PrintMotd no",
    "PrintLastLog no",
    "X11Forwarding no",
    "LogLevel " .. self.log_level,
    -- The login shell sources $HOME/.bashrc; this machine's can be slow
    -- (pyenv init: ~0.75 s per command), and a real target's is not ours.
    "SetEnv HOME=" .. self.remote_home,
    "Subsystem sftp " .. self.sftp,
  }
  if self.config_extra then lines[#lines + 1] = self.config_extra end
  return table.concat(lines, "\n") .. "\n"
end

-- Spawn host h's sshd (not waiting for it).
function lab:_spawn(h)
  write_file(h.dir .. "/sshd_config", self:_config(h))
  local st = fs.stat(h.log)
  h.log_offset = st and st.size or 0   -- the log is appended to across restarts
  local p, err = proc.spawn({ argv = { "/bin/sh", "-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1',
    "sh", h.log, M.sshd, "-D", "-e", "-f", h.dir .. "/sshd_config" } })
  if not p then error("cannot start sshd: " .. tostring(err), 3) end
  h.proc, h.pid = p, p:pid()
end

-- What host h's sshd logged since its last start.
local function new_log(h)
  return (fs.read(h.log) or ""):sub((h.log_offset or 0) + 1)
end

local function log_tail(h)
  local log = new_log(h)
  return log ~= "" and log:sub(-2000) or "(empty)"
end

-- Reap a listener that has exited (it is a zombie until the loop runs).
local function reap(h)
  if h.proc then
    h.proc:wait()
    h.proc:close()
    h.proc = nil
  end
  h.pid = nil
end

-- Start the given hosts and wait until each one listens. A host whose port
-- was taken meanwhile moves to another port (and known_hosts is rewritten),
-- unless keep_port is set.
function lab:_start_hosts(list, keep_port)
  for _, h in ipairs(list) do self:_spawn(h) end
  local deadline = loop.now() + M.start_timeout
  local pending = {}
  for _, h in ipairs(list) do pending[#pending + 1] = h end
  local moved, polls = false, 0
  while #pending > 0 do
    -- sshd logs "Server listening" right after listen(); at a LogLevel
    -- that hides it, the socket table says so instead (read seldom: it
    -- is costly).
    polls = polls + 1
    local sockets = polls % 25 == 0 and ports.listening() or nil
    local still = {}
    for _, h in ipairs(pending) do
      local log = new_log(h)
      if log:find("Server listening on 127.0.0.1 port " .. h.port .. ".", 1, true)
          or (sockets and ports.listens(h.pid, h.port, sockets)) then
        h.up = true
      elseif not procs.is_alive(h.pid) then
        reap(h)
        h.retries = (h.retries or 0) + 1
        if log:find("Address already in use", 1, true) and not keep_port and h.retries <= 10 then
          h.port = ports.free(1)[1]
          moved = true
          self:_spawn(h)
          still[#still + 1] = h
        else
          error(("sshd %s (port %d) exited at start; %s:\n%s"):format(h.name, h.port, h.log, log), 3)
        end
      else
        still[#still + 1] = h
      end
    end
    pending = still
    if #pending > 0 then
      if loop.now() > deadline then
        local h = pending[1]
        error(("sshd %s (port %d, pid %d) not listening after %g s; %s:\n%s"):format(
          h.name, h.port, h.pid, M.start_timeout, h.log, log_tail(h)), 3)
      end
      loop.sleep(0.01)
    end
  end
  if moved then self:_write_known_hosts() end
end

function lab:_write_known_hosts()
  local lines = {}
  for i, h in ipairs(self.hosts) do
    lines[i] = ("[127.0.0.1]:%d %s"):format(h.port, public_key(h.host_key))
  end
  write_file(self.known_hosts, table.concat(lines, "\n") .. "\n", "0644")
end

--- Start n servers. opts:
--   distinct_host_keys  a host key per server (default: one shared key)
--   host_key_type       "ed25519" (default), "ecdsa" or "rsa"
--   password_user       true or a name: create a throwaway local user with
--                       a random password (lab.password_user = { name,
--                       password }), removed by stop(); needs root
--   groups              default groups for inventory_yaml()
--   sftp                the sftp Subsystem (default "internal-sftp")
--   log_level           sshd LogLevel (default "VERBOSE")
--   config_extra        text appended to every sshd_config (e.g. a Match block)
function M.start(n, opts)
  opts = opts or {}
  assert(math.type(n) == "integer" and n >= 1, "sshd.start(n): n must be a positive integer")
  local dir = assert(fs.tmpdir("orch-sshd-"))
  local self = setmetatable({
    dir = dir,
    home = dir .. "/home",
    remote_home = dir .. "/remote-home",
    authorized_keys = dir .. "/authorized_keys",
    known_hosts = dir .. "/home/.ssh/known_hosts",
    key = dir .. "/home/.ssh/id_ed25519",
    wrong_key = dir .. "/keys/wrong_ed25519",
    ecdsa_key = dir .. "/keys/ecdsa.pem",
    encrypted_key = dir .. "/keys/encrypted_ed25519",
    encrypted_pem_key = dir .. "/keys/encrypted_ecdsa.pem",
    passphrase = M.passphrase,
    hosts = {},
    groups = opts.groups,
    sftp = opts.sftp or "internal-sftp",
    log_level = opts.log_level or "VERBOSE",
    config_extra = opts.config_extra,
  }, lab)
  -- If the caller forgets stop(): kill the listeners and remove the tree.
  self._guard = setmetatable({}, { __gc = function()
    if self.stopped then return end
    for _, h in ipairs(self.hosts) do
      if h.proc then h.proc:close() end
    end
    if self._agent then self._agent:close() end
    fs.remove(dir, { recursive = true })
  end })
  local ok, err = pcall(function()
    self.user = check({ "id", "-un" }).stdout:gsub("%s+$", "")
    local root = self.user == "root"
    if root then fs.mkdir("/run/sshd", "0755") end   -- sshd's privilege separation dir
    for _, d in ipairs({ "/keys", "/home", "/home/.ssh", "/remote-home" }) do
      assert(fs.mkdir(dir .. d, "0700"))
    end
    assert(fs.chmod(self.remote_home, "0755"))
    write_file(self.remote_home .. "/.bashrc", "")
    write_file(self.remote_home .. "/.profile", "")
    write_file(self.home .. "/.ssh/config", "", "0600")

    -- Keys, generated concurrently (the encrypted one's bcrypt costs ~0.1 s).
    local kind = opts.host_key_type or "ed25519"
    local jobs = {
      { self.key, "ed25519" },
      { self.wrong_key, "ed25519" },
      { self.ecdsa_key, "ecdsa", nil, { "-b", "256", "-m", "PEM" } },
      { self.encrypted_key, "ed25519", self.passphrase },
      { self.encrypted_pem_key, "ecdsa", self.passphrase, { "-b", "256", "-m", "PEM" } },
    }
    for i = 1, n do
      local h = { name = "h" .. i, address = "127.0.0.1", dir = dir .. "/h" .. i }
      h.log = h.dir .. "/sshd.log"
      assert(fs.mkdir(h.dir, "0700"))
      if opts.distinct_host_keys or i == 1 then
        h.host_key = (opts.distinct_host_keys and h.dir or dir .. "/keys") .. "/host_" .. kind
        jobs[#jobs + 1] = { h.host_key, kind }
      else
        h.host_key = self.hosts[1].host_key
      end
      self.hosts[i] = h
    end
    local tasks = {}
    for i, j in ipairs(jobs) do
      tasks[i] = loop.spawn(function() keygen(j[1], j[2], j[3], j[4]) end)
    end
    for _, t in ipairs(tasks) do
      local tok, terr = t:wait()
      if not tok then error(terr, 0) end
    end
    write_file(self.authorized_keys, table.concat({
      public_key(self.key), public_key(self.ecdsa_key),
      public_key(self.encrypted_key), public_key(self.encrypted_pem_key) }, "\n") .. "\n")

    if opts.password_user then
      assert(root, "sshd.start: password_user needs root (useradd)")
      -- Names and passwords from the (unique) lab.dir and the clock, not
      -- math.random, which busted may have seeded to a fixed value.
      local digest = fs.sha256_data(dir .. loop.time())
      local name = type(opts.password_user) == "string" and opts.password_user
        or ("orchspec" .. digest:sub(1, 6))
      local password = digest:sub(7, 26)
      local pw_home = dir .. "/pw-home"
      assert(fs.chmod(dir, "0711"))   -- so the user reaches remote-home
      check({ "useradd", "-M", "-d", pw_home, "-s", "/bin/sh", name })
      self.password_user = { name = name, password = password }
      assert(fs.mkdir(pw_home, "0700"))
      assert(fs.chown(pw_home, name, name))
      check({ "chpasswd" }, { stdin = name .. ":" .. password .. "\n" })
    end

    local free = ports.free(n)
    for i, h in ipairs(self.hosts) do h.port = free[i] end
    self:_write_known_hosts()
    self:_start_hosts(self.hosts)
  end)
  if not ok then
    self:stop()
    error(err, 2)
  end
  return self
end

--- Stop host i's sshd (the listener and, unless opts.keep_connections, its
-- open connections): new connections to its port are refused.
function lab:stop_host(i, opts)
  local h = assert(self.hosts[i], "no host " .. tostring(i))
  if not h.pid then return end
  local list = {}
  if not (opts and opts.keep_connections) then list = procs.descendants(h.pid) end
  local st = procs.stat(h.pid)
  if st then table.insert(list, 1, { pid = h.pid, start = st.start }) end
  procs.terminate(list)
  reap(h)
  h.up = false
end

--- Start host i's sshd again, on the same port and with the same host key.
function lab:start_host(i)
  local h = assert(self.hosts[i], "no host " .. tostring(i))
  if h.pid and procs.is_alive(h.pid) then return end
  h.retries = 0
  self:_start_hosts({ h }, true)
end

--- argv of the real OpenSSH client for host i, without the command.
-- opts: key (default lab.key; false for none), agent (a socket; default
-- none), user, batch (default true), options (extra "-o" values).
function lab:ssh_argv(i, opts)
  opts = opts or {}
  local h = assert(self.hosts[i], "no host " .. tostring(i))
  local key = opts.key
  if key == nil then key = self.key end
  local argv = { "ssh", "-F", "/dev/null", "-p", tostring(h.port), "-l", opts.user or self.user,
    "-o", "BatchMode=" .. (opts.batch == false and "no" or "yes"),
    "-o", "StrictHostKeyChecking=yes",
    "-o", "UserKnownHostsFile=" .. self.known_hosts,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "ControlMaster=no", "-o", "ControlPath=none",
    "-o", "ConnectTimeout=5",
    "-o", "LogLevel=ERROR",
    "-o", "IdentityAgent=" .. (opts.agent or "none"),
  }
  if key then
    for _, a in ipairs({ "-o", "IdentitiesOnly=yes", "-i", key }) do argv[#argv + 1] = a end
  else
    -- No key file at all (not even ~/.ssh/id_*): only the agent, if any.
    for _, a in ipairs({ "-o", "IdentityFile=" .. self.dir .. "/no-such-key" }) do argv[#argv + 1] = a end
  end
  for _, o in ipairs(opts.options or {}) do
    argv[#argv + 1] = "-o"
    argv[#argv + 1] = o
  end
  argv[#argv + 1] = h.address
  return argv
end

--- Run cmd on host i with the real ssh client: proc.run's result (it does
-- not raise on a failed command). opts: as ssh_argv, plus env, stdin and
-- timeout (default 20 s).
function lab:ssh(i, cmd, opts)
  opts = opts or {}
  local argv = self:ssh_argv(i, opts)
  argv[#argv + 1] = cmd
  local env = { HOME = self.home }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local res, err = proc.run(argv, { env = env, stdin = opts.stdin, timeout = opts.timeout or 20 })
  if not res then error(err, 2) end
  return res
end

--- Start an ssh-agent holding the user key (lab.key); its socket path, for
-- SSH_AUTH_SOCK. The same agent on later calls; stop() kills it.
function lab:agent()
  if self.agent_socket then return self.agent_socket end
  local sock = self.dir .. "/agent.sock"
  local p, err = proc.spawn({ argv = { "/bin/sh", "-c", 'exec "$@" >/dev/null 2>&1', "sh",
    "ssh-agent", "-D", "-a", sock } })
  if not p then error("cannot start ssh-agent: " .. tostring(err), 2) end
  self._agent = p
  local deadline = loop.now() + M.start_timeout
  while not fs.stat(sock) do
    if not procs.is_alive(p:pid()) or loop.now() > deadline then
      error("ssh-agent did not create " .. sock, 2)
    end
    loop.sleep(0.01)
  end
  check({ "ssh-add", "-q", self.key }, { env = { SSH_AUTH_SOCK = sock } })
  self.agent_socket = sock
  return sock
end

--- Write an Ansible-style YAML inventory of the servers; its path.
-- opts:
--   groups     { web = { 1, 2 }, db = { "h3" } } (default: the start option)
--   vars       variables for every host, written as `all: vars:`
--   host_vars  { [1] = { root = "/srv" } } or { h1 = ... }, written in the
--              host's own mapping, where orch reads `address`, `user`,
--              `port`, `key_file`, ... as its own keys (so `port` there is
--              the SSH port; put an application's port in `vars`)
--   key        the ansible_ssh_private_key_file (default lab.key; false: none)
--   path       default lab.dir/hosts.yaml
-- Every host carries its ansible_* keys itself, so a reader needs no group
-- vars inheritance to connect.
function lab:inventory_yaml(opts)
  return inventory.write(self, opts)
end

--- `orch play` of body (with $D replaced by dir) as dir/site.lua on this
-- lab's hosts, its state in dir/state.db, as the lab's client (HOME, no
-- agent). Extra arguments go to orch play; a last table adds to its env.
function lab:play(dir, body, ...)
  local args = { ... }
  local env = type(args[#args]) == "table" and table.remove(args) or {}
  env.HOME, env.SSH_AUTH_SOCK = self.home, false
  support.write(dir .. "/site.lua", (body:gsub("%$D", function() return dir end)))
  local argv = { "play", dir .. "/site.lua", "-i", self:inventory_yaml(), "--state", dir .. "/state.db" }
  table.move(args, 1, #args, #argv + 1, argv)
  argv[#argv + 1] = { env = env }
  return support.orch(table.unpack(argv))
end

--- Stop every server (and its connections) and the agent, remove the
-- password user, then lab.dir. Safe to call twice.
function lab:stop()
  if self.stopped then return end
  self.stopped = true
  local errs = {}
  for i in ipairs(self.hosts) do
    local ok, err = pcall(self.stop_host, self, i)
    if not ok then errs[#errs + 1] = err end
  end
  if self._agent then
    local pid = self._agent:pid()
    local st = procs.stat(pid)
    if st then procs.terminate({ { pid = pid, start = st.start } }) end
    self._agent:wait()
    self._agent:close()
    self._agent = nil
  end
  if self.password_user then
    local res = proc.run({ "userdel", self.password_user.name })
    if not res or not res.ok then
      errs[#errs + 1] = "userdel " .. self.password_user.name .. ": " .. (res and res.stderr or "")
    end
  end
  local ok, err = fs.remove(self.dir, { recursive = true })
  if not ok then errs[#errs + 1] = err end
  if #errs > 0 then error("sshd lab stop: " .. table.concat(errs, "; "), 2) end
end

return M
