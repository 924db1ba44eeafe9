-- textdiff_spec.lua: unified diffs, checked byte for byte against GNU diff -u.
local support = require("spec.helpers.support")
local proc = require("orch.proc")
local textdiff = require("orch.textdiff")

local function lines(from, to, fmt)
  local t = {}
  for i = from, to do t[#t + 1] = (fmt or "line %d\n"):format(i) end
  return t
end

local function numbered(n) return table.concat(lines(1, n)) end

-- A copy of the numbered text with lines replaced ({ [i] = "text\n" }).
local function edit(n, changes)
  local t = lines(1, n)
  for i, v in pairs(changes) do t[i] = v end
  return table.concat(t)
end

-- { name, old, new [, context] }
local cases = {
  { "one line changed", "a\nb\nc\n", "a\nB\nc\n" },
  { "empty to some", "", "a\nb\n" },
  { "some to empty", "a\nb\n", "" },
  { "one line to one line", "a\n", "b\n" },
  { "a line added at the start", numbered(10), "new\n" .. numbered(10) },
  { "a line added at the end", numbered(10), numbered(10) .. "new\n" },
  { "the first line changed", numbered(10), edit(10, { [1] = "first\n" }) },
  { "the last line changed", numbered(10), edit(10, { [10] = "last\n" }) },
  { "the last line removed", numbered(10), numbered(9) },
  { "no newline at the end of either", "a\nb\nc", "a\nb\nC" },
  { "a newline added at the end", "a\nb\nc", "a\nb\nc\n" },
  { "the newline removed at the end", "a\nb\nc\n", "a\nb\nc" },
  { "no newline at the end, in the context", "a\nb\nc\nd", "A\nb\nc\nd" },
  { "a one-line file without newline", "x", "y" },
  { "hunks far apart", numbered(40), edit(40, { [5] = "five\n", [30] = "thirty\n" }) },
  { "hunks 6 lines apart merge", numbered(30), edit(30, { [5] = "five\n", [12] = "twelve\n" }) },
  { "hunks 7 lines apart do not", numbered(30), edit(30, { [5] = "five\n", [13] = "thirteen\n" }) },
  { "context 0", numbered(20), edit(20, { [5] = "five\n", [7] = "seven\n" }), 0 },
  { "context 1", numbered(20), edit(20, { [5] = "five\n", [9] = "nine\n" }), 1 },
  { "context 5", numbered(40), edit(40, { [5] = "five\n", [20] = "twenty\n" }), 5 },
  { "lines moved", "a\nb\nc\nd\ne\n", "c\nd\ne\na\nb\n" },
  { "repeated lines", "}\n\n}\n\n}\n", "}\n\n}\n\n}\n\n}\n" },
  { "blank lines inserted", "a\n\nb\n\nc\n", "a\n\nb\n\n\nc\n" },
  { "CRLF endings", "a\r\nb\r\nc\r\n", "a\r\nb\nc\r\n" },
  { "a block replaced", numbered(20), table.concat(lines(1, 8)) .. "x\ny\n" .. table.concat(lines(14, 20)) },
  { "all different", numbered(5), table.concat(lines(1, 7, "other %d\n")) },
}

describe("orch.textdiff", function()
  local dir
  lazy_setup(function() dir = support.tmpdir() end)
  lazy_teardown(function() support.remove_tree(dir) end)

  -- What GNU diff prints for the same texts.
  local function gnu_diff(old, new, context, from, to)
    support.write(dir .. "/old", old)
    support.write(dir .. "/new", new)
    local res = assert(proc.run({ "diff", "-U" .. (context or 3), "--label", from or "before",
      "--label", to or "after", dir .. "/old", dir .. "/new" }))
    assert(res.code == 0 or res.code == 1, res.stderr)
    return res.stdout
  end

  describe("prints what diff -u prints for", function()
    for _, case in ipairs(cases) do
      local name, old, new, context = table.unpack(case)
      it(name, function()
        local expected = gnu_diff(old, new, context)
        assert.is_true(#expected > 0)
        assert.equals(expected, textdiff.unified(old, new, { context = context }))
      end)
    end

    it("a 10,000-line file with 3 scattered changes", function()
      local old = numbered(10000)
      local t = lines(1, 10000)
      t[17] = "changed\n"
      t[5000] = nil
      table.remove(t, 5000)
      table.insert(t, 9100, "inserted\n")
      local new = table.concat(t)
      assert.equals(gnu_diff(old, new), textdiff.unified(old, new))
    end)

    it("random edits of texts with many repeated lines", function()
      -- A fixed seed: the same 150 pairs every run. Repeated lines are where
      -- diff algorithms differ in which of several equal scripts they print.
      local rng_state = 12345
      local function rand(n)
        rng_state = (rng_state * 1103515245 + 12345) % 2147483648
        return rng_state % n + 1
      end
      local alphabet = { "a\n", "b\n", "c\n", "}\n", "\n", "x\n" }
      for _ = 1, 150 do
        local a, b = {}, {}
        for i = 1, rand(40) - 1 do a[i] = alphabet[rand(#alphabet)] end
        for _, line in ipairs(a) do
          local r = rand(10)
          if r == 1 then  -- deleted
          elseif r == 2 then b[#b + 1] = alphabet[rand(#alphabet)]; b[#b + 1] = line
          elseif r == 3 then b[#b + 1] = alphabet[rand(#alphabet)]
          else b[#b + 1] = line end
        end
        local old, new = table.concat(a), table.concat(b)
        if rand(5) == 1 then old = old:gsub("\n$", "") end
        if rand(5) == 1 then new = new:gsub("\n$", "") end
        local context = rand(4) - 1
        assert.equals(gnu_diff(old, new, context), textdiff.unified(old, new, { context = context }),
          ("old %q new %q context %d"):format(old, new, context))
      end
    end)
  end)

  it("labels the header with from and to", function()
    local out = textdiff.unified("a\n", "b\n", { from = "/etc/app.ini (current)", to = "/etc/app.ini (new)" })
    assert.equals(gnu_diff("a\n", "b\n", 3, "/etc/app.ini (current)", "/etc/app.ini (new)"), out)
  end)

  it("treats nil as an absent file", function()
    assert.equals(gnu_diff("", "a\nb\n", 3, "/dev/null", "after"),
      textdiff.unified(nil, "a\nb\n", { from = "/dev/null" }))
    assert.equals(gnu_diff("a\nb", "", 3, "before", "/dev/null"),
      textdiff.unified("a\nb", nil, { to = "/dev/null" }))
  end)

  it("is empty for equal texts", function()
    assert.equals("", textdiff.unified("a\nb\n", "a\nb\n"))
    assert.equals("", textdiff.unified("", ""))
    assert.equals("", textdiff.unified(nil, nil))
    assert.equals("", textdiff.unified(nil, ""))
  end)

  it("does not print binary content", function()
    assert.equals("Binary files differ\n", textdiff.unified("a\0b", "a\0c"))
    assert.equals("Binary files differ\n", textdiff.unified("text\n", "\0"))
    assert.equals("", textdiff.unified("\0", "\0"))
  end)

  it("rejects what is not text", function()
    assert.has_error(function() textdiff.unified(1, "a") end, "old text must be a string or nil, got number")
    assert.has_error(function() textdiff.unified("a", {}) end, "new text must be a string or nil, got table")
    assert.has_error(function() textdiff.unified("a", "b", { context = -1 }) end,
      "context must be a non-negative integer, got -1")
  end)

  describe("stats", function()
    it("counts added and removed lines", function()
      assert.same({ 0, 0 }, { textdiff.stats("a\n", "a\n") })
      assert.same({ 1, 1 }, { textdiff.stats("a\nb\nc\n", "a\nB\nc\n") })
      assert.same({ 3, 0 }, { textdiff.stats(nil, "a\nb\nc\n") })
      assert.same({ 0, 2 }, { textdiff.stats("a\nb\n", nil) })
      assert.same({ 1, 1 }, { textdiff.stats("a\nb", "a\nb\n") })
      assert.same({ 2, 1 }, { textdiff.stats(numbered(10000), edit(10000, { [3] = "x\ny\n" })) })
    end)
  end)
end)
