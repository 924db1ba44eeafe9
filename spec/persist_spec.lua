local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local fs = require("orch.core.fs")

-- --persist: SSH connections kept by a keeper process between orch runs,
-- as OpenSSH's ControlPersist (#13), against a real sshd
describe("--persist (real sshd)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir, keep_dir, sock
  lazy_setup(function()
    lab = sshd.start(1)
    keep_dir = lab.home .. "/.orch/persist"
    sock = ("%s/ssh-%s.sock"):format(keep_dir, require("orch.core.info").version)
  end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function()
    support.orch("disconnect", { env = { HOME = lab.home } })
    support.eventually(function() return not fs.stat(sock) end, "the keeper gone")
    -- the keeper's output goes to its log, where a sanitizer would say so
    local log = fs.read(keep_dir .. "/keeper.log") or ""
    fs.remove(keep_dir .. "/keeper.log")
    assert.not_matches("Sanitizer", log, 1, true)
    assert.not_matches("runtime error", log, 1, true)
    support.remove_tree(dir)
  end)

  local BODY = [[play "p" { on = "h1", function(h)
  step("s", function()
    local r = h:exec("echo hi from $(hostname)")
    log("out " .. r.stdout:gsub("\n", "") .. " trips " .. h.session:stats().round_trips)
  end)
end }]]

  local function play(env, ...)
    local args = { ... }
    args[#args + 1] = env or {}
    return lab:play(dir, BODY, table.unpack(args))
  end

  local function connections()
    return select(2, (fs.read(keep_dir .. "/keeper.log") or ""):gsub("connected to h1", ""))
  end

  it("reuses the first run's connection in the next run, through a socket only its user can open", function()
    local res = play(nil, "--persist", "30")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("out hi from", res.stdout, 1, true)
    res = play(nil, "--persist", "30")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    -- a new connection costs 5 round trips or more (ssh_spec); the command alone 2
    local trips = tonumber(res.stdout:match("trips (%d+)"))
    assert.is_true(trips <= 3, res.stdout)
    assert.equals(1, connections())
    assert.equals(tonumber("700", 8), fs.stat(keep_dir).mode)
    assert.equals(0, fs.stat(sock).mode & tonumber("077", 8))
  end)

  it("is off without the flag or ORCH_PERSIST", function()
    local res = play(nil)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.is_nil(fs.stat(sock))
  end)

  it("connects again when the host closed the kept connection", function()
    assert.equals(0, play({ ORCH_PERSIST = "30" }).code)
    lab:stop_host(1)
    lab:start_host(1)
    local res = play({ ORCH_PERSIST = "30" })
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("out hi from", res.stdout, 1, true)
    assert.equals(2, connections())
  end)

  it("reports a host it cannot reach as a run without it would", function()
    lab:stop_host(1)
    local direct = play(nil)
    local kept = play(nil, "--persist", "30")
    lab:start_host(1)
    assert.equals(direct.code, kept.code)
    local why = direct.stdout:match("h1: [^\n]*refused")
    assert.is_truthy(why, direct.stdout)
    assert.matches(why, kept.stdout, 1, true)
  end)

  it("closes the kept connections at orch disconnect, and by itself once unused for SECONDS", function()
    assert.equals(0, play(nil, "--persist", "30").code)
    local res = support.orch("disconnect", { env = { HOME = lab.home } })
    assert.equals(0, res.code, res.stderr)
    assert.equals("closed the kept connections\n", res.stdout)
    res = support.orch("disconnect", { env = { HOME = lab.home } })
    assert.equals("no connections were kept\n", res.stdout)

    fs.remove(keep_dir .. "/keeper.log")
    assert.equals(0, play({ ORCH_PERSIST = "1" }).code)
    assert.is_truthy(fs.stat(sock))
    support.wait_for(keep_dir .. "/keeper.log", "leaving")
    assert.is_nil(fs.stat(sock))
  end)

  it("refuses a keeper folder that other users can open", function()
    fs.mkdir(keep_dir, tonumber("755", 8))
    fs.chmod(keep_dir, tonumber("755", 8))
    local res = play(nil, "--persist", "30")
    fs.chmod(keep_dir, tonumber("700", 8))
    assert.not_equals(0, res.code)
    assert.matches("h1: --persist: " .. keep_dir .. " must be a folder of yours that only you can open (chmod 700)",
      res.stdout .. res.stderr, 1, true)
  end)
end)
