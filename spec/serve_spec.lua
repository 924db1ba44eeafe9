local support = require("spec.helpers.support")
local json = require("cjson")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local state = require("orch.state")

local SECRET = "it's a s3cret"

-- The signature GitHub would send, computed by openssl, not by orch.
local function signature(body, key)
  local res = proc.run({ "openssl", "dgst", "-sha256", "-hmac", key or SECRET }, { stdin = body })
  return "sha256=" .. assert(res.stdout:match("= (%x+)"))
end

-- POST (or method) body to url with curl; the status code and the body.
local function post(url, body, headers, method)
  local argv = { "curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method or "POST", "--data-binary", "@-" }
  for k, v in pairs(headers or {}) do argv[#argv + 1] = "-H"; argv[#argv + 1] = k .. ": " .. v end
  argv[#argv + 1] = url
  local res = proc.run(argv, { stdin = body or "" })
  local text, code = res.stdout:match("^(.*)\n(%d+)$")
  return tonumber(code), text
end

-- git in repo, as an author; its output, trimmed.
local function git_in(repo, ...)
  local res = proc.run({ "git", "-C", repo, ... }, { env = { GIT_AUTHOR_NAME = "t", GIT_AUTHOR_EMAIL = "t@t",
    GIT_COMMITTER_NAME = "t", GIT_COMMITTER_EMAIL = "t@t" } })
  assert(res.ok, res.stderr)
  return (res.stdout:gsub("%s+$", ""))
end

describe("orch serve", function()
  local dir, servers
  before_each(function() dir, servers = support.tmpdir(), {} end)
  after_each(function()
    for _, s in ipairs(servers) do pcall(s.p.kill, s.p, "KILL"); s.p:close() end
    support.remove_tree(dir)
  end)

  -- Start orch serve on body (as dir/ci.lua, $D replaced by dir) with
  -- --json; the server's events are read as they come.
  local function serve(body, args, env)
    support.write(dir .. "/ci.lua", (body:gsub("%$D", function() return dir end)))
    local argv = { support.bin, "serve", "-f", dir .. "/ci.lua", "--json" }
    for _, a in ipairs(args or { "--listen", "127.0.0.1:0" }) do argv[#argv + 1] = a end
    env = env or {}
    if env.ORCH_WEBHOOK_SECRET == nil then env.ORCH_WEBHOOK_SECRET = SECRET end
    local s = { p = assert(proc.spawn({ argv = argv, env = env })), events = {}, buf = "", stderr = "" }
    servers[#servers + 1] = s
    -- the first event not taken yet for which pred is true, taken
    function s.await(pred, what)
      while true do
        for i, ev in ipairs(s.events) do
          if pred(ev) then return table.remove(s.events, i) end
        end
        local stream, chunk = s.p:read()
        if not stream then error(("orch serve ended before %s:\n%s"):format(what, s.stderr), 3) end
        if stream == "stderr" then s.stderr = s.stderr .. chunk else
          s.buf = s.buf .. chunk
          for line in s.buf:gmatch("([^\n]*)\n") do s.events[#s.events + 1] = json.decode(line) end
          s.buf = s.buf:match("[^\n]*$")
        end
      end
    end
    function s.event(kind, field, value)
      return s.await(function(ev) return ev.event == kind and (field == nil or ev[field] == value) end,
        ("a %s event"):format(kind))
    end
    if not (args and args.no_listen) then s.url = "http://" .. s.event("listening").address end
    return s
  end

  local function runs(name)
    local store = assert(state.open(dir .. "/.orch/state.db"))
    local rows = store.db:rows("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY id", name)
    store:close()
    return rows
  end

  it("runs a pipeline for a webhook signed with its secret, and refuses a missing or bad signature", function()
    local s = serve([[pipeline "deploy" { triggers = { "webhook" },
      stage "s" { sh = "echo $ORCH_WEBHOOK_EVENT >> $D/ran; cp $ORCH_WEBHOOK_PAYLOAD $D/payload" } }]])
    local body = '{"ref":"refs/heads/main"}'
    local code, text = post(s.url .. "/hooks/deploy", body)
    assert.equals(401, code)
    assert.matches("missing or bad X-Hub-Signature-256", text, 1, true)
    code = post(s.url .. "/hooks/deploy", body, { ["X-Hub-Signature-256"] = signature(body, "wrong") })
    assert.equals(401, code)
    code = post(s.url .. "/hooks/deploy", body .. " ", { ["X-Hub-Signature-256"] = signature(body) })
    assert.equals(401, code)   -- signed for another body
    assert.equals("refused", s.event("trigger", "action", "refused").action)
    code, text = post(s.url .. "/hooks/deploy", body, { ["X-Hub-Signature-256"] = signature(body),
      ["X-GitHub-Event"] = "push", ["X-GitHub-Delivery"] = "d-1" })
    assert.equals(202, code)
    assert.same({ pipeline = "deploy", action = "started" }, json.decode(text))
    assert.equals("ok", s.event("summary").status)
    assert.equals("push\n", support.read(dir .. "/ran"))   -- once: the refused calls ran nothing
    assert.equals(body, support.read(dir .. "/payload"))
    assert.equals(1, #runs("deploy"))
    assert.equals("webhook", runs("deploy")[1].trigger)
    assert.equals(404, (post(s.url .. "/hooks/nope", body, { ["X-Hub-Signature-256"] = signature(body) })))
    assert.equals(405, (post(s.url .. "/hooks/deploy", nil, nil, "GET")))
  end)

  it("runs a signed body once, whatever its unsigned delivery id says, also after a restart (#11)", function()
    local body = [[pipeline "p" { triggers = { "webhook" }, stage "s" { sh = "echo $ORCH_WEBHOOK_DELIVERY >> $D/ran" } }]]
    local s = serve(body)
    local function deliver(id, payload)
      payload = payload or '{"n":1}'
      return post(s.url .. "/hooks/p", payload, { ["X-Hub-Signature-256"] = signature(payload), ["X-GitHub-Delivery"] = id })
    end
    assert.equals(202, (deliver("d-1")))
    assert.equals("ok", s.event("summary").status)
    local code, text = deliver("d-1")
    assert.equals(409, code)
    assert.matches("this delivery was received already (delivery d-1 at ", text, 1, true)
    assert.equals("replayed delivery d-1", s.event("trigger", "action", "refused").detail)
    -- the captured body with another delivery id, or none: refused
    assert.equals(409, (deliver("d-forged")))
    assert.equals(409, (deliver(nil)))
    -- a new body without an id: refused too, it could not be told apart later
    code, text = deliver(nil, '{"n":5}')
    assert.equals(400, code)
    assert.matches("missing X-GitHub-Delivery", text, 1, true)
    -- a known id on another body is a replay too
    assert.equals(409, (deliver("d-1", '{"n":9}')))
    assert(s.p:kill("TERM"))
    s.p:wait()
    s = serve(body)   -- what ran is in the store
    assert.equals(409, (deliver("d-1")))
    assert.equals(409, (deliver("d-other")))
    assert.equals(202, (deliver("d-2", '{"n":2}')))
    assert.equals("ok", s.event("summary").status)
    assert.equals("d-1\nd-2\n", support.read(dir .. "/ran"))
  end)

  -- n connections to port from 127.0.0.1 that send a request head one
  -- line every `every` seconds, `lines` times (bounded), in bash; each
  -- prints "up" once connected, and "cut" when the server ends it
  local function slow_clients(port, n, every, lines)
    local script = ([[
trap '' PIPE
for i in $(seq %d); do
  ( exec 3<>/dev/tcp/127.0.0.1/%d || exit 0
    echo up
    printf 'POST /hooks/p HTTP/1.1\r\nHost: x\r\n' >&3
    for j in $(seq %d); do sleep %g; printf 'X-Slow: %%s\r\n' "$j" >&3 2>/dev/null || { echo cut; exit 0; }; done
    echo never-cut ) &
done
wait]]):format(n, port, lines, every)
    return assert(proc.spawn({ argv = { "bash", "-c", script } }))
  end

  it("keeps answering webhooks while one client holds many slow connections (#11)", function()
    local s = serve([[pipeline "p" { triggers = { "webhook" }, stage "s" { sh = "true" } }]],
      { "--listen", "127.0.0.1:0", "--request-timeout", "60" })
    local port = tonumber(s.url:match(":(%d+)$"))
    local attack = slow_clients(port, 64, 0.5, 30)
    finally(function() attack:kill("KILL"); attack:close() end)
    -- all 64 connected, and the server holds no more of them than it lets
    -- one address have, before the webhook comes
    local up = ""
    while select(2, up:gsub("up\n", "")) < 64 do
      local stream, chunk = attack:read()
      assert(stream, "the slow clients ended: " .. up)
      up = up .. chunk
    end
    support.eventually(function()
      local r = proc.run({ "ss", "-Htn", "state", "established", "( sport = :" .. port .. " )" })
      return select(2, r.stdout:gsub("\n", "")) <= 8
    end, "the connections past 8 to be refused")
    local body = '{"n":1}'
    local res = proc.run({ "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1",
      "--interface", "127.0.0.2", "-H", "X-Hub-Signature-256: " .. signature(body), "-H", "X-GitHub-Delivery: d-1",
      "--data-binary", body, s.url .. "/hooks/p" })
    assert.equals("202", res.stdout)
  end)

  it("cuts off a client that sends its request too slowly (#11)", function()
    local s = serve([[pipeline "p" { triggers = { "webhook" }, stage "s" { sh = "true" } }]],
      { "--listen", "127.0.0.1:0", "--request-timeout", "1" })
    local slow = slow_clients(tonumber(s.url:match(":(%d+)$")), 1, 0.2, 50)   -- 10 s at most
    local out = ""
    while true do
      local stream, chunk = slow:read()
      if not stream then break end
      out = out .. chunk
    end
    slow:wait()
    slow:close()
    assert.equals("up\ncut\n", out)
  end)

  it("listens on 127.0.0.1 unless told otherwise, and refuses a body over --max-body", function()
    local s = serve([[pipeline "p" { triggers = { "webhook" }, stage "s" { sh = "touch $D/ran" } }]],
      { "--listen", "0", "--max-body", "64" })
    assert.matches("^http://127%.0%.0%.1:%d+$", s.url)
    local body = ("x"):rep(65)
    assert.equals(413, (post(s.url .. "/hooks/p", body, { ["X-Hub-Signature-256"] = signature(body) })))
    assert.is_nil(fs.stat(dir .. "/ran"))
  end)

  it("refuses to serve a webhook trigger that has no secret", function()
    support.write(dir .. "/ci.lua", [[pipeline "p" { triggers = { "webhook" }, stage "s" { sh = "true" } }]])
    local res = support.orch("serve", "-f", dir .. "/ci.lua", { env = { ORCH_WEBHOOK_SECRET = false } })
    assert.equals(2, res.code)
    assert.matches("pipeline 'p' has a webhook trigger but no secret", res.stderr, 1, true)
  end)

  it("queues one trigger while the pipeline runs (on_busy = queue), and drops them with skip", function()
    local s = serve([[
pipeline "q" { triggers = { "webhook" }, stage "s" { sh = "sleep 0.5; echo run >> $D/q" } }
pipeline "k" { triggers = { "webhook" }, on_busy = "skip", stage "s" { sh = "sleep 0.5; echo run >> $D/k" } }]])
    local actions = {}
    for i = 1, 3 do
      local body = '{"n":' .. i .. '}'   -- three deliveries: three bodies
      local _, text = post(s.url .. "/hooks/q", body, { ["X-Hub-Signature-256"] = signature(body),
        ["X-GitHub-Delivery"] = "q-" .. i })
      actions[i] = json.decode(text).action
    end
    assert.same({ "started", "queued", "queued (replacing one already queued)" }, actions)
    for i = 1, 2 do
      local body = '{"n":' .. i .. '}'
      local _, text = post(s.url .. "/hooks/k", body, { ["X-Hub-Signature-256"] = signature(body),
        ["X-GitHub-Delivery"] = "k-" .. i })
      actions[i] = json.decode(text).action
    end
    assert.same({ "started", "skipped" }, { actions[1], actions[2] })
    s.event("summary", "pipeline", "k")
    s.event("summary", "pipeline", "q")
    s.event("summary", "pipeline", "q")
    assert.equals("run\nrun\n", support.read(dir .. "/q"))
    assert.equals("run\n", support.read(dir .. "/k"))
    -- the queued run started after the first ended: never two at once
    local q = runs("q")
    assert.equals(2, #q)
    assert.truthy(q[2].started >= q[1].finished)
  end)

  it("runs once per new head of a git branch, with ORCH_COMMIT (#5)", function()
    local repo = dir .. "/repo"
    local function git(...) return git_in(repo, ...) end
    assert(proc.run({ "git", "init", "-q", "-b", "main", repo }).ok)
    git("commit", "-q", "--allow-empty", "-m", "one")
    local body = [[pipeline "built" { triggers = { commit = { repo = "repo", branch = "main", every = 0.2 } },
      stage "s" { sh = "echo $ORCH_COMMIT $ORCH_BRANCH >> $D/commits" } }]]
    local s = serve(body, { no_listen = true })
    local watching = s.event("trigger", "trigger", "commit")
    assert.equals("watching main", watching.action)     -- the head it found is not new
    git("commit", "-q", "--allow-empty", "-m", "two")
    local two = git("rev-parse", "HEAD")
    assert.equals(two, s.event("trigger", "action", "started").detail)
    assert.equals("ok", s.event("summary").status)
    assert.equals(two .. " main\n", support.read(dir .. "/commits"))
    assert(s.p:kill("TERM"))
    assert.equals(0, s.p:wait().code)
    -- what it saw is kept: a restart runs only for heads that came since
    git("commit", "-q", "--allow-empty", "-m", "three")
    local three = git("rev-parse", "HEAD")
    s = serve(body, { no_listen = true })
    assert.equals(three, s.event("trigger", "action", "started").detail)
    assert.equals("ok", s.event("summary").status)
    assert.equals(two .. " main\n" .. three .. " main\n", support.read(dir .. "/commits"))
    local r = runs("built")
    assert.equals(2, #r)
    assert.equals("commit", r[2].trigger)
    assert.equals(three, r[2].detail)
  end)

  it("watches the branch the repository's HEAD names, and runs the first commit of an empty one", function()
    local repo = dir .. "/repo"
    assert(proc.run({ "git", "init", "-q", "-b", "trunk", repo }).ok)
    local s = serve([[pipeline "built" { triggers = { commit = { repo = "repo", every = 0.2 } },
      stage "s" { sh = "echo $ORCH_COMMIT $ORCH_BRANCH >> $D/commits" } }]], { no_listen = true })
    assert.matches("has no commits yet", s.event("error").message, 1, true)
    git_in(repo, "commit", "-q", "--allow-empty", "-m", "first")
    local first = git_in(repo, "rev-parse", "HEAD")
    assert.equals(first, s.event("trigger", "action", "started").detail)
    assert.equals("ok", s.event("summary").status)
    assert.equals(first .. " trunk\n", support.read(dir .. "/commits"))
  end)

  it("fires a schedule when its time comes, and says when the next one is", function()
    -- a schedule due at the next whole second, so the loop is seen firing
    local serve = require("orch.cli.serve")
    local events, fired = {}, {}
    local srv = setmetatable({ slots = {}, ui = { emit = function(_, ev) events[#events + 1] = ev end } }, serve.Server)
    function srv:fire(name, trigger)
      fired[#fired + 1] = { name, trigger.kind, trigger.detail }
      if #fired == 2 then self.stopping = "enough" end
    end
    local soon = { text = "every second", next = function(_, after) return after + 1 end }
    local started = require("orch.core.loop").time()
    srv:watch_schedule({ name = "p" }, soon)
    assert.same({ { "p", "schedule", "every second" }, { "p", "schedule", "every second" } }, fired)
    assert.equals("scheduled", events[1].event)
    assert.truthy(events[1].next > started and events[2].next > events[1].next)
  end)

  it("says when each schedule fires next", function()
    local s = serve([[pipeline "nightly" { triggers = { schedule = "30 2 * * *" }, stage "s" { sh = "true" } }]],
      { no_listen = true })
    local ev = s.event("scheduled")
    assert.equals("30 2 * * *", ev.cron)
    local t = os.date("*t", ev.next)
    assert.same({ 2, 30, 0 }, { t.hour, t.min, t.sec })
    assert.truthy(ev.next > os.time() and ev.next <= os.time() + 86400)
  end)

  it("on SIGTERM stops taking triggers and lets a running stage finish within the grace period", function()
    local s = serve([[pipeline "p" { triggers = { "webhook" },
      stage "s" { sh = "touch $D/started; sleep 1; touch $D/finished" } }]], { "--listen", "0", "--grace", "20" })
    assert.equals(202, (post(s.url .. "/hooks/p", "", { ["X-Hub-Signature-256"] = signature(""),
      ["X-GitHub-Delivery"] = "d-1" })))
    support.eventually(function() return fs.stat(dir .. "/started") end, "started")
    assert(s.p:kill("TERM"))
    s.event("stopping")
    assert.equals("ok", s.event("summary").status)
    assert.equals(0, s.p:wait().code)
    assert.truthy(fs.stat(dir .. "/finished"))
    assert.equals("ok", runs("p")[1].status)
  end)

  it("after the grace period kills running stages and records the run as interrupted", function()
    local s = serve([[pipeline "p" { triggers = { "webhook" },
      stage "s" { sh = "echo $$ > $D/pid; exec sleep 60" }, stage "t" { needs = "s", sh = "true" } }]],
      { "--listen", "0", "--grace", "0.5" })
    assert.equals(202, (post(s.url .. "/hooks/p", "", { ["X-Hub-Signature-256"] = signature(""), ["X-GitHub-Delivery"] = "d-1" })))
    local pid = support.wait_for(dir .. "/pid", "\n"):match("%d+")
    assert(s.p:kill("TERM"))
    assert.equals("interrupted", s.event("summary").status)
    assert.equals(0, s.p:wait().code)
    assert.is_false(support.alive(pid))
    local store = assert(state.open(dir .. "/.orch/state.db"))
    finally(function() store:close() end)
    assert.equals(0, store.db:value("SELECT COUNT(*) FROM pipeline_runs WHERE status = 'running'"))
    assert.equals(0, store.db:value("SELECT COUNT(*) FROM runs WHERE status = 'running'"))
    local stages = store.db:rows("SELECT stage, status FROM stage_runs ORDER BY stage")
    assert.same({ { stage = "s", status = "interrupted" }, { stage = "t", status = "skipped" } }, stages)
    assert.equals("ok", store.db:value("PRAGMA integrity_check"))
  end)
end)
