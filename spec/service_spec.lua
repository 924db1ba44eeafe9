local support = require("spec.helpers.support")
local fs = require("orch.core.fs")

local function play(dir, body, ...)
  support.write(dir .. "/site.lua", body)
  return support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db", ...)
end

-- This machine and CI's containers run without systemd; these specs check
-- what orch does there.
local systemd_runs = fs.stat("/run/systemd/system") ~= nil

describe("service", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("fails clearly where systemd is not running", function()
    if systemd_runs then pending("systemd runs here") return end
    local res = play(dir, 'service { "cron", state = "started", enabled = true }\n')
    assert.equals(1, res.code)
    assert.matches("failed   local    service cron", res.stdout, 1, true)
    assert.matches("service cron: systemd is not running on local (no /run/systemd/system); "
      .. "cannot manage services here", res.stdout, 1, true)
    assert.matches("local        ok=0  changed=0  failed=1", res.stdout, 1, true)
  end)

  it("names the attribute and line of a typo", function()
    local res = play(dir, 'log("x")\nservice { "cron", enable = true }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: service: unknown attribute 'enable' (did you mean 'enabled'?)", res.stderr, 1, true)
    res = play(dir, 'service { "cron", state = "running" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: service \"cron\": attribute 'state' must be one of started, stopped, restarted, reloaded",
      res.stderr, 1, true)
  end)
end)

describe("systemd_unit", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function unit(name, attrs)
    return ('systemd_unit { %q, dir = %q, %s }\n'):format(name, dir, attrs)
  end

  it("writes the unit file, then finds nothing to change", function()
    if systemd_runs then pending("systemd runs here: daemon-reload would run") return end
    local body = unit("app.service", 'content = "[Unit]\\nDescription=app\\n"')
    local check = play(dir, body, "--check")
    assert.equals(0, check.code, check.stdout .. check.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", check.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/app.service"))

    local first = play(dir, body)
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.matches("changed  local    systemd_unit app.service", first.stdout, 1, true)
    assert.matches("log      systemd is not running: daemon-reload skipped", first.stdout, 1, true)
    assert.equals("[Unit]\nDescription=app\n", support.read(dir .. "/app.service"))
    assert.equals(tonumber("644", 8), fs.stat(dir .. "/app.service").mode)

    local again = play(dir, body)
    assert.equals(0, again.code, again.stdout .. again.stderr)
    assert.matches("local        ok=1  changed=0  failed=0", again.stdout, 1, true)
    assert.is_nil(again.stdout:find("daemon-reload", 1, true))

    local edited = play(dir, unit("app.service", 'content = "[Unit]\\nDescription=app 2\\n", mode = "0600"'))
    assert.matches("local        ok=0  changed=1  failed=0", edited.stdout, 1, true)
    assert.matches("daemon-reload skipped", edited.stdout, 1, true)
    assert.equals("[Unit]\nDescription=app 2\n", support.read(dir .. "/app.service"))
    assert.equals(tonumber("600", 8), fs.stat(dir .. "/app.service").mode)
  end)

  it("takes its content from a file beside the playbook", function()
    support.write(dir .. "/app.timer", "[Timer]\nOnCalendar=daily\n")
    local res = play(dir, ('systemd_unit { "app.timer", dir = %q, src = "app.timer" }\n')
      :format(dir .. "/units"), "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    fs.mkdir(dir .. "/units")
    res = play(dir, ('systemd_unit { "app.timer", dir = %q, src = "app.timer" }\n')
      :format(dir .. "/units"))
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("[Timer]\nOnCalendar=daily\n", support.read(dir .. "/units/app.timer"))
  end)

  it("refuses a bad unit name before running, naming it and the line", function()
    for _, name in ipairs({ "app.conf", "app", "sub/app.service" }) do
      local res = play(dir, unit(name, 'content = "x"'))
      assert.equals(2, res.code)
      assert.matches(('site.lua:1: systemd_unit "%s": attribute \'name\' must end in .service, .socket'):format(name),
        res.stderr, 1, true)
      assert.is_nil(fs.stat(dir .. "/" .. name))
    end
  end)

  it("names the attribute and line of a typo", function()
    local res = play(dir, 'log("x")\n' .. unit("app.service", 'contents = "x"'))
    assert.equals(2, res.code)
    assert.matches("site.lua:2: systemd_unit: unknown attribute 'contents' (did you mean 'content'?)", res.stderr, 1, true)
    res = play(dir, unit("app.service", 'mode = 644'))
    assert.equals(2, res.code)
    assert.matches("site.lua:1: systemd_unit \"app.service\": attribute 'mode' must be a mode string", res.stderr, 1, true)
  end)
end)
