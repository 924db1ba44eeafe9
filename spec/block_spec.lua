local support = require("spec.helpers.support")
local fs = require("orch.core.fs")

local BEGIN, END = "# BEGIN orch managed block: orch\n", "# END orch managed block: orch\n"

describe("block", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function play(body, ...) return support.play(dir, body, ...) end
  local recap = support.recap

  local function converges(before, body, after) support.converges(dir, before, body, after) end

  it("creates a missing file with create = true, then finds nothing to change", function()
    local body = 'block { "$D/new", block = "a = 1\\nb = 2\\n", create = true }\n'
    local res = play(body)
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals(BEGIN .. "a = 1\nb = 2\n" .. END, support.read(dir .. "/new"))
    res = play(body)
    assert.matches("local        ok=1  changed=0  failed=0  skipped=0", res.stdout, 1, true)
  end)

  it("refuses a missing file without create, and creates nothing", function()
    local res = play('block { "$D/nope", block = "x" }\n')
    assert.equals(1, res.code)
    assert.matches(dir .. "/nope does not exist (set create = true to create it)", res.stdout, 1, true)
    assert.is_nil(fs.stat(dir .. "/nope"))
  end)

  it("appends the marked block to a file without one", function()
    converges("top\n", 'block { "$D/f", block = "x\\ny" }\n', "top\n" .. BEGIN .. "x\ny\n" .. END)
  end)

  it("replaces what is between the markers, and leaves the rest", function()
    local old = "top\n" .. BEGIN .. "old 1\nold 2\nold 3\n" .. END .. "bottom\n"
    converges(old, 'block { "$D/f", block = "new" }\n', "top\n" .. BEGIN .. "new\n" .. END .. "bottom\n")
  end)

  it("keeps two named blocks apart, and updates one without touching the other", function()
    local body = 'block { "$D/f", name = "one", block = "%s" }\nblock { "$D/f", name = "two", block = "B" }\n'
    converges("x\n", body:format("A"), table.concat({ "x",
      "# BEGIN orch managed block: one", "A", "# END orch managed block: one",
      "# BEGIN orch managed block: two", "B", "# END orch managed block: two", "" }, "\n"))
    converges(support.read(dir .. "/f"), body:format("A2"), table.concat({ "x",
      "# BEGIN orch managed block: one", "A2", "# END orch managed block: one",
      "# BEGIN orch managed block: two", "B", "# END orch managed block: two", "" }, "\n"))
  end)

  it("removes markers and content when absent, and leaves a file without the block alone", function()
    converges("top\n" .. BEGIN .. "x\n" .. END .. "bottom\n", 'block { "$D/f", state = "absent" }\n', "top\nbottom\n")
    local res = play('block { "$D/f", state = "absent" }\nblock { "$D/missing", state = "absent" }\n')
    assert.equals("ok=2  changed=0  failed=0  skipped=0", recap(res))
    assert.is_nil(fs.stat(dir .. "/missing"))
  end)

  it("places a new block after the last line matching after", function()
    converges("[a]\n[b]\nx\n[b]\ny\n", 'block { "$D/f", block = "k = v", after = "^%[b%]$" }\n',
      "[a]\n[b]\nx\n[b]\n" .. BEGIN .. "k = v\n" .. END .. "y\n")
  end)

  it("places a new block before the first line matching before, or at the end when none does", function()
    converges("a\n[b]\n[b]\n", 'block { "$D/f", block = "k", before = "^%[b%]" }\n',
      "a\n" .. BEGIN .. "k\n" .. END .. "[b]\n[b]\n")
    converges("a\n", 'block { "$D/f", block = "k", before = "^%[none%]" }\n', "a\n" .. BEGIN .. "k\n" .. END)
    converges("a\n", 'block { "$D/f", block = "k", before = "^" }\n', BEGIN .. "k\n" .. END .. "a\n")
  end)

  it("takes its own marker, with {mark} and {name}", function()
    converges("a\n", 'block { "$D/f", block = "k", name = "web", marker = "// {mark} {name} //" }\n',
      "a\n// BEGIN web //\nk\n// END web //\n")
  end)

  it("keeps a file without a final newline without one, and keeps CRLF endings", function()
    converges("a", 'block { "$D/f", block = "k" }\n', "a\n" .. BEGIN .. "k\n" .. END:sub(1, -2))
    converges("a\r\nb\r\n", 'block { "$D/f", block = "k\\nl\\n", after = "^a" }\n',
      "a\r\n" .. (BEGIN .. "k\nl\n" .. END):gsub("\n", "\r\n") .. "b\r\n")
  end)

  it("keeps a multi-line secret out of the state store, CRLF endings or not", function()
    support.write(dir .. "/f", "a\r\n")
    local res = play('block { "$D/f", block = secret("KEY-1\\nKEY-2\\n") }\n')
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("a\r\n" .. (BEGIN .. "KEY-1\nKEY-2\n" .. END):gsub("\n", "\r\n"), support.read(dir .. "/f"))
    for _, name in ipairs(assert(fs.list(dir))) do
      if name:find("^state%.db") and fs.stat(dir .. "/" .. name).type == "file" then assert.is_nil(support.read(dir .. "/" .. name):find("KEY-1", 1, true), name) end
    end
  end)

  it("writes markers only for an empty block", function()
    converges("a\n" .. BEGIN .. "x\n" .. END, 'block { "$D/f", block = "" }\n', "a\n" .. BEGIN .. END)
  end)

  it("refuses half a block rather than guess", function()
    support.write(dir .. "/f", "a\n" .. BEGIN .. "x\n")
    local res = play('block { "$D/f", block = "k" }\n')
    assert.equals(1, res.code)
    assert.matches(dir .. '/f: line 2 is "# BEGIN orch managed block: orch"'
      .. ' but no "# END orch managed block: orch" follows it', res.stdout, 1, true)
    support.write(dir .. "/f", "a\nx\n" .. END)
    res = play('block { "$D/f", state = "absent" }\n')
    assert.equals(1, res.code)
    assert.matches('line 3 is "# END orch managed block: orch" but no "# BEGIN orch managed block: orch" precedes it',
      res.stdout, 1, true)
    assert.equals("a\nx\n" .. END, support.read(dir .. "/f"))
  end)

  it("changes nothing on disk in --check, yet reports the change", function()
    support.write(dir .. "/f", "a\n" .. BEGIN .. "old\n" .. END)
    local before = fs.stat(dir .. "/f")
    local res = play('block { "$D/f", block = "new" }\nblock { "$D/g", block = "x", create = true }\n', "--check")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.equals("ok=0  changed=2  failed=0  skipped=0", recap(res))
    local after = fs.stat(dir .. "/f")
    assert.equals("a\n" .. BEGIN .. "old\n" .. END, support.read(dir .. "/f"))
    assert.same({ before.mtime, before.ino }, { after.mtime, after.ino })
    assert.is_nil(fs.stat(dir .. "/g"))
  end)

  it("shows a unified diff with --diff", function()
    support.write(dir .. "/f", "a\n" .. BEGIN .. "old\n" .. END)
    local res = play('block { "$D/f", block = "new" }\n', "--diff")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("\n      --- " .. dir .. "/f\n      +++ " .. dir .. "/f\n", res.stdout, 1, true)
    assert.matches("\n       " .. BEGIN .. "      -old\n      +new\n       " .. END, res.stdout, 1, true)
  end)

  it("refuses unknown attributes, wrong types and bad values", function()
    local res = play('log("x")\nblock { "$D/f", blcok = "x" }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:2: block: unknown attribute 'blcok' (did you mean 'block'?)", res.stderr, 1, true)
    res = play('block { "$D/f", block = { "a", "b" } }\n')
    assert.equals(2, res.code)
    assert.matches("site.lua:1: ", res.stderr, 1, true)
    assert.matches("attribute 'block' must be string", res.stderr, 1, true)
    support.write(dir .. "/f", "a\n")
    for _, case in ipairs({
      { 'block { "$D/f" }\n', "block is required when state is present" },
      { 'block { "$D/f", block = "x", marker = "# managed" }\n', "marker must contain {mark}" },
      { 'block { "$D/f", block = "x", after = "[" }\n', "after is not a valid Lua pattern" },
    }) do
      res = play(case[1])
      assert.equals(1, res.code, case[1])
      assert.matches(dir .. "/f: " .. case[2], res.stdout, 1, true)
    end
    assert.equals("a\n", support.read(dir .. "/f"))
  end)
end)
