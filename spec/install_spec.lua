local support = require("spec.helpers.support")
local proc = require("orch.proc")

describe("cmake --install", function()
  it("installs a binary that finds its Lua library from the prefix, and ORCH_PATH adds more", function()
    local prefix = support.tmpdir()
    finally(function() support.remove_tree(prefix) end)
    local build = support.bin:match("^(.*)/[^/]+$")
    local res = proc.run({ "cmake", "--install", build, "--prefix", prefix })
    assert.equals(0, res.code, res.stderr)
    local fs = require("orch.core.fs")
    assert.truthy(fs.stat(prefix .. "/share/orch/lua/orch/cli/init.lua"))
    assert.truthy(fs.stat(prefix .. "/share/orch/providers"))

    -- Run from elsewhere, with the source tree out of reach by name.
    local out = proc.run({ prefix .. "/bin/orch", "-e", "print(require('orch.core.info').root)" }, { cwd = "/" })
    assert.equals(0, out.code, out.stderr)
    assert.equals(fs.realpath(prefix .. "/share/orch") .. "\n", out.stdout)
    out = proc.run({ prefix .. "/bin/orch", "-e", "print(package.searchpath('orch.cli', package.path))" }, { cwd = "/" })
    assert.equals(fs.realpath(prefix .. "/share/orch") .. "/lua/orch/cli/init.lua\n", out.stdout)

    support.write(prefix .. "/extra.lua", "return { answer = 42 }\n")
    out = proc.run({ prefix .. "/bin/orch", "-e", "print(require('extra').answer)" },
      { cwd = "/", env = { ORCH_PATH = "/nonexistent:" .. prefix } })
    assert.equals("42\n", out.stdout)
  end)

  it("installs the archive and HTTP modules, opened on first use, and the library as bytecode", function()
    local prefix = support.tmpdir()
    finally(function() support.remove_tree(prefix) end)
    local build = support.bin:match("^(.*)/[^/]+$")
    assert.equals(0, proc.run({ "cmake", "--install", build, "--prefix", prefix }).code)
    local orch = prefix .. "/bin/orch"
    local out = proc.run({ orch, "-e", "print(require('orch.core.digest').hmac_sha256('k', 'd'),"
      .. " type(require('orch.core.archive').create), type(require('orch.core.http').listen),"
      .. " type(require('orch.core.ssh').session), require('orch.core.fs').sha256_data(''))" }, { cwd = "/" })
    assert.equals(0, out.code, out.stderr)
    assert.matches("^%x+%s+function%s+function%s+function%s+e3b0c442%x+\n$", out.stdout)
    -- the bytecode searcher finds orch.cli; an edited source wins over it
    out = proc.run({ orch, "-e", "print(type(package.searchers[2]('orch.cli')))" }, { cwd = "/" })
    assert.equals("function\n", out.stdout)
    support.write(prefix .. "/share/orch/lua/orch/cli/pretty.lua", "return 'edited'\n")
    out = proc.run({ orch, "-e", "print((require('orch.cli.pretty')))" }, { cwd = "/" })
    assert.equals("edited\n", out.stdout)
  end)
end)
