local support = require("spec.helpers.support")
local json = require("cjson")
local fs = require("orch.core.fs")

-- two hosts of role web, both this machine
local WEB_HOSTS = [[
host "a" { connection = "local", roles = { "web" } }
host "b" { connection = "local", roles = { "web" } }
]]

describe("orch pipeline", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function pipeline(body, ...)
    support.write(dir .. "/ci.lua", (body:gsub("%$D", function() return dir end)))
    return support.orch("pipeline", "run", "p", "-f", dir .. "/ci.lua", ...)
  end

  local function events(res)
    local list = {}
    for line in res.stdout:gmatch("[^\n]+") do list[#list + 1] = json.decode(line) end
    return list
  end

  -- index of the first event matching kind and stage name
  local function at(evs, kind, name)
    for i, ev in ipairs(evs) do
      if ev.event == kind and ev.name == name then return i end
    end
  end

  it("runs stages in dependency order, independent ones in parallel", function()
    local res = pipeline([[
pipeline "p" {
  stage "a" { sh = "sleep 0.3" },
  stage "b" { sh = "sleep 0.3" },
  stage "c" { needs = { "a", "b" }, sh = "true" },
}]], "--json", "--jobs", "2")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local evs = events(res)
    -- both started before either finished: they ran side by side
    assert.truthy(at(evs, "stage_start", "b") < at(evs, "stage", "a"))
    assert.truthy(at(evs, "stage_start", "a") < at(evs, "stage", "b"))
    assert.truthy(at(evs, "stage_start", "c") > at(evs, "stage", "a"))
    assert.truthy(at(evs, "stage_start", "c") > at(evs, "stage", "b"))
  end)

  it("runs one stage at a time with --jobs 1", function()
    local res = pipeline([[
pipeline "p" { stage "a" { sh = "sleep 0.1" }, stage "b" { sh = "sleep 0.1" }, stage "c" { sh = "true" } }]],
      "--json", "--jobs", "1")
    local evs = events(res)
    local running, peak = 0, 0
    for _, ev in ipairs(evs) do
      if ev.event == "stage_start" then running = running + 1; peak = math.max(peak, running) end
      if ev.event == "stage" then running = running - 1 end
    end
    assert.equals(1, peak)
  end)

  it("skips what needs a failed stage, still runs always and on_failure stages, and fails the run", function()
    local res = pipeline([[
pipeline "p" {
  stage "build" { sh = "echo boom >&2; exit 2" },
  stage "deploy" { needs = { "build" }, sh = "touch $D/deployed" },
  stage "after_deploy" { needs = { "deploy" }, sh = "true" },
  stage "notify" { needs = { "build" }, when = "on_failure", sh = "touch $D/notified" },
  stage "cleanup" { when = "always", sh = "touch $D/cleaned" },
  stage "celebrate" { when = "on_failure", needs = { "cleanup" }, sh = "touch $D/never" },
}]], "--json")
    assert.equals(1, res.code)
    local evs = events(res)
    local status = {}
    for _, ev in ipairs(evs) do if ev.event == "stage" then status[ev.name] = ev end end
    assert.equals("failed", status.build.status)
    assert.equals("skipped", status.deploy.status)
    assert.equals("needs build, which did not succeed", status.deploy.reason)
    assert.equals("skipped", status.after_deploy.status)
    assert.equals("ok", status.notify.status)
    assert.equals("ok", status.cleanup.status)
    assert.equals("skipped", status.celebrate.status)
    assert.truthy(fs.stat(dir .. "/notified"))
    assert.truthy(fs.stat(dir .. "/cleaned"))
    assert.is_nil(fs.stat(dir .. "/deployed"))
    assert.equals("failed", evs[#evs].status)
  end)

  it("lets allow_failure stages fail without failing the run", function()
    local res = pipeline([[pipeline "p" { stage "flaky" { sh = "exit 1", allow_failure = true },
      stage "next" { needs = { "flaky" }, sh = "true" } }]])
    assert.equals(0, res.code, res.stdout)
    assert.matches("allowed_failure", res.stdout, 1, true)
  end)

  it("kills a stage's whole process group on timeout, and says so", function()
    local res = pipeline([[pipeline "p" { stage "slow" { sh = "sh -c 'echo $$ > $D/pid; exec sleep 60' & wait", timeout = 0.5 } }]])
    assert.equals(1, res.code)
    assert.matches("timed out after 0.5 s", res.stdout, 1, true)
    local pid = support.read(dir .. "/pid"):match("%d+")
    support.eventually(function() return not support.alive(pid) end, "killed: the grandchild")
  end)

  it("keeps a progress line at the bottom of a terminal, and none without one", function()
    support.write(dir .. "/ci.lua", [[pipeline "p" { stage "a" { sh = "echo one" },
      stage "b" { needs = "a", sh = "echo two" } }]])
    -- script(1) gives orch a pseudo-terminal and records what it wrote
    local res = require("orch.proc").run({ "script", "-qec", ("%s pipeline run p -f %s/ci.lua"):format(support.bin, dir),
      "/dev/null" }, { env = { NO_COLOR = "1" } })
    assert.equals(0, res.code, res.stdout)
    local out = res.stdout:gsub("\r\n", "\n")
    assert.matches("\r\27[K[a] one\np: 0/2 stages done; running a", out, 1, true)
    assert.matches("\r\27%[Kok       b [%d.]+s\np: 1/2 stages done; running b\r\27%[KPIPELINE p", out)
    local plain = support.orch("pipeline", "run", "p", "-f", dir .. "/ci.lua")
    assert.not_matches("stages done", plain.stdout, 1, true)
  end)

  it("counts the timeout for the stage, across its commands", function()
    local res = pipeline([[pipeline "p" { stage "slow" { sh = { "sleep 0.4", "sleep 0.4", "touch $D/third" },
      timeout = 0.6 } }]])
    assert.equals(1, res.code)
    assert.matches("failed   slow [%d.]+s: sleep 0.4: timed out after 0.6 s", res.stdout)
    assert.is_nil(fs.stat(dir .. "/third"))
  end)

  it("retries a failed stage", function()
    local res = pipeline([[pipeline "p" { stage "flaky" { retry = 2,
      sh = "n=$(cat $D/n 2>/dev/null || echo 0); echo $((n + 1)) > $D/n; test $n -ge 1" } }]], "--json")
    assert.equals(0, res.code, res.stdout)
    local evs = events(res)
    assert.equals(2, evs[#evs].stages[1].attempts)
  end)

  it("gives each stage its pipeline, stage, run and workspace, and keeps its log", function()
    local res = pipeline([[pipeline "p" { env = { A = "1" }, stage "s" { env = { B = "2" },
      sh = "echo $ORCH_PIPELINE/$ORCH_STAGE/$ORCH_RUN_ID $A$B; test -d $ORCH_WORKSPACE" } }]], "--json")
    assert.equals(0, res.code, res.stdout)
    local evs = events(res)
    local workspace = evs[#evs].workspace
    assert.equals(dir .. "/.orch/runs/p/1", workspace)
    assert.matches("p/s/1 12\n", support.read(workspace .. "/logs/s.log"), 1, true)
  end)

  it("records runs: list and history", function()
    pipeline([[pipeline "p" { triggers = { "manual" }, stage "s" { sh = "true" } }]])
    pipeline([[pipeline "p" { triggers = { "manual" }, stage "s" { sh = "false" } }]])
    local list = support.orch("pipeline", "list", "-f", dir .. "/ci.lua")
    assert.matches("p%s+1%s+manual%s+failed", list.stdout)
    local hist = support.orch("pipeline", "history", "p", "-f", dir .. "/ci.lua")
    assert.matches("run 2 .- failed", hist.stdout)
    assert.matches("run 1 .- ok", hist.stdout)
    -- without -f: the store in the current folder
    assert.equals(hist.stdout, support.orch("pipeline", "history", "p", { cwd = dir }).stdout)
    assert.matches("pipeline p  run 1  ok", support.orch("pipeline", "show", "1", { cwd = dir }).stdout, 1, true)
  end)

  it("reports definition errors before anything runs, with file:line", function()
    local res = pipeline([[pipeline "p" {
  stage "a" { sh = "touch $D/ran" },
  stage "b" { needs = { "nope" }, sh = "true" },
}]])
    assert.equals(2, res.code)
    assert.matches("stage 'b' (" .. dir .. "/ci.lua:3) needs 'nope'", res.stderr, 1, true)
    assert.is_nil(fs.stat(dir .. "/ran"))
    res = pipeline([[pipeline "p" {
  stage "a" { needs = { "c" }, sh = "true" },
  stage "b" { needs = { "a" }, sh = "true" },
  stage "c" { needs = { "b" }, sh = "true" },
}]])
    assert.equals(2, res.code)
    assert.matches("stages form a cycle: a -> c -> b -> a", res.stderr, 1, true)
    res = pipeline([[pipeline "p" { stage "a" { shh = "true" } }]])
    assert.equals(2, res.code)
    assert.matches("ci.lua:1: stage 'a': unknown key 'shh'", res.stderr, 1, true)
  end)

  it("writes a JUnit report that a real XML parser accepts", function()
    local res = pipeline([[pipeline "p" {
  stage "ok" { sh = "echo 'fine & <dandy>'" },
  stage "bad" { sh = "printf 'broke \\001 \"here\"\\n' >&2; exit 4" },
  stage "after" { needs = { "bad" }, sh = "true" },
}]], "--junit", dir .. "/report.xml")
    assert.equals(1, res.code)
    local lint = require("orch.proc").run({ "xmllint", "--noout", dir .. "/report.xml" })
    assert.equals(0, lint.code, lint.stderr)
    local xml = support.read(dir .. "/report.xml")
    assert.matches('<testsuites name="orch" tests="3" failures="1" skipped="1"', xml, 1, true)
    assert.matches('<testcase name="bad" classname="p"', xml, 1, true)
    assert.matches('exit 4: exit code 4">', xml, 1, true)
    assert.matches('<skipped message="needs bad, which did not succeed"/>', xml, 1, true)
    assert.matches("fine &amp; &lt;dandy&gt;", xml, 1, true)
  end)

  it("hands a stage's artifacts, byte for byte, to the stages that need it (#5)", function()
    local res = pipeline([[pipeline "p" {
  stage "build" { sh = { "mkdir -p out/sub", "printf 'bin\\000\\377ary' > out/app", "echo lib > out/sub/lib.txt",
    "echo skip > out/other" }, artifacts = { "out/app", "out/sub/*.txt" } },
  stage "tamper" { needs = { "build" }, sh = "echo changed > out/app" },
  stage "deploy" { needs = { "build", "tamper" },
    sh = "cp -r $ORCH_ARTIFACTS $D/received; test ! -e $ORCH_ARTIFACTS/out/other" },
}]], "--json")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("bin\0\255ary", support.read(dir .. "/received/out/app"))
    assert.equals("lib\n", support.read(dir .. "/received/out/sub/lib.txt"))
    local evs = events(res)
    local summary = evs[#evs]
    assert.equals(summary.workspace .. "/artifacts/build.tar.gz", summary.stages[1].artifacts)
    local list = require("orch.proc").run({ "tar", "-tzf", summary.stages[1].artifacts })
    assert.equals("out/app\nout/sub/lib.txt\n", list.stdout)
  end)

  it("fails a stage whose declared artifact was not made", function()
    local res = pipeline([[pipeline "p" { stage "build" { sh = "true", artifacts = "build/app" },
      stage "deploy" { needs = "build", sh = "true" } }]])
    assert.equals(1, res.code)
    assert.matches("failed   build [%d.]+s: artifacts: 'build/app' matched nothing in ", res.stdout)
    assert.matches("skipped  deploy: needs build, which did not succeed", res.stdout, 1, true)
  end)

  it("shows a run: stages, logs and artifacts", function()
    pipeline([[pipeline "p" { stage "build" { sh = { "echo building", "mkdir -p b", "touch b/app" }, artifacts = "b/app" },
      stage "bad" { needs = "build", sh = "echo oops >&2; exit 3" } }]])
    local res = support.orch("pipeline", "show", "1", "-f", dir .. "/ci.lua")
    assert.equals(0, res.code, res.stderr)
    assert.matches("pipeline p  run 1  failed", res.stdout, 1, true)
    assert.matches("== build: ok, 1 attempt", res.stdout, 1, true)
    assert.matches("building\n", res.stdout, 1, true)
    assert.matches("== bad: failed, 1 attempt, [%d.]+s  %(echo oops >&2; exit 3: exit code 3%)\n", res.stdout)
    assert.matches("oops\n", res.stdout, 1, true)
    assert.matches("build: " .. dir .. "/.orch/runs/p/1/artifacts/build.tar.gz (1 file, ", res.stdout, 1, true)
    assert.matches("    b/app  0\n", res.stdout, 1, true)
    res = support.orch("pipeline", "show", "7", "-f", dir .. "/ci.lua")
    assert.equals(1, res.code)
    assert.matches("no pipeline run 7 in", res.stderr, 1, true)
  end)

  it("keeps the workspaces of the newest `keep` runs and prunes the rest", function()
    for _ = 1, 4 do pipeline([[pipeline "p" { keep = 2, stage "s" { sh = "echo hi" } }]]) end
    assert.is_nil(fs.stat(dir .. "/.orch/runs/p/1"))
    assert.is_nil(fs.stat(dir .. "/.orch/runs/p/2"))
    assert.truthy(fs.stat(dir .. "/.orch/runs/p/3/logs/s.log"))
    assert.truthy(fs.stat(dir .. "/.orch/runs/p/4/logs/s.log"))
    local res = support.orch("pipeline", "show", "1", "-f", dir .. "/ci.lua")
    assert.matches("(pruned)", res.stdout, 1, true)
    local hist = support.orch("pipeline", "history", "p", "-f", dir .. "/ci.lua")
    assert.matches("run 1 ", hist.stdout, 1, true)  -- the record stays
  end)

  it("checks triggers and keys when the file loads, with file:line", function()
    local res = pipeline([[pipeline "p" { triggers = { schedule = "61 * * * *" }, stage "s" { sh = "true" } }]])
    assert.equals(2, res.code)
    assert.matches("ci.lua:1: pipeline 'p': cron: bad expression '61 * * * *'", res.stderr, 1, true)
    res = pipeline([[pipeline "p" { triggers = { "nightly" }, stage "s" { sh = "true" } }]])
    assert.matches("ci.lua:1: pipeline 'p': unknown trigger nightly", res.stderr, 1, true)
    res = pipeline([[pipeline "p" { on_busy = "later", stage "s" { sh = "true" } }]])
    assert.matches("on_busy must be \"queue\" or \"skip\"", res.stderr, 1, true)
    res = pipeline([[pipeline "p" { stage "s" { sh = "true", serial = 1 } }]])
    assert.matches("ci.lua:1: stage 's': serial and max_fail apply to stages that run on hosts", res.stderr, 1, true)
    res = pipeline([[pipeline "p" { stage "s" { sh = "true", artifacts = "../x" } }]])
    assert.matches("artifacts are paths (or globs) inside the stage's folder", res.stderr, 1, true)
  end)

  it("runs a function stage with the playbook's primitives, and stages on hosts as a play", function()
    local res = pipeline(WEB_HOSTS .. [[
pipeline "p" {
  stage "make" { run = function(ctx)
    ctx.sh("echo made by $ORCH_STAGE")
    file { "$D/config", content = "port = 80\n" }
  end },
  stage "deploy" { needs = "make", on = "role:web", serial = 1,
    run = function(h, ctx) ctx.log(h.name .. " got " .. h:read("$D/config")) end },
  stage "check" { needs = "make", on = "role:web", sh = "echo on $ORCH_STAGE" },
}]], "--json")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local out = {}
    for _, ev in ipairs(events(res)) do
      if ev.event == "output" then out[#out + 1] = ev.name .. ": " .. ev.line end
    end
    out = table.concat(out, "\n")
    assert.matches("make: made by make", out, 1, true)
    assert.matches("deploy: a got port = 80", out, 1, true)
    assert.matches("deploy: b got port = 80", out, 1, true)
    assert.matches("check: [b] on check", out, 1, true)
    assert.equals("port = 80\n", support.read(dir .. "/config"))
  end)

  it("gives the commands a function stage's code runs, and os.getenv, the stage's environment", function()
    local res = pipeline(WEB_HOSTS .. [[
pipeline "p" { env = { A = "1" },
  stage "make" { env = { B = "2" }, run = function(ctx)
    command { "echo $ORCH_STAGE $A$B > $D/by-command" }
    ctx.log("getenv " .. os.getenv("ORCH_STAGE") .. " " .. os.getenv("ORCH_RUN_ID"))
  end },
  stage "deploy" { needs = "make", on = "role:web",
    run = function(h) h:exec("echo $ORCH_PIPELINE/$ORCH_STAGE > $D/by-" .. h.name) end },
}]], "--json")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("make 12\n", support.read(dir .. "/by-command"))
    assert.equals("p/deploy\n", support.read(dir .. "/by-a"))
    assert.equals("p/deploy\n", support.read(dir .. "/by-b"))
    assert.matches('"line":"getenv make 1"', res.stdout, 1, true)
  end)

  it("logs a function stage's error without the engine's traceback, unless -v", function()
    local body = WEB_HOSTS .. [[pipeline "p" { stage "s" { on = "role:nope", run = function(h) end } }]]
    local res = pipeline(body)
    assert.equals(1, res.code)
    assert.matches("unknown role 'nope' in selector 'role:nope'", res.stdout, 1, true)
    assert.is_nil(res.stdout:find("stack traceback", 1, true))
    res = pipeline(body, "-v")
    assert.matches("stack traceback", res.stdout, 1, true)
  end)

  it("fails a stage on hosts when a host fails, unless max_fail allows it", function()
    local res = pipeline(WEB_HOSTS .. [[
pipeline "p" {
  stage "strict" { on = "role:web", run = function(h) if h.name == "b" then error("b is broken") end end },
  stage "lenient" { on = "role:web", max_fail = 1, run = function(h) if h.name == "b" then error("b is broken") end end },
}]], "--json")
    assert.equals(1, res.code)
    local evs = events(res)
    local st = evs[#evs].stages
    assert.equals("failed", st[1].status)
    assert.equals("failed on 1 host", st[1].reason)
    assert.equals("ok", st[2].status)
  end)

  it("never runs the same pipeline twice at once: a second run waits, then names the holder", function()
    support.write(dir .. "/ci.lua", [[pipeline "p" { stage "s" { sh = "sleep 3" } }]])
    local first = require("orch.proc").spawn({ argv = { support.bin, "pipeline", "run", "p", "-f", dir .. "/ci.lua" } })
    finally(function() first:kill("KILL"); first:close() end)
    support.eventually(function() return fs.stat(dir .. "/.orch/runs/p/1") end, "started")
    local res = support.orch("pipeline", "run", "p", "-f", dir .. "/ci.lua", "--lock-timeout", "0.3")
    assert.equals(1, res.code)
    assert.matches("pipeline-p (" .. dir .. "/.orch/state.db) is locked by pid " .. first:pid(), res.stderr, 1, true)
  end)

  it("records a run stopped by Ctrl-C as interrupted, and kills its stages", function()
    support.write(dir .. "/ci.lua", ([[pipeline "p" { stage "s" { sh = "echo $$ > %s/pid; exec sleep 60" } }]]):format(dir))
    local p = require("orch.proc").spawn({ argv = { support.bin, "pipeline", "run", "p", "-f", dir .. "/ci.lua" } })
    finally(function() p:close() end)
    local pid = support.wait_for(dir .. "/pid", "\n"):match("%d+")
    assert(p:kill("INT"))
    local r = p:wait()
    assert.equals(130, r.code)
    support.eventually(function() return not support.alive(pid) end, "killed: the stage")
    local hist = support.orch("pipeline", "history", "p", "-f", dir .. "/ci.lua")
    assert.matches("run 1 .- interrupted", hist.stdout)
    assert.matches("s%s+interrupted", hist.stdout)
  end)
end)
