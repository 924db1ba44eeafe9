local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local json = require("cjson")

describe("orch pipeline stages on SSH hosts (real sshd)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir
  lazy_setup(function() lab = sshd.start(2, { groups = { web = { 1, 2 } } }) end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function run(body)
    support.write(dir .. "/ci.lua", (body:gsub("%$D", function() return dir end)))
    return support.orch("pipeline", "run", "p", "-f", dir .. "/ci.lua", "-i", lab:inventory_yaml(), "--json",
      { env = { HOME = lab.home, SSH_AUTH_SOCK = false } })
  end

  local function outputs(res)
    local lines = {}
    for line in res.stdout:gmatch("[^\n]+") do
      local ev = json.decode(line)
      if ev.event == "output" then lines[#lines + 1] = ev.name .. ": " .. ev.line end
    end
    return table.concat(lines, "\n")
  end

  it("deploys a built artifact to every host of the selector, one at a time (#5)", function()
    local res = run([[pipeline "p" {
  stage "build" { sh = { "mkdir -p out", "sh -c 'echo release-7 > out/app'" }, artifacts = "out/app" },
  stage "deploy" { needs = "build", on = "role:web", serial = 1, run = function(h, ctx)
    h:put(ctx.artifacts .. "/out/app", "$D/app-" .. h.name)
    ctx.log(h.name .. " has " .. h:read("$D/app-" .. h.name))
    ctx.log(h:exec("echo $ORCH_PIPELINE/$ORCH_STAGE on " .. h.name).stdout)
  end },
  stage "verify" { needs = "deploy", on = "role:web", sh = "cat $D/app-h2" },
}]])
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local out = outputs(res)
    assert.matches("deploy: h1 has release-7", out, 1, true)
    assert.matches("deploy: h2 has release-7", out, 1, true)
    assert.matches("deploy: p/deploy on h1", out, 1, true)  -- the stage's environment, over SSH
    assert.matches("verify: [h1] $ cat " .. dir .. "/app-h2", out, 1, true)
    assert.matches("verify: [h1] release-7", out, 1, true)
    assert.matches("verify: [h2] release-7", out, 1, true)
    assert.equals("release-7\n", support.read(dir .. "/app-h2"))
  end)

  it("fails the stage, naming the host, when a command fails on one", function()
    local res = run([[pipeline "p" { stage "check" { on = "role:web",
      sh = "test $(cat $D/mark-$ORCH_STAGE 2>/dev/null) = ok || { echo not ready >&2; exit 4; }" } }]])
    assert.equals(1, res.code)
    local evs = {}
    for line in res.stdout:gmatch("[^\n]+") do evs[#evs + 1] = json.decode(line) end
    assert.equals("failed on 2 hosts", evs[#evs].stages[1].reason)
    assert.matches("check: [h1] not ready", outputs(res), 1, true)
  end)
end)
