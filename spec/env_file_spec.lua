local support = require("spec.helpers.support")
local fs = require("orch.core.fs")
local proc = require("orch.proc")

local HEADER = "# Managed by orch: changes here are overwritten\n"

describe("env_file", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body, ...) return support.play(dir, body, ...) end
  local recap = support.recap

  it("writes sorted KEY=value lines under a header, then finds nothing to change", function()
    local body = 'env_file { "$D/app.env", mode = "0600",\n'
      .. '  vars = { PORT = 8080, APP_NAME = "MyApp", DEBUG = false, RATIO = 0.5 } }\n'
    local res = play(body)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("ok=0  changed=1  failed=0  skipped=0", recap(res))
    assert.equals(HEADER .. "APP_NAME=MyApp\nDEBUG=false\nPORT=8080\nRATIO=0.5\n", support.read(dir .. "/app.env"))
    assert.equals(tonumber("600", 8), fs.stat(dir .. "/app.env").mode)
    res = play(body)
    assert.equals(0, res.code)
    assert.matches("local        ok=1  changed=0  failed=0  skipped=0", res.stdout, 1, true)
  end)

  it("rewrites the file when a value changes, and puts back what was edited by hand", function()
    play('env_file { "$D/e", vars = { A = "1", B = "2" } }\n')
    local res = play('env_file { "$D/e", vars = { A = "1", B = "3" } }\n')
    assert.equals("ok=0  changed=1  failed=0  skipped=0", recap(res))
    assert.equals(HEADER .. "A=1\nB=3\n", support.read(dir .. "/e"))
    support.write(dir .. "/e", HEADER .. "A=1\nB=3\nEXTRA=1\n")
    res = play('env_file { "$D/e", vars = { A = "1", B = "3" } }\n')
    assert.equals("ok=0  changed=1  failed=0  skipped=0", recap(res))
    assert.equals(HEADER .. "A=1\nB=3\n", support.read(dir .. "/e"))
  end)

  it("quotes and escapes values a shell would read otherwise, so sourcing gives them back", function()
    local values = {
      PLAIN = "a-b_c.d/e:f@g%h+i,j=k",
      EMPTY = "",
      SPACE = "My App",
      QUOTES = [[say "hi" it's]],
      DOLLAR = "$HOME and ${X}",
      TICKS = "`id`",
      BACKSLASH = [[C:\dir\]],
      HASH = "a#b",
    }
    local lines = {}
    for k, v in pairs(values) do lines[#lines + 1] = ("%s = %q,"):format(k, v) end
    local res = play('env_file { "$D/e", vars = { ' .. table.concat(lines, " ") .. " } }\n")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(HEADER .. table.concat({
      [[BACKSLASH="C:\\dir\\"]],
      [[DOLLAR="\$HOME and \${X}"]],
      [[EMPTY=]],
      [[HASH="a#b"]],
      [[PLAIN=a-b_c.d/e:f@g%h+i,j=k]],
      [[QUOTES="say \"hi\" it's"]],
      [[SPACE="My App"]],
      [[TICKS="\`id\`"]],
    }, "\n") .. "\n", support.read(dir .. "/e"))
    for k, v in pairs(values) do
      local r = proc.run({ "sh", "-c", ('. "$1"; printf %%s "$%s"'):format(k), "sh", dir .. "/e" })
      assert.equals(0, r.code, r.stderr)
      assert.equals(v, r.stdout, k)
    end
  end)

  it("writes a newline in a value as \\n, on one line", function()
    play('env_file { "$D/e", vars = { CERT = "line1\\nline2" }, header = "" }\n')
    assert.equals('CERT="line1\\nline2"\n', support.read(dir .. "/e"))
  end)

  it("takes a header of several lines, making each a comment, or none", function()
    local res = play('env_file { "$D/e", vars = { A = 1 }, header = "app settings\\n# from orch\\n\\n" }\n')
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("# app settings\n# from orch\n#\nA=1\n", support.read(dir .. "/e"))
    play('env_file { "$D/e", vars = { A = 1 }, header = "" }\n')
    assert.equals("A=1\n", support.read(dir .. "/e"))
    play('env_file { "$D/e", vars = {}, header = "" }\n')
    assert.equals("", support.read(dir .. "/e"))
  end)

  it("writes a secret's value, and never shows it, escaped or not, in --diff", function()
    local res = play([[env_file { "$D/e", vars = { TOKEN = secret('pa$$ "w0rd"'), USER = "app" } }]] .. "\n", "--diff")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(HEADER .. 'TOKEN="pa\\$\\$ \\"w0rd\\""\nUSER=app\n', support.read(dir .. "/e"))
    assert.matches("+TOKEN=(sensitive)", res.stdout, 1, true)
    assert.is_nil(res.stdout:find("w0rd", 1, true))
    -- nor in the state store, whose history keeps no content that holds one
    for _, name in ipairs(assert(fs.list(dir))) do
      if name:find("^state%.db") and fs.stat(dir .. "/" .. name).type == "file" then assert.is_nil(support.read(dir .. "/" .. name):find("w0rd", 1, true), name) end
    end
  end)

  it("changes nothing on disk in --check, yet reports the change", function()
    play('env_file { "$D/e", vars = { A = "1" } }\n')
    local before = fs.stat(dir .. "/e")
    local res = play('env_file { "$D/e", vars = { A = "2" } }\nenv_file { "$D/g", vars = { A = "1" } }\n', "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("ok=0  changed=2  failed=0  skipped=0", recap(res))
    assert.matches("check mode: nothing was changed", res.stdout, 1, true)
    local after = fs.stat(dir .. "/e")
    assert.equals(HEADER .. "A=1\n", support.read(dir .. "/e"))
    assert.same({ before.mtime, before.ino }, { after.mtime, after.ino })
    assert.is_nil(fs.stat(dir .. "/g"))
  end)

  it("shows a unified diff with --diff", function()
    play('env_file { "$D/e", vars = { A = "1", B = "x" } }\n')
    local res = play('env_file { "$D/e", vars = { A = "1", B = "y" } }\n', "--diff")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("\n      --- " .. dir .. "/e\n      +++ " .. dir .. "/e\n", res.stdout, 1, true)
    assert.matches("\n       A=1\n      -B=x\n      +B=y\n", res.stdout, 1, true)
  end)

  it("fails naming a key that is not a valid variable name, and writes nothing", function()
    for _, key in ipairs({ "1ST", "MY-VAR", "A B", "" }) do
      local res = play(('env_file { "$D/e", vars = { OK = 1, [%q] = "x" } }\n'):format(key))
      assert.equals(1, res.code, key)
      assert.matches(('%s/e: %q is not a valid variable name'):format(dir, key), res.stdout, 1, true)
      assert.is_nil(fs.stat(dir .. "/e"))
    end
    local res = play('env_file { "$D/e", vars = { A = { 1 } } }\n')
    assert.equals(1, res.code)
    assert.matches(dir .. "/e: vars.A must be a string, number or boolean, got table", res.stdout, 1, true)
  end)

  it("refuses unknown attributes and wrong types, naming the line", function()
    local res = play('log("x")\nenv_file { "$D/e", vars = {}, varz = {} }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: env_file: unknown attribute 'varz' (did you mean 'vars'?)", res.stderr, 1, true)
    res = play('env_file { "$D/e", vars = "A=1" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: ", res.stderr, 1, true)
    assert.matches("attribute 'vars' must be map", res.stderr, 1, true)
    res = play('env_file { "$D/e" }\n')
    assert.equals(2, res.code)
    assert.matches("missing required attribute 'vars'", res.stderr, 1, true)
    assert.is_nil(fs.stat(dir .. "/e"))
  end)
end)
