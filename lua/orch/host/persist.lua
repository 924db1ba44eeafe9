-- host/persist.lua: SSH connections that outlive one orch process, as
-- OpenSSH's ControlPersist. With --persist SECONDS (or ORCH_PERSIST), a
-- host's session is held by a keeper process (cli/persist_keeper.lua)
-- that the first such orch starts; later runs reach it through a socket in
-- ~/.orch/persist/, a folder only its user can enter, and skip the TCP
-- connect, key exchange and authentication. The keeper leaves once no orch
-- has used it for SECONDS.
--
-- A session here has the methods remote.lua uses of a real one (exec,
-- sftp, sftp_start, stats, label, close); each call is a message to the
-- keeper, which makes it on its session and sends back what it returned.
local unix = require("orch.core.unix")
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local info = require("orch.core.info")
local wire = require("orch.wire")

local M = {}

--- How long kept connections last, in seconds: what the command line set
-- (--persist), else ORCH_PERSIST; nil when off.
function M.seconds()
  local s = M.configured
  if s == nil then s = tonumber(os.getenv("ORCH_PERSIST") or "") end
  if s and s > 0 then return math.ceil(s) end
  return nil
end

--- The keeper's folder, made 0700 if missing; nil, why when it is open
-- to anyone but this user (then anyone could drive our connections).
function M.dir()
  local dir = (os.getenv("HOME") or "/root") .. "/.orch/persist"
  local st = fs.stat(dir)
  if not st then
    local ok, err = fs.mkdir(dir, tonumber("700", 8))
    if not ok then return nil, err end
    st = assert(fs.stat(dir))
  end
  if st.type ~= "directory" or st.uid ~= info.uid or st.mode & tonumber("077", 8) ~= 0 then
    return nil, ("%s must be a folder of yours that only you can open (chmod 700)"):format(dir)
  end
  return dir
end

--- The keeper's socket in dir. Its name holds orch's version: what the
-- processes say to each other may change between versions, so a new orch
-- starts a keeper of its own and the old one idles out.
function M.socket(dir)
  return ("%s/ssh-%s.sock"):format(dir, info.version)
end

-- Starts a keeper in its own session (setsid), so it outlives this orch
-- and no Ctrl-C or process-group kill of ours reaches it. Its output goes
-- to keeper.log beside the socket.
local function start_keeper(dir, seconds)
  local code = ("require('orch.cli.persist_keeper').main(%q, %d)"):format(M.socket(dir), seconds)
  local res = require("orch.proc").run({ "sh", "-c",
    'exec setsid -f "$0" -e "$1" </dev/null >>"$2" 2>&1', info.exe, code, dir .. "/keeper.log" })
  if not res or res.code ~= 0 then
    return nil, ("could not start the connection keeper: %s"):format(
      res and res.stderr ~= "" and res.stderr or "setsid failed")
  end
  return true
end

local starting   -- a keeper this process started, while it comes up

-- A stream to the keeper, started if none answers. Many hosts connect at
-- once: only the first starts it, the others wait for its socket.
local function open_stream(seconds)
  local dir, err = M.dir()
  if not dir then return nil, err end
  local path = M.socket(dir)
  local s, cerr, code = unix.connect(path)
  if s then return s end
  if code ~= "ENOENT" and code ~= "ECONNREFUSED" then return nil, cerr end
  if not starting or loop.now() - starting > 10 then
    starting = loop.now()
    local ok, serr = start_keeper(dir, seconds)
    if not ok then starting = nil; return nil, serr end
  end
  local pause = 0.005
  while loop.now() - starting < 10 do
    loop.sleep(pause)
    s = unix.connect(path)
    if s then return s end
    pause = math.min(pause * 2, 0.1)
  end
  return nil, ("the connection keeper did not open %s within 10 s; see %s/keeper.log"):format(path, dir)
end

local Session = {}
Session.__index = Session

-- The inventory fields ssh.connect reads, the password revealed: the
-- keeper connects as this process would have.
local FIELDS = { "name", "address", "port", "user", "key_file", "known_hosts", "host_key_checking",
  "connect_timeout", "agent", "server_alive_interval", "server_alive_count_max" }

local function params(h)
  local p = {}
  for _, k in ipairs(FIELDS) do p[k] = h[k] end
  if h.password then p.password = require("orch.secret").reveal(h.password) end
  return p
end

-- Sends op and waits for its answer: a table of what the keeper's call
-- returned ({ n = count, ... }). One task at a time reads the stream and
-- hands each answer to the task that asked; the others wait on a cond.
function Session:call(op, ...)
  if self.lost then return { n = 3, nil, self.lost, "EPERSIST" } end
  local id = self.next_id
  self.next_id = id + 1
  local ok, err = self.stream:send(wire.encode({ id = id, op = op, n = select("#", ...), ... }))
  if not ok then return { n = 3, nil, self:lose(err), "EPERSIST" } end
  self.asked[id] = true
  local _ <close> = setmetatable({}, { __close = function()
    self.asked[id] = nil
    self.answers[id] = nil
  end })
  while self.answers[id] == nil and not self.lost do
    if self.reading then
      self.woken:wait()
    else
      self.reading = true
      local _ <close> = setmetatable({}, { __close = function()
        self.reading = false
        self.woken:broadcast()
      end })
      local msg, rerr = self.stream:recv()
      if not msg then
        self:lose(rerr)
      else
        local m = wire.decode(msg)
        if self.asked[m.id] then self.answers[m.id] = m end
      end
    end
  end
  return self.answers[id] or { n = 3, nil, self.lost, "EPERSIST" }
end

-- The stream broke (the keeper was killed): every call from now on fails.
function Session:lose(why)
  self.lost = self.lost or ("the connection keeper is gone (%s)"):format(why)
  return self.lost
end

-- An op whose answer no one waits for.
function Session:tell(op, ...)
  if not self.lost then self.stream:send(wire.encode({ op = op, n = select("#", ...), ... })) end
end

local function results(r) return table.unpack(r, 1, r.n) end

function Session:exec(line, stdin, keep_stdin, deadline)
  return results(self:call("exec", line, stdin, keep_stdin, deadline))
end

function Session:sftp(ops, nowait)
  if nowait then return self:tell("sftp", ops, true) end
  return results(self:call("sftp", ops))
end

function Session:sftp_start() self:tell("sftp_start") end

function Session:stats()
  local r = self:call("stats")
  return r[1] or { round_trips = 0, channels = 0, sftp_ops = 0 }
end

function Session:label(name)
  if name == nil then return self.name end
  self.name = name   -- messages from the keeper name the host as the inventory does already
end

function Session:close()
  self.lost = self.lost or "closed"
  self.stream:close()
end

--- A session for inventory host h through the keeper (started if need
-- be), or nil, "host: reason", code: the same reasons ssh.connect gives.
function M.connect(h, seconds)
  local stream, err = open_stream(seconds)
  if not stream then return nil, ("%s: --persist: %s"):format(h.name, err), "EPERSIST" end
  local sess = setmetatable({ stream = stream, name = h.name, next_id = 1, asked = {}, answers = {},
    woken = loop.cond() }, Session)
  local ok, cerr, code = results(sess:call("hello", params(h), seconds))
  if not ok then
    sess:close()
    return nil, cerr, code
  end
  return sess
end

--- Ask the keeper to close its connections and leave (`orch disconnect`).
-- Returns whether one was running, or nil, why.
function M.stop()
  local dir, err = M.dir()
  if not dir then return nil, err end
  local s = unix.connect(M.socket(dir))
  if not s then return false end
  s:send(wire.encode({ op = "exit", n = 0 }))
  s:recv()   -- the keeper closes the stream once its connections are closed
  s:close()
  return true
end

return M
