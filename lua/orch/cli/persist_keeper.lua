-- cli/persist_keeper.lua: the connection keeper host/persist.lua starts
-- (`orch -e "require('orch.cli.persist_keeper').main(SOCKET, SECONDS)"`,
-- in its own session). It holds one SSH session per host, reused by every
-- orch that connects to SOCKET, and leaves once no orch has been connected
-- for SECONDS (the latest orch's --persist).
--
-- Each stream is one host of one orch process: "hello" with the inventory
-- fields, then the session's calls (exec, sftp, stats), answered by id as
-- they finish, concurrently, as they would be on a session of its own.
local unix = require("orch.core.unix")
local loop = require("orch.core.loop")
local fs = require("orch.core.fs")
local info = require("orch.core.info")
local wire = require("orch.wire")
local ssh = require("orch.host.ssh")

local M = {}

local function log(fmt, ...)
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), ("[%d] "):format(info.pid), fmt:format(...), "\n")
  io.stderr:flush()
end

-- The sessions by what they were made from (the inventory fields as
-- sent): a host named or reached differently gets a session of its own.
local sessions = {}

local function key_of(p)
  local names = {}
  for k in pairs(p) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = ("%s=%s"):format(k, tostring(p[k])) end
  return table.concat(parts, "\0")
end

-- The session for p and whether this call made it: the kept one while it
-- is alive, else a new one (nil, "host: why", code when that fails). Two
-- orch processes that ask at once get one connection: the second waits.
local function session_for(p)
  local key = key_of(p)
  local entry = sessions[key]
  while entry and entry.connecting do
    entry.ready:wait()
    entry = sessions[key]
  end
  if entry and entry.sess:alive() then return entry.sess, false end
  if entry then entry.sess:close() end
  entry = { connecting = true, ready = loop.cond() }
  sessions[key] = entry
  local sess, err, code = ssh.connect(p)
  entry.connecting = false
  entry.ready:broadcast()
  if not sess then
    sessions[key] = nil
    return nil, err, code
  end
  entry.sess = sess
  log("connected to %s", sess:label())
  return sess, true
end

local function pack(...) return { n = select("#", ...), ... } end

-- What stats says to one orch: what its host cost since it said hello,
-- the connection included only when this hello made it.
local function stats_since(sess, base)
  local now = sess:stats()
  for k, v in pairs(base) do now[k] = now[k] - v end
  return now
end

local clients, last_seen, stopping = 0, loop.now(), false
local idle   -- seconds: the latest orch's --persist

local function serve(stream, listener)
  local sess, base
  local gone = false
  local function answer(id, r)
    if gone then return end
    r.id = id
    stream:send(wire.encode(r))
  end
  while true do
    local msg = stream:recv()
    if not msg then break end
    local ok, m = pcall(wire.decode, msg)
    if not ok then log("a garbled message: %s", m); break end
    local op = m.op
    if op == "hello" then
      local made, code
      sess, made, code = session_for(m[1])
      idle = m[2] or idle
      if sess then
        base = made and {} or sess:stats()
        answer(m.id, pack(true))
      else
        answer(m.id, pack(nil, made, code))   -- (made is why)
      end
    elseif op == "exit" then
      stopping = true
      listener:close()
      break
    elseif not sess then
      log("%s before hello", tostring(op))
      break
    elseif op == "stats" then
      answer(m.id, pack(stats_since(sess, base)))
    elseif op == "sftp_start" then
      sess:sftp_start()
    elseif op == "exec" or op == "sftp" then
      -- each call in a task of its own: a long command holds up nothing
      loop.spawn(function()
        local r = pack(pcall(sess[op], sess, table.unpack(m, 1, m.n)))
        if not r[1] then
          log("%s: %s", op, r[2])
          r = pack(nil, ("%s: the connection keeper failed: %s"):format(sess:label(), r[2]), "EPERSIST")
        else
          r = pack(table.unpack(r, 2, r.n))
        end
        if m.id then answer(m.id, r) end
      end)
    else
      log("unknown op %s", tostring(op))
      break
    end
  end
  gone = true
  stream:close()
  clients = clients - 1
  last_seen = loop.now()
end

--- Serve SOCKET until idle for `seconds`, or told to exit.
function M.main(path, seconds)
  idle = seconds
  -- bound under a name of its own, then renamed over SOCKET: two keepers
  -- started at once each get a whole socket, and the later one's is used
  local own = ("%s.%d"):format(path, info.pid)
  local listener = assert(unix.listen(own))
  assert(fs.rename(own, path))
  local ino = fs.stat(path).ino
  log("keeping SSH connections at %s, %d s after the last orch leaves", path, seconds)
  loop.spawn(function()
    while not stopping do
      loop.sleep(1)
      if clients == 0 and loop.now() - last_seen >= idle then
        stopping = true
        listener:close()
      end
    end
  end)
  while true do
    local stream = listener:accept()
    if not stream then break end
    clients = clients + 1
    loop.spawn(serve, stream, listener)
  end
  for _, entry in pairs(sessions) do
    if entry.sess then entry.sess:close() end
  end
  -- the socket goes with us, unless a newer keeper's has taken its name
  if (fs.stat(path) or {}).ino == ino then fs.remove(path) end
  log("leaving")
  os.exit(0)
end

return M
