local support = require("spec.support")
local json = require("cjson")
local fs = require("orch.core.fs")

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
end)
