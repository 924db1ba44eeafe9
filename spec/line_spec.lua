local support = require("spec.helpers.support")
local fs = require("orch.core.fs")

describe("line", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body, ...) return support.play(dir, body, ...) end
  local recap = support.recap

  local function converges(before, body, after) support.converges(dir, before, body, after) end

  it("creates a missing file with create = true, then finds nothing to change", function()
    local body = 'line { "$D/new.conf", line = "max_conn = 512", create = true, mode = "0640" }\n'
    local res = play(body)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("changed  local    line " .. dir .. "/new.conf", res.stdout, 1, true)
    assert.equals("max_conn = 512\n", support.read(dir .. "/new.conf"))
    assert.equals(tonumber("640", 8), fs.stat(dir .. "/new.conf").mode)
    res = play(body)
    assert.equals(0, res.code)
    assert.matches("local        ok=1  changed=0  failed=0  skipped=0", res.stdout, 1, true)
  end)

  it("refuses a missing file without create, and creates nothing", function()
    local res = play('line { "$D/nope", line = "x" }\n')
    assert.equals(1, res.code)
    assert.matches(dir .. "/nope does not exist (set create = true to create it)", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/nope"))
  end)

  it("leaves a missing file missing when the line is to be absent", function()
    local res = play('line { "$D/nope", line = "x", state = "absent" }\n')
    assert.equals(0, res.code, res.stdout)
    assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(res))
    assert.is_nil(fs.stat(dir .. "/nope"))
  end)

  it("appends a line that is not there, and leaves one that is", function()
    converges("a\nb\n", 'line { "$D/f", line = "c" }\n', "a\nb\nc\n")
    support.write(dir .. "/f", "a\nc\nb\n")
    assert.equals("ok=1  changed=0  failed=0  skipped=0", recap(play('line { "$D/f", line = "c" }\n')))
    assert.equals("a\nc\nb\n", support.read(dir .. "/f"))
  end)

  it("replaces the last line matching match, and only that one", function()
    converges("max_conn = 10\nport = 1\nmax_conn = 20\nend\n",
      'line { "$D/f", line = "max_conn = 512", match = "^max_conn" }\n',
      "max_conn = 10\nport = 1\nmax_conn = 512\nend\n")
  end)

  it("changes the line when the wanted line changes", function()
    converges("port = 1\n", 'line { "$D/f", line = "port = 2", match = "^port%s*=" }\n', "port = 2\n")
    converges("port = 2\n", 'line { "$D/f", line = "port = 3", match = "^port%s*=" }\n', "port = 3\n")
  end)

  it("inserts when nothing matches, and does not insert again when the line itself does not match", function()
    converges("a\n", 'line { "$D/f", line = "# max_conn off", match = "^max_conn" }\n', "a\n# max_conn off\n")
  end)

  it("takes % as the escape in a pattern", function()
    converges("a.b = 1\naxb = 1\n", 'line { "$D/f", line = "a.b = 2", match = "^a%.b " }\n', "a.b = 2\naxb = 1\n")
  end)

  it("inserts after the last line matching after", function()
    converges("[a]\nx\n[b]\ny\n[b]\nz\n", 'line { "$D/f", line = "new", after = "^%[b%]" }\n',
      "[a]\nx\n[b]\ny\n[b]\nnew\nz\n")
  end)

  it("inserts before the first line matching before, and first with before = '^'", function()
    converges("x\n[b]\ny\n[b]\n", 'line { "$D/f", line = "new", before = "^%[b%]" }\n', "x\nnew\n[b]\ny\n[b]\n")
    converges("x\ny\n", 'line { "$D/f", line = "top", before = "^" }\n', "top\nx\ny\n")
  end)

  it("appends when the after or before anchor is not found", function()
    converges("x\n", 'line { "$D/f", line = "new", after = "^nothing" }\n', "x\nnew\n")
    converges("x\n", 'line { "$D/f", line = "new", before = "^nothing" }\n', "x\nnew\n")
  end)

  it("prefers replacing a match to inserting at an anchor", function()
    converges("port = 1\n[main]\n", 'line { "$D/f", line = "port = 2", match = "^port", after = "^%[main%]" }\n',
      "port = 2\n[main]\n")
  end)

  it("removes every line equal to line when absent", function()
    converges("a\nx\nb\nx\nxx\n", 'line { "$D/f", line = "x", state = "absent" }\n', "a\nb\nxx\n")
  end)

  it("removes every line matching match when absent", function()
    converges("#c1\na\n  #c2\n#c3\n", 'line { "$D/f", match = "^%s*#", state = "absent" }\n', "a\n")
  end)

  it("keeps a file without a final newline without one", function()
    converges("a\nb", 'line { "$D/f", line = "c" }\n', "a\nb\nc")
    converges("a\nb", 'line { "$D/f", line = "b", state = "absent" }\n', "a")
    converges("a\nb", 'line { "$D/f", line = "B", match = "^b" }\n', "a\nB")
    converges("a\nb", 'line { "$D/f", line = "n", after = "^a" }\n', "a\nn\nb")
  end)

  it("keeps CRLF line endings", function()
    converges("a\r\nb\r\n", 'line { "$D/f", line = "c" }\n', "a\r\nb\r\nc\r\n")
    converges("a\r\nb\r\n", 'line { "$D/f", line = "B", match = "^b$" }\n', "a\r\nB\r\n")
  end)

  it("empties a file when the last line goes", function()
    converges("x\n", 'line { "$D/f", line = "x", state = "absent" }\n', "")
  end)

  it("never installs a file that fails validate, and keeps a backup when asked", function()
    support.write(dir .. "/run.sh", "echo hi\n")
    local res = play('line { "$D/run.sh", line = "if then", validate = "sh -n %s" }\n')
    assert.equals(1, res.code)
    assert.matches("the file was not changed", res.stdout, 1, true)
    assert.equals("echo hi\n", support.read(dir .. "/run.sh"))
    res = play('line { "$D/run.sh", line = "echo bye", validate = "sh -n %s", backup = true }\n')
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("echo hi\necho bye\n", support.read(dir .. "/run.sh"))
    local backups = fs.glob(dir .. "/run.sh.*~")
    assert.equals(1, #backups)
    assert.equals("echo hi\n", support.read(backups[1]))
  end)

  it("changes nothing on disk in --check, yet reports the change", function()
    support.write(dir .. "/f", "port = 1\n")
    local before = fs.stat(dir .. "/f")
    local res = play('line { "$D/f", line = "port = 2", match = "^port" }\n'
      .. 'line { "$D/g", line = "x", create = true }\n',
      "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("ok=0  changed=2  failed=0  skipped=0", recap(res))
    assert.matches("check mode: nothing was changed", res.stdout, 1, true)
    local after = fs.stat(dir .. "/f")
    assert.equals("port = 1\n", support.read(dir .. "/f"))
    assert.same({ before.mtime, before.ino }, { after.mtime, after.ino })
    assert.is_nil(fs.stat(dir .. "/g"))
  end)

  it("shows a unified diff with --diff", function()
    support.write(dir .. "/f", "a\nport = 1\nb\n")
    local res = play('line { "$D/f", line = "port = 2", match = "^port" }\n', "--diff")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("\n      --- " .. dir .. "/f\n      +++ " .. dir .. "/f\n", res.stdout, 1, true)
    assert.matches("\n      -port = 1\n      +port = 2\n", res.stdout, 1, true)
    assert.matches("\n       a\n", res.stdout, 1, true)
  end)

  it("names the line of an unknown attribute, and exits 2", function()
    support.write(dir .. "/f", "")
    local res = play('log("first")\nline { "$D/f", lien = "x" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: line: unknown attribute 'lien' (did you mean 'line'?)", res.stderr, 1, true)
  end)

  it("refuses attributes of the wrong type or outside the enum", function()
    local res = play('line { "$D/f", line = "x", create = "yes" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: ", res.stderr, 1, true)
    assert.matches("attribute 'create' must be boolean", res.stderr, 1, true)
    res = play('line { "$D/f", line = "x", state = "gone" }\n')
    assert.equals(2, res.code)
    assert.matches("attribute 'state' must be one of present, absent", res.stderr, 1, true)
  end)

  it("fails on input it can only judge at run time, naming the file", function()
    support.write(dir .. "/f", "a\n")
    local cases = {
      { 'line { "$D/f" }\n', "line is required when state is present" },
      { 'line { "$D/f", state = "absent" }\n', "give line or match" },
      { 'line { "$D/f", line = "a\\nb" }\n', "line must be a single line" },
      { 'line { "$D/f", line = "x", match = "100%" }\n', 'match is not a valid Lua pattern ("100%")' },
      { 'line { "$D/f", line = "x", after = "a", before = "b" }\n', "give after or before, not both" },
      -- an anchor is checked even when the line is there and it is not needed
      { 'line { "$D/f", line = "a", after = "(" }\n', 'after is not a valid Lua pattern ("("): unfinished capture' },
    }
    for _, case in ipairs(cases) do
      local res = play(case[1])
      assert.equals(1, res.code, case[1])
      assert.matches(dir .. "/f: " .. case[2], res.stdout, 1, true)
    end
    assert.equals("a\n", support.read(dir .. "/f"))
  end)
end)
