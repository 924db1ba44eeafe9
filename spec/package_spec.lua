local support = require("spec.helpers.support")
local proc = require("orch.proc")

-- Small, with no dependencies beyond libc, and not installed on a fresh
-- Debian: the spec installs and removes it for real (Debian's mirror).
local PKG = "hello"

local function play(dir, body, ...)
  support.write(dir .. "/site.lua", body)
  return support.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db", ...)
end

-- The installed version, or nil.
local function installed()
  local r = assert(proc.run({ "dpkg-query", "-W", "-f=${Status}\t${Version}", PKG }))
  return r.stdout:match("^%S+ ok installed\t(.+)$")
end

local function candidate()
  local c = assert(proc.run({ "apt-cache", "policy", PKG })).stdout:match("Candidate:%s*(%S+)")
  return c ~= "(none)" and c or nil
end

describe("package", function()
  local dir
  lazy_setup(function()
    -- a fresh machine (a CI container) may have no package lists at all
    if not candidate() then proc.check({ "apt-get", "update" }) end
    assert(candidate(), "apt has no candidate for " .. PKG .. " even after apt-get update")
  end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  it("installs a package, leaves it alone, and removes it", function()
    assert.is_nil(installed(), PKG .. " is installed already; this spec installs and removes it")
    finally(function()
      if installed() then proc.run({ "apt-get", "remove", "-y", PKG }, { env = { DEBIAN_FRONTEND = "noninteractive" } }) end
    end)
    local present = ("package { %q }\n"):format(PKG)

    local check = play(dir, present, "--check", "--diff")
    assert.equals(0, check.code, check.stdout .. check.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", check.stdout, 1, true)
    assert.matches("state: absent -> present", check.stdout, 1, true)
    assert.is_nil(installed())

    local first = play(dir, present)
    assert.equals(0, first.code, first.stdout .. first.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", first.stdout, 1, true)
    local version = installed()
    assert.equals(candidate(), version)
    assert.matches("Hello, world!", proc.check({ "hello" }).stdout, 1, true)

    local again = play(dir, present .. ('package { %q, state = "latest" }\npackage { %q, version = %q }\n')
      :format(PKG, PKG, version))
    assert.equals(0, again.code, again.stdout .. again.stderr)
    assert.matches("local        ok=3  changed=0  failed=0", again.stdout, 1, true)

    local absent = ('package { %q, state = "absent" }\n'):format(PKG)
    local check_rm = play(dir, absent, "--check")
    assert.matches("local        ok=0  changed=1  failed=0", check_rm.stdout, 1, true)
    assert.equals(version, installed())

    local removed = play(dir, absent)
    assert.equals(0, removed.code, removed.stdout .. removed.stderr)
    assert.matches("local        ok=0  changed=1  failed=0", removed.stdout, 1, true)
    assert.is_nil(installed())
    assert.matches("local        ok=1  changed=0  failed=0", play(dir, absent).stdout, 1, true)
  end)

  it("says so when apt knows no such package, and suggests apt-get update", function()
    local res = play(dir, 'package { "orch-no-such-package-1" }\n')
    assert.equals(1, res.code)
    assert.matches("failed   local    package orch-no-such-package-1", res.stdout, 1, true)
    assert.matches("package orch-no-such-package-1: apt knows no such package", res.stdout, 1, true)
    assert.matches("apt-get update", res.stdout, 1, true)
  end)

  it("says so when the version asked for is not available", function()
    local res = play(dir, ('package { %q, version = "0.0-orch" }\n'):format(PKG))
    assert.equals(1, res.code)
    assert.matches(("package %s: version 0.0-orch is not available"):format(PKG), res.stdout, 1, true)
    assert.is_nil(installed())
  end)

  it("names the attribute and line of a typo, and refuses a bad name", function()
    local res = play(dir, 'log("x")\npackage { "hello", verison = "1" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: package: unknown attribute 'verison' (did you mean 'version'?)", res.stderr, 1, true)
    res = play(dir, 'package { "hello", state = "installed" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: package \"hello\": attribute 'state' must be one of present, absent, latest",
      res.stderr, 1, true)
    res = play(dir, 'package { "--purge" }\n')
    assert.equals(1, res.code)
    assert.matches('package: bad package name "--purge"', res.stdout, 1, true)
    res = play(dir, 'package { "hello", version = "1", state = "latest" }\n')
    assert.equals(1, res.code)
    assert.matches('package hello: give version or state = "latest", not both', res.stdout, 1, true)
  end)
end)
