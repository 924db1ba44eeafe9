-- package_spec.lua: the package provider against the real apt and dpkg, fed
-- from a repository on disk of two versions of a tiny package made here
-- (spec.helpers.apt_repo): no network, and this machine's package lists stay
-- as they are. Installing installs for real (dpkg), so it needs root.
local support = require("spec.helpers.support")
local apt_repo = require("spec.helpers.apt_repo")
local proc = require("orch.proc")
local fs = require("orch.core.fs")

-- This run's own name: another run's package (or anyone's) never counts.
local PKG = ("orch-spec-pkg-%d"):format(support.pid())
local FILE = "/usr/share/" .. PKG .. "/version"   -- each version writes its own number there

-- The installed version, or nil.
local function installed()
  local r = assert(proc.run({ "dpkg-query", "-W", "-f=${Status}\t${Version}", PKG }))
  return r.stdout:match("^%S+ ok installed\t(.+)$")
end

describe("package", function()
  local missing = support.missing(apt_repo.TOOLS)
  if missing then pending("needs " .. missing .. " (apt and dpkg: Debian or Ubuntu)") return end
  local repo, dir
  lazy_setup(function()
    local versions = {}
    for i, v in ipairs({ "1.0", "2.0" }) do versions[i] = { name = PKG, version = v, files = { [FILE] = v .. "\n" } } end
    repo = apt_repo.create(support.tmpdir(), versions)
  end)
  lazy_teardown(function() support.remove_tree(repo.dir) end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  -- orch play with apt seeing only the spec's repository
  local function play(body, ...)
    local args = { ... }
    args[#args + 1] = { env = repo.env }
    return support.play(dir, body, table.unpack(args))
  end

  it("installs a package, leaves it alone, moves it between versions, and removes it #machine", function()
    if not support.is_root() then pending("needs root: dpkg installs the package for real") return end
    assert.is_nil(installed(), PKG .. " is installed already; this spec installs and removes it")
    finally(function()
      if installed() then
        proc.run({ "apt-get", "-o", "DPkg::Lock::Timeout=60", "purge", "-y", PKG },
          { env = { APT_CONFIG = repo.config, DEBIAN_FRONTEND = "noninteractive" } })
      end
    end)
    local present = ("package { %q }\n"):format(PKG)

    local check = play(present, "--check", "--diff")
    assert.equals(0, check.code, check.stdout .. check.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", check.stdout, 1, true)
    assert.matches("state: absent -> present", check.stdout, 1, true)
    assert.is_nil(installed())

    local first = play(present)
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", first.stdout, 1, true)
    assert.equals("2.0", installed())   -- apt's candidate: the newest
    assert.equals("2.0\n", support.read(FILE))

    local again = play(present .. ('package { %q, state = "latest" }\npackage { %q, version = "2.0" }\n')
      :format(PKG, PKG))
    assert.equals(0, again.code, again.stdout .. again.stderr)
    assert.matches("local        ok=3  changed=0  failed=0", again.stdout, 1, true)

    -- an exact version: down, then latest brings it back up
    local down = play(('package { %q, version = "1.0" }\n'):format(PKG), "--diff")
    assert.equals(0, down.code, down.stdout .. down.stderr)
    assert.matches("version: 2.0 -> 1.0", down.stdout, 1, true)
    assert.equals("1.0", installed())
    assert.equals("1.0\n", support.read(FILE))
    local latest = ('package { %q, state = "latest" }\n'):format(PKG)
    local up = play(latest, "--diff")
    assert.equals(0, up.code, up.stdout .. up.stderr)
    assert.matches("version: 1.0 -> 2.0", up.stdout, 1, true)
    assert.equals("2.0", installed())
    assert.matches("local        ok=1  changed=0  failed=0", play(latest).stdout, 1, true)

    local absent = ('package { %q, state = "absent" }\n'):format(PKG)
    local check_rm = play(absent, "--check")
    assert.matches("local        ok=0  changed=1  failed=0", check_rm.stdout, 1, true)
    assert.equals("2.0", installed())

    local removed = play(absent)
    assert.equals(0, removed.code, removed.stdout .. removed.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", removed.stdout, 1, true)
    assert.is_nil(installed())
    assert.is_nil(fs.stat(FILE))
    assert.matches("local        ok=1  changed=0  failed=0", play(absent).stdout, 1, true)
  end)

  it("says so when apt knows no such package, and suggests apt-get update", function()
    local res = play('package { "orch-no-such-package-1" }\n')
    assert.equals(1, res.code)
    assert.matches("failed   local    package orch-no-such-package-1", res.stdout, 1, true)
    assert.matches("package orch-no-such-package-1: apt knows no such package", res.stdout, 1, true)
    assert.matches("apt-get update", res.stdout, 1, true)
  end)

  it("says so when the version asked for is not available", function()
    if not support.is_root() then pending("needs root: apt-get install takes dpkg's lock before it looks") return end
    local res = play(('package { %q, version = "0.0-orch" }\n'):format(PKG))
    assert.equals(1, res.code)
    assert.matches(("package %s: version 0.0-orch is not available"):format(PKG), res.stdout, 1, true)
    assert.is_nil(installed())
  end)

  it("names the attribute and line of a typo, and refuses a bad name", function()
    local res = play('log("x")\npackage { "hello", verison = "1" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: package: unknown attribute 'verison' (did you mean 'version'?)", res.stderr, 1, true)
    res = play('package { "hello", state = "installed" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: package \"hello\": attribute 'state' must be one of present, absent, latest",
      res.stderr, 1, true)
    res = play('package { "--purge" }\n')
    assert.equals(1, res.code)
    assert.matches('package: bad package name "--purge"', res.stdout, 1, true)
    res = play('package { "hello", version = "1", state = "latest" }\n')
    assert.equals(1, res.code)
    assert.matches('package hello: give version or state = "latest", not both', res.stdout, 1, true)
  end)
end)
