local support = require("spec.helpers.support")
local core = require("orch.core.state")
local state = require("orch.state")
local loop = require("orch.core.loop")
local cjson = require("cjson")

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function hostname()
  local f = assert(io.open("/proc/sys/kernel/hostname"))
  local name = f:read("l")
  f:close()
  return name
end

-- Start `orch lua script` in the background, its output in `out`; its pid.
local function start_orch(script, out)
  local p = assert(io.popen(("%s lua %s > %s 2>&1 & echo $!"):format(
    sh_quote(support.bin), sh_quote(script), sh_quote(out))))
  local pid = assert(math.tointeger(tonumber(p:read("l"))))
  p:close()
  return pid
end

local wait_for, alive = support.wait_for, support.alive

describe("orch.core.state", function()
  local dir, db
  before_each(function()
    dir = support.tmpdir()
    db = assert(core.open(dir .. "/t.db"))
  end)
  after_each(function()
    db:close()
    support.remove_tree(dir)
  end)

  it("opens in WAL mode with foreign keys on", function()
    assert.equals("wal", db:value("PRAGMA journal_mode"))
    assert.equals(1, db:value("PRAGMA foreign_keys"))
    assert.equals(1, db:value("PRAGMA synchronous"))  -- NORMAL
  end)

  it("binds every Lua type and reads every column type back", function()
    db:exec("CREATE TABLE t (k TEXT, v)")
    local values = {
      int = 42, big = math.maxinteger, float = 1.5, text = "héllo",
      bin = "a\0b\255", yes = true, no = false,
    }
    for k, v in pairs(values) do
      assert.equals(1, db:exec("INSERT INTO t VALUES (?, ?)", k, v))
    end
    db:exec("INSERT INTO t VALUES (?, ?)", "nil", nil)
    db:exec("INSERT INTO t VALUES (?, ?)", "null", cjson.null)
    local function get(k) return db:value("SELECT v FROM t WHERE k = ?", k) end
    assert.equals(42, get("int"))
    assert.equals("integer", math.type(get("int")))
    assert.equals(math.maxinteger, get("big"))
    assert.equals(1.5, get("float"))
    assert.equals("float", math.type(get("float")))
    assert.equals("héllo", get("text"))
    assert.equals("a\0b\255", get("bin"))
    assert.equals(1, get("yes"))
    assert.equals(0, get("no"))
    assert.is_nil(get("nil"))
    assert.is_nil(get("null"))
    assert.equals("null", db:value("SELECT typeof(v) FROM t WHERE k = 'null'"))
    assert.equals("text", db:value("SELECT typeof(v) FROM t WHERE k = 'bin'"))
    assert.equals("\0\1\255", db:value("SELECT x'0001ff'"))
    assert.equals(2.0, db:value("SELECT 2.0"))
    assert.equals("float", math.type(db:value("SELECT 2.0")))
  end)

  it("leaves NULL columns out of rows", function()
    db:exec("CREATE TABLE t (a, b, c)")
    db:exec("INSERT INTO t VALUES (1, NULL, 'x')")
    local row = db:row("SELECT a, b, c FROM t")
    assert.same({ a = 1, c = "x" }, row)
    assert.is_nil(db:row("SELECT * FROM t WHERE a = ?", 2))
    assert.is_nil(db:value("SELECT b FROM t"))
    assert.is_nil(db:value("SELECT b FROM t WHERE a = 2"))
    assert.same({}, db:rows("SELECT * FROM t WHERE a = 2"))
  end)

  it("returns rows in order, keyed by column name", function()
    db:exec("CREATE TABLE t (n INTEGER, s TEXT)")
    for i = 1, 5 do db:exec("INSERT INTO t VALUES (?, ?)", i, "s" .. i) end
    local rows = db:rows("SELECT n, s AS name FROM t WHERE n > ? ORDER BY n DESC", 2)
    assert.same({ { n = 5, name = "s5" }, { n = 4, name = "s4" }, { n = 3, name = "s3" } }, rows)
    assert.equals(5, db:last_id())
  end)

  it("runs a script of several statements when there are no parameters", function()
    local n = assert(db:exec([[
      CREATE TABLE a (x);
      CREATE INDEX a_x ON a (x);  -- the index needs the table above
      INSERT INTO a VALUES (1), (2);
      INSERT INTO a VALUES (3);
    ]]))
    assert.equals(3, n)  -- rows changed by the whole script
    assert.equals(3, db:value("SELECT count(*) FROM a"))
    assert.equals(1, db:changes())  -- the last statement's
    assert.equals(0, db:exec("CREATE TABLE b (y)"))
  end)

  it("counts the rows a statement changed", function()
    db:exec("CREATE TABLE t (x)")
    db:exec("INSERT INTO t VALUES (1), (2), (3)")
    assert.equals(2, db:exec("UPDATE t SET x = x * 10 WHERE x > ?", 1))
    assert.equals(2, db:changes())
    assert.equals(0, db:exec("DELETE FROM t WHERE x = ?", 99))
    assert.equals(0, db:exec("SELECT * FROM t"))
  end)

  it("returns SQLite failures as nil, message, SQLITE_ code", function()
    local ok, err, code = db:exec("SELEKT 1")
    assert.is_nil(ok)
    assert.equals(dir .. "/t.db: near \"SELEKT\": syntax error", err)
    assert.equals("SQLITE_ERROR", code)

    ok, err, code = db:rows("SELECT * FROM nowhere WHERE x = ?", 1)
    assert.is_nil(ok)
    assert.matches("no such table: nowhere", err, 1, true)
    assert.equals("SQLITE_ERROR", code)

    db:exec("CREATE TABLE u (x UNIQUE NOT NULL)")
    assert.equals(1, db:exec("INSERT INTO u VALUES (?)", 1))
    ok, err, code = db:exec("INSERT INTO u VALUES (?)", 1)
    assert.is_nil(ok)
    assert.matches("UNIQUE constraint failed: u.x", err, 1, true)
    assert.equals("SQLITE_CONSTRAINT", code)
    ok, err, code = db:exec("INSERT INTO u VALUES (?)", nil)
    assert.equals("SQLITE_CONSTRAINT", code)
    -- a failed statement is reset: the same one works with good binds
    assert.equals(1, db:exec("INSERT INTO u VALUES (?)", 2))

    ok, err, code = db:exec("CREATE TABLE a (x); CREATE TABLE a (x)")
    assert.is_nil(ok)
    assert.matches("table a already exists", err, 1, true)
    assert.equals("SQLITE_ERROR", code)
  end)

  it("returns SQLITE_BUSY when another connection holds the write lock", function()
    local other = assert(core.open(dir .. "/t.db"))
    finally(function() other:close() end)
    db:exec("CREATE TABLE t (x)")
    assert(other:exec("PRAGMA busy_timeout = 0"))
    assert(db:exec("BEGIN IMMEDIATE"))
    local ok, err, code = other:exec("INSERT INTO t VALUES (?)", 1)
    assert.is_nil(ok)
    assert.equals(dir .. "/t.db: database is locked", err)
    assert.equals("SQLITE_BUSY", code)
    assert(db:exec("COMMIT"))
    assert.equals(1, other:exec("INSERT INTO t VALUES (?)", 1))
  end)

  it("fails to open what is not a database, or where it can't be", function()
    support.write(dir .. "/junk", string.rep("not a database ", 100))
    local ok, err, code = core.open(dir .. "/junk")
    assert.is_nil(ok)
    assert.equals(dir .. "/junk: file is not a database", err)
    assert.equals("SQLITE_NOTADB", code)
    ok, err, code = core.open(dir .. "/missing/dir/t.db")
    assert.is_nil(ok)
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/missing/dir/t.db: ", err)
    assert.equals("SQLITE_CANTOPEN", code)
  end)

  it("raises on a value it cannot bind, naming the parameter", function()
    db:exec("CREATE TABLE t (a, b)")
    assert.has_error(function() db:exec("INSERT INTO t VALUES (?, ?)", 1, {}) end,
      "bad argument #3 to 'exec' (parameter 2: cannot bind a table value)")
    assert.has_error(function() db:rows("SELECT ?", print) end,
      "bad argument #2 to 'rows' (parameter 1: cannot bind a function value)")
    assert.has_error(function() db:exec({}) end)
    assert.equals(0, db:value("SELECT count(*) FROM t"))
  end)

  it("raises when the parameters don't fit the statement", function()
    assert.has_error(function() db:value("SELECT ? + ?", 1) end,
      "bad argument #1 to 'value' (statement takes 2 parameter(s), got 1)")
    assert.has_error(function() db:value("SELECT 1", 1) end,
      "bad argument #1 to 'value' (statement takes 0 parameter(s), got 1)")
    assert.has_error(function() db:exec("SELECT ?; SELECT 2", 1) end,
      "bad argument #1 to 'exec' (a statement with parameters must be a single statement)")
    assert.has_error(function() db:rows("SELECT 1; SELECT 2") end,
      "bad argument #1 to 'rows' (must be a single statement)")
  end)

  it("re-uses cached statements with different binds, past the cache's size", function()
    db:exec("CREATE TABLE t (x INTEGER)")
    for i = 1, 100 do
      assert.equals(1, db:exec("INSERT INTO t VALUES (?)", i))
      assert.equals(i, db:value("SELECT x FROM t WHERE x = ?", i))
    end
    -- more distinct texts than the cache holds: evicted ones are re-prepared
    for round = 1, 2 do
      for i = 1, 40 do
        assert.equals(i + round, db:value("SELECT " .. i .. " + ?", round))
      end
    end
    assert.equals(100, db:value("SELECT count(*) FROM t"))
    -- a cached statement sees a schema change
    db:exec("ALTER TABLE t ADD COLUMN y TEXT")
    assert.same({ x = 1, y = "a" },
      (function() db:exec("UPDATE t SET y = ? WHERE x = ?", "a", 1)
                  return db:row("SELECT * FROM t WHERE x = ?", 1) end)())
  end)

  it("raises on any use once closed; close is idempotent", function()
    local other = assert(core.open(dir .. "/t.db"))
    assert.equals(1, other:value("SELECT 1"))
    assert.is_true(other:close())
    assert.is_true(other:close())
    assert.matches("closed", tostring(other))
    for _, call in ipairs({
      function() other:exec("SELECT 1") end, function() other:rows("SELECT 1") end,
      function() other:row("SELECT 1") end, function() other:value("SELECT 1") end,
      function() other:last_id() end, function() other:changes() end,
    }) do
      assert.has_error(call, "attempt to use a closed state database")
    end
  end)

  it("closes at the end of a <close> scope", function()
    local kept
    do
      local other <close> = assert(core.open(dir .. "/t.db"))
      other:exec("CREATE TABLE t (x)")
      kept = other
    end
    assert.has_error(function() kept:value("SELECT 1") end,
      "attempt to use a closed state database")
  end)

  it("is not inherited by child processes", function()
    db:exec("CREATE TABLE t (x)")
    db:exec("INSERT INTO t VALUES (1)")  -- the -wal and -shm files are open too
    local p = assert(io.popen("ls -l /proc/self/fd/"))
    local fds = p:read("a")
    p:close()
    assert.not_matches("t%.db", fds)
  end)
end)

describe("orch.state migrations", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("creates the directory and brings a fresh store to the latest version", function()
    local path = dir .. "/a/b/state.db"
    local s = assert(state.open(path))
    finally(function() s:close() end)
    assert.equals(#state.migrations, s.db:value("PRAGMA user_version"))
    local names = {}
    for _, r in ipairs(s.db:rows("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")) do
      names[#names + 1] = r.name
    end
    assert.same({ "blobs", "config_files", "configs", "events", "events_run_seq", "file_versions",
      "file_versions_run", "host_reads", "infra_locks", "infra_outputs", "infra_resources", "infra_workspaces",
      "pending_handlers", "pipeline_artifacts", "pipeline_runs", "pipeline_runs_name", "pipeline_triggers", "runs", "stage_runs",
      "webhook_deliveries", "webhook_deliveries_id", "webhook_deliveries_received" }, names)
    local f = io.popen("stat -c %a " .. sh_quote(dir .. "/a/b") .. " " .. sh_quote(path))
    assert.equals("700", f:read("l"))
    assert.equals("600", f:read("l"))   -- whatever the umask: it holds file versions and state
    f:close()
  end)

  it("does nothing when reopened", function()
    local path = dir .. "/state.db"
    local s = assert(state.open(path))
    local id = assert(s:begin_run({ playbook = "site.lua" }))
    s:close()
    s = assert(state.open(path))
    finally(function() s:close() end)
    assert.equals(#state.migrations, s.db:value("PRAGMA user_version"))
    assert.equals("site.lua", s:run(id).playbook)
  end)

  it("refuses a store from a newer orch", function()
    local path = dir .. "/state.db"
    local db = assert(core.open(path))
    db:exec("PRAGMA user_version = 99")
    db:close()
    local s, err, code = state.open(path)
    assert.is_nil(s)
    assert.equals(("state store %s has schema version 99; this orch knows up to %d"
      .. " — upgrade orch"):format(path, #state.migrations), err)
    assert.equals("SCHEMA", code)
  end)

  it("leaves the version unchanged when a migration fails", function()
    local path = dir .. "/state.db"
    assert(state.open(path)):close()
    local n = #state.migrations
    state.migrations[n + 1] = "CREATE TABLE half (x); CREATE TABLE half (y);"
    finally(function() state.migrations[n + 1] = nil end)
    local s, err, code = state.open(path)
    assert.is_nil(s)
    assert.equals(("state store %s: migration %d failed: table half already exists")
      :format(path, n + 1), err)
    assert.equals("SQLITE_ERROR", code)
    local db = assert(core.open(path))
    finally(function() db:close() end)
    assert.equals(n, db:value("PRAGMA user_version"))
    assert.is_nil(db:value("SELECT name FROM sqlite_master WHERE name = 'half'"))
    -- fixed, it applies
    state.migrations[n + 1] = "CREATE TABLE half (x);"
    s = assert(state.open(path))
    s:close()
    assert.equals(n + 1, db:value("PRAGMA user_version"))
  end)
end)

describe("orch.state runs and events", function()
  local dir, s
  before_each(function()
    dir = support.tmpdir()
    s = assert(state.open(dir .. "/state.db"))
  end)
  after_each(function()
    s:close()
    support.remove_tree(dir)
  end)

  it("records a run and its events, in order", function()
    local before = os.time()
    local id = assert(s:begin_run({ playbook = "site.lua", command = "orch play site.lua",
                                    who = "alice" }))
    assert.equals(1, s:event(id, { kind = "task_start", host = "web01", name = "install" }))
    assert.equals(2, s:event(id, { kind = "task_end", host = "web01", name = "install",
                                   status = "changed", data = { diff = { "+a", "-b" }, n = 2 } }))
    assert.equals(3, s:event(id, { kind = "recap" }))
    assert.is_true(s:finish_run(id, "ok"))

    local run = s:run(id)
    assert.equals("site.lua", run.playbook)
    assert.equals("orch play site.lua", run.command)
    assert.equals("alice", run.who)
    assert.equals("ok", run.status)
    assert.equals(hostname(), run.hostname)
    assert.is_number(run.pid)
    assert.is_true(run.started >= before - 1 and run.finished >= run.started)

    local evs = s:events(id)
    assert.equals(3, #evs)
    assert.same({ 1, 2, 3 }, { evs[1].seq, evs[2].seq, evs[3].seq })
    assert.equals("task_end", evs[2].kind)
    assert.equals("changed", evs[2].status)
    assert.same({ diff = { "+a", "-b" }, n = 2 }, evs[2].data)
    assert.is_nil(evs[1].data)
    assert.is_nil(evs[3].host)
    assert.is_true(evs[3].time >= evs[1].time)
  end)

  it("numbers events per run and lists runs newest first", function()
    local a = assert(s:begin_run({ playbook = "a.lua" }))
    s:finish_run(a, "failed")
    local b = assert(s:begin_run({ playbook = "b.lua" }))
    assert.equals(1, s:event(b, { kind = "x" }))
    assert.equals(1, s:event(a, { kind = "x" }))
    assert.equals(2, s:event(b, { kind = "x" }))
    local runs = s:runs()
    assert.same({ "b.lua", "a.lua" }, { runs[1].playbook, runs[2].playbook })
    assert.equals(1, #s:runs(1))
    assert.equals(b, s:runs(1)[1].id)
    assert.is_nil(s:run(12345))
    assert.same({}, s:events(12345))
  end)

  it("marks runs left 'running' by a crash as aborted when the store is next opened", function()
    local crashed = assert(s:begin_run({ playbook = "site.lua" }))
    local live = assert(s:begin_run({ playbook = "site.lua" }))
    assert.equals("running", s:run(crashed).status)
    -- as if a process that has exited since had recorded it
    local gone = require("orch.proc").run({ "sh", "-c", "echo $$" }).stdout:match("%d+")
    assert(s.db:exec("UPDATE runs SET pid = ? WHERE id = ?", tonumber(gone), crashed))
    s:close()
    s = assert(state.open(dir .. "/state.db"))
    local run = s:run(crashed)
    assert.equals("aborted", run.status)
    assert.is_number(run.finished)
    assert.equals("running", s:run(live).status)   -- this process still runs it
  end)

  it("leaves a run 'running' while its process lives (pipelines run side by side)", function()
    local live = assert(s:begin_run({ playbook = "ci.lua" }))
    assert(s:begin_run({ playbook = "ci.lua" }))
    assert.equals("running", s:run(live).status)
  end)

  it("reports an unknown run as a failure, a bad call as an error", function()
    local ok, err, code = s:finish_run(999, "ok")
    assert.is_nil(ok)
    assert.equals("ENOENT", code)
    assert.matches("no run 999", err, 1, true)
    ok, err, code = s:event(999, { kind = "x" })
    assert.is_nil(ok)
    assert.equals("SQLITE_CONSTRAINT", code)
    local id = assert(s:begin_run({ playbook = "p" }))
    assert.has_error(function() s:finish_run(id, "great") end,
      "finish_run: bad status great")
    assert.has_error(function() s:event(id, { host = "web01" }) end,
      "event expects { kind = string, ... }")
    assert.has_error(function() s:begin_run({}) end,
      "begin_run expects { playbook = string, ... }")
  end)

  it("returns a busy store as a failure, not an error", function()
    local other = assert(core.open(dir .. "/state.db"))
    finally(function() other:close() end)
    assert(other:exec("BEGIN IMMEDIATE"))
    assert(s.db:exec("PRAGMA busy_timeout = 0"))
    local id, err, code = s:begin_run({ playbook = "p" })
    assert.is_nil(id)
    assert.equals(dir .. "/state.db: database is locked", err)
    assert.equals("SQLITE_BUSY", code)
    assert(other:exec("ROLLBACK"))
    assert.is_number(s:begin_run({ playbook = "p" }))
  end)

  it("commits a transaction, or rolls it back and re-raises", function()
    local id = assert(s:begin_run({ playbook = "p" }))
    assert.has_error(function()
      s:transaction(function(st)
        st:event(id, { kind = "lost" })
        error("boom", 0)
      end)
    end, "boom")
    assert.same({}, s:events(id))
    local a, b = s:transaction(function(st, x)
      st:event(id, { kind = "kept" })
      -- a nested transaction is a savepoint: its failure undoes only itself
      assert.is_false(pcall(st.transaction, st, function()
        st:event(id, { kind = "inner" })
        error("inner")
      end))
      return x, "two"
    end, "one")
    assert.same({ "one", "two" }, { a, b })
    local evs = s:events(id)
    assert.equals(1, #evs)
    assert.equals("kept", evs[1].kind)
  end)
end)

describe("orch.state lock", function()
  local dir, path
  before_each(function()
    dir = support.tmpdir()
    path = dir .. "/state.db"
  end)
  after_each(function() support.remove_tree(dir) end)

  -- Process A: open the store, take the lock, start a run, say "locked",
  -- hold it `secs` seconds, say "released".
  local function holder(secs)
    local script = dir .. "/a.lua"
    support.write(script, ([[
      local state = require("orch.state")
      local s = assert(state.open(%q))
      local lk = assert(s:lock({ command = "orch play holder.lua" }))
      local id = assert(s:begin_run({ playbook = "holder.lua" }))
      io.stdout:write("locked ", id, "\n")
      io.stdout:flush()
      require("orch.core.loop").sleep(%s)
      lk:unlock()
      io.stdout:write("released\n")
      io.stdout:flush()
    ]]):format(path, secs))
    return script
  end

  -- Process B: wait up to `timeout` s for the lock; "got it" or the error.
  local function waiter(timeout)
    local script = dir .. "/b.lua"
    support.write(script, ([[
      local state = require("orch.state")
      local s = assert(state.open(%q))
      local lk, err, code = s:lock({ timeout = %s })
      if not lk then
        io.stderr:write(code, ": ", err, "\n")
        os.exit(3)
      end
      local id = assert(s:begin_run({ playbook = "waiter.lua" }))
      io.stdout:write("got it ", id, "\n")
    ]]):format(path, timeout))
    return script
  end

  it("writes who holds it into the lock file, and waits no longer than asked", function()
    local s = assert(state.open(path))
    finally(function() s:close() end)
    local lk = assert(s:lock({ command = "orch play site.lua" }))
    local info = cjson.decode(support.read(path .. ".lock"))
    assert.equals("orch play site.lua", info.command)
    assert.equals(hostname(), info.hostname)
    assert.is_number(info.pid)
    assert.is_string(info.user)
    assert.is_true(math.abs(info.since - os.time()) < 60)
    -- a second open file description conflicts even in the same process
    local ok, err, code = s:lock({ timeout = 0.2 })
    assert.is_nil(ok)
    assert.equals("LOCKED", code)
    assert.equals(("state store %s is locked by pid %d on host %s (user %s,"
      .. " `orch play site.lua`) since %s; gave up after 0.2 s"):format(
      path, info.pid, info.hostname, info.user,
      os.date("%Y-%m-%d %H:%M:%S", math.floor(info.since))), err)
    lk:unlock()
    local again <close> = assert(s:lock({ timeout = 0 }))
    -- without a command, the holder is described by its command line
    assert.matches("busted", cjson.decode(support.read(path .. ".lock")).command)
  end)

  it("makes a second orch give up after its timeout, naming the holder", function()
    local out = dir .. "/a.out"
    local pid = start_orch(holder(4), out)
    finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
    wait_for(out, "locked")
    local res = support.orch("lua", waiter(1))
    assert.equals(3, res.code)
    assert.matches(("LOCKED: state store %s is locked by pid %d on host %s (user "):format(
      path, pid, hostname()), res.stderr, 1, true)
    assert.matches("`orch play holder.lua`) since ", res.stderr, 1, true)
    assert.matches("; gave up after 1 s\n", res.stderr, 1, true)
    assert.is_true(alive(pid))  -- B gave up while A still held it
  end)

  it("lets a second orch in once the holder exits", function()
    local out = dir .. "/a.out"
    local pid = start_orch(holder(2), out)
    finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
    local first = tonumber(wait_for(out, "locked"):match("locked (%d+)"))
    local res = support.orch("lua", waiter(30))
    assert.equals(0, res.code, res.stderr)
    assert.matches("^got it %d+\n$", res.stdout)
    assert.matches("released", support.read(out), 1, true)
    -- A finished without finishing its run: a begin_run after A is gone
    -- aborts it. That is B's, unless A was still exiting when B got the
    -- lock (its exit is slow under LeakSanitizer), then the next one's.
    support.eventually(function() return not alive(pid) end, "gone (the lock holder)")
    local s = assert(state.open(path))
    finally(function() s:close() end)
    if s:run(first).status == "running" then assert(s:begin_run({ playbook = "next.lua" })) end
    assert.equals("aborted", s:run(first).status)
  end)

  it("is not left held by a holder killed with SIGKILL", function()
    local out = dir .. "/a.out"
    local pid = start_orch(holder(60), out)
    finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
    local first = tonumber(wait_for(out, "locked"):match("locked (%d+)"))
    assert.is_true(os.execute("kill -9 " .. pid))
    local res = support.orch("lua", waiter(10))
    assert.equals(0, res.code, res.stderr)
    assert.matches("^got it %d+\n$", res.stdout)
    assert.not_matches("released", support.read(out))
    local s = assert(state.open(path))
    finally(function() s:close() end)
    assert.equals("aborted", s:run(first).status)
    -- the waiter, gone too without finishing its run: aborted as well
    assert.equals("aborted", s:run(tonumber(res.stdout:match("got it (%d+)"))).status)
  end)
end)
