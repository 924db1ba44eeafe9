-- lab/database.lua: lab.database, a PostgreSQL instance of its own from
-- Debian's binaries: a cluster under /var/lib/orch-lab, run as the
-- postgres user, with one role owning one database. It listens on
-- 127.0.0.1 and on the lab bridge's address, where lab hosts reach it.
local common = ...
local secret = require("orch.secret")

local FIRST_PORT = 25432   -- allocated ports start here, clear of a system cluster's 5432

local function reveal(v) return secret.reveal(v) end

-- The newest server under /usr/lib/postgresql (Debian's layout), once.
local bin_dir
local function bin(ctx, tool)
  if not bin_dir then
    local best
    for _, e in ipairs(ctx.host:walk("/usr/lib/postgresql") or {}) do
      local v = tonumber(e.path:match("^(%d+)/bin/initdb$"))
      if v and (not best or v > best) then best = v end
    end
    if not best then
      error("lab.database: no PostgreSQL server here (no /usr/lib/postgresql/*/bin/initdb); "
        .. "install Debian's postgresql package", 0)
    end
    bin_dir = "/usr/lib/postgresql/" .. best .. "/bin"
  end
  return bin_dir .. "/" .. tool
end

-- A role name psql, a URL and a log line all take as it is.
local function check_user(user)
  if type(user) ~= "string" or #user > 63 or not user:match("^[%a_][%w_.-]*$") then
    error(("lab.database: bad user %q: a letter or '_' first, then letters, digits, '_', '.', '-'; "
      .. "at most 63"):format(tostring(user)), 0)
  end
end

-- Clusters live under /var/lib/orch-lab, not beside the playbook: the
-- postgres user must reach them, and the playbook's .orch/ is closed to
-- others (it holds the state store). One folder per project and state:
-- a hash of the provider's folder, then the state's id.
local function db_root(ctx)
  return ("/var/lib/orch-lab/%s-%s"):format(require("orch.core.fs").sha256_data(common.dir(ctx)):sub(1, 12),
    common.scope(ctx))
end

local function data_dir(ctx, name) return db_root(ctx) .. "/db/" .. name end

-- Run a tool as postgres (initdb and the server refuse root); cwd "/" so
-- that it never tries to reach root's folder.
local function as_postgres(ctx, argv, opts)
  local full = { "runuser", "-u", "postgres", "--" }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  opts = opts or {}
  opts.cwd = "/"
  return ctx.host:exec(full, opts)
end

-- The running postmaster: { pid, port } from postmaster.pid, if alive and
-- ours (its command line names the data dir: a pid reused by another
-- cluster is not taken for it).
local function server(ctx, dir)
  local text = ctx.host:read(dir .. "/postmaster.pid")
  if not text then return nil end
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local p = common.process(ctx, lines[1])
  if not p or p.comm ~= "postgres" or not p.cmdline:find(dir, 1, true) then return nil end
  return { pid = p.pid, port = math.tointeger(tonumber(lines[4])) }
end

-- psql as the postgres superuser over the socket in the data dir; the
-- script comes on stdin (so a password in it is on no command line), and
-- names as psql variables (quoted by psql: :'v' a literal, :"v" a name).
local function psql(ctx, dir, port, script, vars, check)
  local argv = { bin(ctx, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
    "-h", dir, "-p", tostring(port), "-U", "postgres", "-d", "postgres" }
  for k, v in pairs(vars) do
    argv[#argv + 1] = "-v"
    argv[#argv + 1] = k .. "=" .. v
  end
  argv[#argv + 1] = "-f"
  argv[#argv + 1] = "-"
  return as_postgres(ctx, argv, { stdin = script, check = check })
end

local function sql_literal(s) return "'" .. s:gsub("'", "''") .. "'" end

-- The role (with its password) and the database it owns. When the user
-- changed, the old role's objects pass to the new one.
local function ensure_objects(ctx, dir, port, want, old_user)
  local script = {
    [[SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') AS missing_role \gset]],
    [[\if :missing_role]], [[CREATE ROLE :"user" LOGIN;]], [[\endif]],
    -- standard_conforming_strings is on: only the quote needs doubling
    [[ALTER ROLE :"user" WITH LOGIN PASSWORD ]] .. sql_literal(reveal(want.password)) .. ";",
    [[SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') AS missing_db \gset]],
    [[\if :missing_db]], [[CREATE DATABASE :"db" OWNER :"user";]],
    [[\else]], [[ALTER DATABASE :"db" OWNER TO :"user";]], [[\endif]],
  }
  local vars = { user = want.user, db = want.name }
  -- The old role stays (it may be someone's: a hand-made owner); the
  -- superuser's objects are the system's and stay too.
  if old_user and old_user ~= want.user and old_user ~= "postgres" then
    vars.old = old_user
    for _, l in ipairs({
      [[SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :'old') AS has_old \gset]],
      [[\if :has_old]], [[\connect :"db"]], [[REASSIGN OWNED BY :"old" TO :"user";]], [[\endif]] }) do
      script[#script + 1] = l
    end
  end
  psql(ctx, dir, port, table.concat(script, "\n") .. "\n", vars)
end

-- Percent-encoding for the parts of a URL (RFC 3986's unreserved kept).
local function url_part(s)
  return (s:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function url_of(address, user, password, port, name)
  return ("postgresql://%s:%s@%s:%d/%s"):format(url_part(user), url_part(password), address, port, url_part(name))
end

-- Settings of ours, included from postgresql.conf: changing the port
-- rewrites only this file.
local function orch_conf(dir, port)
  return table.concat({
    "# written by orch (lab.database); included from postgresql.conf",
    "listen_addresses = '127.0.0.1," .. common.GATEWAY .. "'",
    "port = " .. port,
    "unix_socket_directories = '" .. dir .. "'",
    "",
  }, "\n")
end

local function write_conf(ctx, dir, port)
  assert(ctx.host:write(dir .. "/orch.conf", orch_conf(dir, port), { mode = "0600", owner = "postgres", group = "postgres" }))
end

local function pg_ctl(ctx, dir, action, opts)
  local argv = { bin(ctx, "pg_ctl"), "-D", dir, "-s", "-w", "-t", "60", "-l", dir .. "/server.log" }
  if action == "stop" then
    argv[#argv + 1] = "-m"
    argv[#argv + 1] = "fast"
  end
  argv[#argv + 1] = action
  -- the bridge's address must be there when the server binds; the bridge
  -- then stays while the server listens on it (common.release_bridge)
  if action ~= "stop" then common.locked(common.ensure_bridge, ctx) end
  local r = as_postgres(ctx, argv, { check = false })
  if not r.ok and not (opts and opts.check == false) then
    error(("lab.database: pg_ctl %s failed: %s\n%s"):format(action, common.why(r),
      common.tail(ctx, dir .. "/server.log", 10)), 0)
  end
  return r
end

-- Ports handed out by this process, until their server listens.
local taken = {}

-- A fresh cluster: initdb (peer auth on the socket, passwords over TCP),
-- then our settings. orch.conf, written last, marks a finished one.
local function init_cluster(ctx, name, dir, port)
  local parent = dir:match("^(.*)/[^/]+$")
  for _, d in ipairs({ "/var/lib/orch-lab", db_root(ctx), parent }) do
    if not ctx.host:stat(d) then assert(ctx.host:mkdir(d, "0711")) end  -- postgres passes through
  end
  assert(ctx.host:mkdir(dir, "0700"))
  assert(ctx.host:chown(dir, "postgres", "postgres"))
  local r = as_postgres(ctx, { "test", "-w", dir }, { check = false })
  if not r.ok then
    error(("lab.database %s: the postgres user cannot reach %s: a folder above it is closed to other users "
      .. "(chmod o+x it)"):format(name, dir), 0)
  end
  as_postgres(ctx, { bin(ctx, "initdb"), "-D", dir, "-U", "postgres", "-E", "UTF8", "--locale=C",
    "--auth-local=peer", "--auth-host=scram-sha-256", "-N" })
  local conf = assert(ctx.host:read(dir .. "/postgresql.conf"))
  assert(ctx.host:write(dir .. "/postgresql.conf", conf .. "\ninclude 'orch.conf'\n",
    { mode = "0600", owner = "postgres", group = "postgres" }))
  local hba = assert(ctx.host:read(dir .. "/pg_hba.conf"))
  assert(ctx.host:write(dir .. "/pg_hba.conf", hba .. "# lab hosts, by password (orch)\nhost all all "
    .. common.GATEWAY:gsub("%d+$", "0") .. "/24 scram-sha-256\n", { mode = "0600", owner = "postgres", group = "postgres" }))
  write_conf(ctx, dir, port)
end

-- url from this machine, lab_url from lab hosts
local function attrs_of(name, user, password, srv)
  return { engine = "postgresql", name = name, user = user, password = password, port = srv.port, pid = srv.pid,
    url = password and url_of("127.0.0.1", user, password, srv.port, name),
    lab_url = password and url_of(common.GATEWAY, user, password, srv.port, name) }
end

-- Create, or finish a half-made one: a finished cluster is kept (its data
-- is the point), an unfinished one is started over.
local function create(ctx, want)
  local name = want.name
  local dir = data_dir(ctx, name)
  local conf = ctx.host:read(dir .. "/orch.conf")
  local port = want.port or (conf and math.tointeger(tonumber(conf:match("\nport = (%d+)"))))
  port = port or common.locked(common.free_port, ctx, FIRST_PORT, taken)
  -- a socket path is at most 107 bytes
  if #(dir .. "/.s.PGSQL." .. port) > 107 then
    error(("lab.database %s: %s is too deep for a unix socket (107 bytes at most); move the playbook")
      :format(name, dir), 0)
  end
  if not conf then
    local srv = server(ctx, dir)
    if srv then common.stop(ctx, { srv.pid }) end
    common.remove_tree(ctx, dir)
    init_cluster(ctx, name, dir, port)
  elseif want.port and not conf:find("\nport = " .. want.port .. "\n", 1, true) then
    write_conf(ctx, dir, port)
    if server(ctx, dir) then pg_ctl(ctx, dir, "stop") end
  end
  if not server(ctx, dir) then pg_ctl(ctx, dir, "start") end
  local srv = assert(server(ctx, dir), "postgres started but postmaster.pid names no live process")
  taken[srv.port] = nil
  ensure_objects(ctx, dir, srv.port, want)
  return attrs_of(want.name, want.user, reveal(want.password), srv)
end

return {
  schema = {
    engine   = { type = "string", enum = { "postgresql" }, default = "postgresql", force_new = true },
    name     = { type = "string", required = true, force_new = true },   -- the database's and the instance's
    user     = { type = "string", required = true },
    password = { type = "string", required = true, sensitive = true },
    port     = { type = "integer", computed = true, optional = true,   -- allocated from 25432 up when absent
      check = function(v) return v >= 1024 and v <= 65535, "must be 1024 to 65535" end },
    url      = { type = "string", computed = true, sensitive = true },   -- from this machine
    lab_url  = { type = "string", computed = true, sensitive = true },   -- from lab hosts
    pid      = { type = "integer", computed = true },
  },

  -- nil unless the postmaster lives and the role and the database exist.
  -- One psql: logging in as the user, over TCP, with state's password
  -- proves the server, the port, the role, the database and the password
  -- (PGPASSWORD: in the environment, which only root can read, not argv).
  -- If that fails, a second one over the socket tells what is missing.
  read = function(ctx, state)
    common.check_root(ctx)
    common.check_name("lab.database", state.name)
    local dir = data_dir(ctx, state.name)
    local srv = server(ctx, dir)
    if not srv or not state.user then return nil end
    local owner_sql = "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = "
    local password = reveal(state.password)
    local owner
    if password then
      local r = ctx.host:exec({ bin(ctx, "psql"), "-X", "-At", "-w", "-h", "127.0.0.1", "-p", tostring(srv.port),
        "-U", state.user, "-d", state.name, "-c", owner_sql .. "current_database()" },
        { check = false, cwd = "/", env = { PGPASSWORD = password, PGCONNECT_TIMEOUT = "5" } })
      owner = r and r.ok and r.stdout:match("^([^\n]+)")
    end
    if not owner then
      password = nil
      local r = psql(ctx, dir, srv.port, owner_sql .. ":'db';\n"
        .. "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = :'user';\n",
        { db = state.name, user = state.user }, false)
      local lines = {}
      for l in (r and r.ok and r.stdout or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
      -- the role is missing, or it owns nothing: the database is gone
      if #lines < 2 then return nil end
      owner = lines[1]
    end
    return attrs_of(state.name, owner, password, srv)
  end,

  -- Create, or change in place: the password (ALTER ROLE), the user (a new
  -- role takes over the database and the old one's objects), the port (a
  -- restart). The name and the engine replace it.
  apply = function(ctx, want, have)
    common.check_root(ctx)
    common.check_name("lab.database", want.name)
    check_user(want.user)
    if not have then
      local dir = data_dir(ctx, want.name)
      local fresh = not ctx.host:stat(dir .. "/orch.conf")
      local ok, res = pcall(create, ctx, want)
      if ok then return res end
      -- a cluster this call began goes (no state will point at it); one
      -- that was already there keeps its data
      if fresh then
        local srv = server(ctx, dir)
        if srv then pcall(common.stop, ctx, { srv.pid }) end
        pcall(common.remove_tree, ctx, dir)
      end
      error(res, 0)
    end
    local dir = data_dir(ctx, want.name)
    if want.port and want.port ~= have.port then
      write_conf(ctx, dir, want.port)
      pg_ctl(ctx, dir, "restart")
    end
    local srv = assert(server(ctx, dir), "lab.database: postgres is not running")
    ensure_objects(ctx, dir, srv.port, want, have.user)
    return attrs_of(want.name, want.user, reveal(want.password), srv)
  end,

  delete = function(ctx, have)
    common.check_root(ctx)
    common.check_name("lab.database", have.name)
    local dir = data_dir(ctx, have.name)
    if server(ctx, dir) then pg_ctl(ctx, dir, "stop", { check = false }) end
    local srv = server(ctx, dir)   -- still there: pg_ctl failed
    if srv then common.stop(ctx, { srv.pid }) end
    common.remove_tree(ctx, dir)
    for _, d in ipairs({ db_root(ctx) .. "/db", db_root(ctx), "/var/lib/orch-lab" }) do
      ctx.host:remove(d)   -- each only if empty
    end
    common.locked(common.release_bridge, ctx)   -- when no host is on it either
  end,
}
