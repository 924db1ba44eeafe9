local yaml = require("orch.core.yaml")
local support = require("spec.helpers.support")

local null = yaml.null

-- input -> expected value, compared with assert.same (1 == 1.0 there:
-- number types have their own table below).
local values = {
  { "a plain string", "hello world", "hello world" },
  { "an empty stream", "", nil },
  { "a stream of comments", "# nothing\n", nil },
  { "a bare document marker", "---\n", null },
  { "null forms", "[null, Null, NULL, ~, ]", { null, null, null, null } },
  { "an empty value", "a:\nb: 1\n", { a = null, b = 1 } },
  { "bools", "[true, True, TRUE, false, False, FALSE]",
    { true, true, true, false, false, false } },
  { "1.1 bools are strings", "[yes, no, on, off, y, n]",
    { "yes", "no", "on", "off", "y", "n" } },
  { "decimal ints", "[0, 42, -17, +12, 0644]", { 0, 42, -17, 12, 644 } },
  { "octal and hex", "[0o17, 0x1F, 0xff]", { 15, 31, 255 } },
  { "int64 bounds", "[9223372036854775807, -9223372036854775808]",
    { math.maxinteger, math.mininteger } },
  { "past int64", "[0x40000000000000000, 0o1000000000000000000000, 18446744073709551616]",
    { 2.0^66, 2.0^63, 2.0^64 } },
  { "floats", "[1.5, -2e3, .5, 1., +1.5e-2, 1E3]",
    { 1.5, -2000.0, 0.5, 1.0, 0.015, 1000.0 } },
  { "infinities", "[.inf, .Inf, .INF, -.inf, +.inf]",
    { math.huge, math.huge, math.huge, -math.huge, math.huge } },
  { "not numbers", "[0x, -0x1F, 1_000, 1:20, 0o8, 1e, .]",
    { "0x", "-0x1F", "1_000", "1:20", "0o8", "1e", "." } },
  { "quoted scalars stay strings",
    [=[['1', "2", 'true', "null", '~', "", '0x1F', ".inf"]]=],
    { "1", "2", "true", "null", "~", "", "0x1F", ".inf" } },
  { "escapes in double quotes", [["a\tb\n\u00e9"]], "a\tb\n\u{e9}" },
  { "a literal block scalar", "k: |\n  one\n  two\n", { k = "one\ntwo\n" } },
  { "a folded block scalar", "k: >-\n  one\n  two\n", { k = "one two" } },
  { "a block scalar of digits", "k: |\n  42\n", { k = "42\n" } },
  { "flow collections", "{a: [1, 2, {b: c}], d: {}, e: []}",
    { a = { 1, 2, { b = "c" } }, d = {}, e = {} } },
  { "block collections", "a:\n  - 1\n  - x: y\n    z: 2\nb: c\n",
    { a = { 1, { x = "y", z = 2 } }, b = "c" } },
  { "nulls keep a sequence's length", "- 1\n-\n- ~\n- 4\n", { 1, null, null, 4 } },
  { "resolved keys", "1: int\n2.5: float\ntrue: bool\n'1': str\n",
    { [1] = "int", [2.5] = "float", [true] = "bool", ["1"] = "str" } },
  { "!!str", "[!!str 12, !!str true, !!str ~]", { "12", "true", "~" } },
  { "!!int", "[!!int '12', !!int 0x10]", { 12, 16 } },
  { "!!float", "[!!float 1, !!float '2.5', !!float .inf]", { 1.0, 2.5, math.huge } },
  { "!!bool", "[!!bool 'true', !!bool FALSE]", { true, false } },
  { "!!null", "[!!null '', !!null null]", { null, null } },
  { "!!map and !!seq", "!!map {a: !!seq [1]}", { a = { 1 } } },
  { "the non-specific tag is a string", "! 12", "12" },
  { "unknown tags resolve as untagged", "[!foo 12, !!binary aGk=, !bar 'x']",
    { 12, "aGk=", "x" } },
  { "an alias to a scalar", "a: &p 8080\nb: *p\n", { a = 8080, b = 8080 } },
  { "an alias to a collection", "a: &l [1, 2]\nb: *l\n", { a = { 1, 2 }, b = { 1, 2 } } },
  { "a merge key", "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n",
    { base = { x = 1, y = 2 }, m = { x = 1, y = 3 } } },
  { "a merge list: earlier sources win",
    "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nm:\n  <<: [*a, *b]\n",
    { a = { x = 1 }, b = { x = 2, y = 2 }, m = { x = 1, y = 2 } } },
  { "keys after a merge win too", "a: &a {x: 1}\nm: {<<: *a, x: 2}\n",
    { a = { x = 1 }, m = { x = 2 } } },
  { "an inline merge", "m:\n  <<: {x: 1}\n  y: 2\n", { m = { x = 1, y = 2 } } },
  { "a quoted << is a key", "'<<': 1\n", { ["<<"] = 1 } },
  { "an Ansible inventory", [[
all:
  vars:
    ansible_user: deploy
  children:
    web:
      hosts:
        web01:
          ansible_host: 10.0.0.1
          ansible_port: 2222
        web02:
    db:
      hosts:
        db01: { ansible_host: "10.0.0.3" }
]], { all = {
      vars = { ansible_user = "deploy" },
      children = {
        web = { hosts = { web01 = { ansible_host = "10.0.0.1", ansible_port = 2222 },
                          web02 = null } },
        db = { hosts = { db01 = { ansible_host = "10.0.0.3" } } },
      } } } },
  { "only the first document", "a: 1\n---\nb: 2\n", { a = 1 } },
}

-- input -> math.type of the value
local types = {
  { "42", "integer" }, { "-0", "integer" }, { "0644", "integer" }, { "0o17", "integer" },
  { "0x7FFFFFFFFFFFFFFF", "integer" }, { "1.0", "float" }, { "1e3", "float" },
  { "!!float 1", "float" }, { "!!float 0x10", "float" },
  { "9223372036854775808", "float" }, { "0x8000000000000000", "float" },
  { "-9223372036854775809", "float" }, { "0x40000000000000000", "float" },
  { "0o1000000000000000000000", "float" },
}

-- input -> exact message: "name:line:col: reason"
local errors = {
  { "bad indentation", "a:\n  b: 1\n c: 2\n",
    "bad.yaml:3:2: did not find expected key (while parsing a block mapping at 1:1)" },
  { "a value after a value", "a: b: c\n",
    "bad.yaml:1:5: mapping values are not allowed in this context" },
  { "an unclosed quote", "a: 'abc\nb: 1\n",
    "bad.yaml:3:1: found unexpected end of stream (while scanning a quoted scalar at 1:4)" },
  { "tab indentation", "a:\n\tb: 1\n",
    "bad.yaml:2:1: found character that cannot start any token" },
  { "an unclosed flow sequence", "a: [1, 2\n",
    "bad.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence at 1:4)" },
  { "invalid UTF-8", "a: 1\nb: \xff\n", "bad.yaml:2:4: invalid leading UTF-8 octet" },
  { "an unknown alias", "a: 1\nb: *nope\n", "bad.yaml:2:4: unknown alias '*nope'" },
  { "an anchor from another document", "a: &x 1\n---\nb: *x\n",
    "bad.yaml:3:4: unknown alias '*x'", true },
  { "a duplicate key", "a: 1\nb: 2\na: 3\n", "bad.yaml:3:1: duplicate key 'a'" },
  { "a duplicate in flow", "{x: 1, 'x': 2}", "bad.yaml:1:8: duplicate key 'x'" },
  { "a duplicate resolved key", "1: a\n0x1: b\n", "bad.yaml:2:1: duplicate key '0x1'" },
  { "a bad !!int", "port: !!int eighty\n", "bad.yaml:1:7: invalid !!int value 'eighty'" },
  { "a bad !!float", "- !!float x1\n", "bad.yaml:1:3: invalid !!float value 'x1'" },
  { "a bad !!bool", "- !!bool yes\n", "bad.yaml:1:3: invalid !!bool value 'yes'" },
  { "a bad !!null", "- !!null 0\n", "bad.yaml:1:3: invalid !!null value '0'" },
  { "a scalar tag on a collection", "a: !!str [1]\n", "bad.yaml:1:4: !!str tag on a sequence" },
  { "a merge of a scalar", "m:\n  <<: 1\n",
    "bad.yaml:2:7: merge value must be a mapping or a list of mappings" },
  { "a merge of a list of lists", "m:\n  <<: [[1]]\n",
    "bad.yaml:2:7: merge value must be a mapping or a list of mappings" },
  { "a NaN key", ".nan: 1\n", "bad.yaml:1:1: NaN is not a valid key" },
}

describe("orch.core.yaml", function()
  for _, case in ipairs(values) do
    it("loads " .. case[1], function()
      assert.same(case[3], yaml.load(case[2]))
    end)
  end

  for _, case in ipairs(types) do
    it("reads " .. case[1] .. " as " .. case[2], function()
      assert.equals(case[2], math.type(yaml.load(case[1])))
    end)
  end

  it("reads .nan forms as NaN", function()
    for _, v in ipairs(yaml.load("[.nan, .NaN, .NAN]")) do
      assert.is_true(v ~= v)
    end
    assert.same({ "-.nan" }, yaml.load("[-.nan]"))
  end)

  it("makes null the light userdata NULL, cjson.null", function()
    assert.equals("userdata", type(yaml.null))
    assert.equals(require("cjson").null, yaml.null)
    assert.equals(yaml.null, yaml.load("~"))
  end)

  it("gives an aliased collection as the same table", function()
    local v = yaml.load("a: &x {k: [1]}\nb: *x\nc: [*x, *x]\n")
    assert.equals(v.a, v.b)
    assert.equals(v.a, v.c[1])
    assert.equals(v.a, v.c[2])
  end)

  it("lets a later anchor of the same name win", function()
    assert.same({ 1, 1, 2, 2 }, yaml.load("[&a 1, *a, &a 2, *a]"))
  end)

  it("resolves merge keys through nested merges", function()
    local v = yaml.load([[
base: &base { user: deploy, port: 22 }
eu: &eu { <<: *base, region: eu }
web01: { <<: *eu, port: 2222 }
]])
    assert.same({ user = "deploy", port = 2222, region = "eu" }, v.web01)
    assert.same({ user = "deploy", port = 22 }, v.base)  -- sources untouched
  end)

  it("loads every document of a stream", function()
    assert.same({ { a = 1 }, { b = 2 }, 3, null, "x" },
      yaml.load_all("a: 1\n---\nb: 2\n...\n--- 3\n---\n--- x\n"))
    assert.same({}, yaml.load_all(""))
    assert.same({ { 1 } }, yaml.load_all("[1]"))
  end)

  for _, case in ipairs(errors) do
    it("raises name:line:col for " .. case[1], function()
      local load = case[4] and yaml.load_all or yaml.load
      local ok, err = pcall(load, case[2], "bad.yaml")
      assert.is_false(ok)
      assert.equals(case[3], err)
    end)
  end

  it("names a string <string> by default", function()
    local ok, err = pcall(yaml.load, "a: [")
    assert.is_false(ok)
    assert.matches("^<string>:2:1: ", err)
  end)

  it("finds errors in a later document of a stream", function()
    local ok, err = pcall(yaml.load_all, "a: 1\n---\nb: [\n", "s.yaml")
    assert.is_false(ok)
    assert.matches("^s%.yaml:4:1: ", err)
  end)

  it("caps nesting instead of exhausting the stack", function()
    assert.equals(1, #yaml.load(string.rep("[", 1000) .. string.rep("]", 1000)))
    for _, text in ipairs({ string.rep("[", 1001) .. string.rep("]", 1001),
                            string.rep("{a: ", 100000) }) do
      local ok, err = pcall(yaml.load, text, "deep.yaml")
      assert.is_false(ok)
      assert.matches("^deep%.yaml:1:%d+: nesting too deep", err)
    end
  end)

  it("survives many failed loads (the parser is freed)", function()
    for _ = 1, 500 do
      assert.is_false(pcall(yaml.load, "a: &x {b: [1, 2]}\nc: *x\nd: *y\n"))
      assert.is_false(pcall(yaml.load_all, "a: 1\n---\nb: [1, {c: 'x\n"))
    end
    collectgarbage()
    assert.same({ a = 1 }, yaml.load("a: 1"))
  end)

  it("rejects a non-string argument", function()
    assert.has_error(function() yaml.load({}) end)
  end)

  describe("load_file", function()
    it("loads the first document, or all", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      support.write(dir .. "/hosts.yaml", "web01:\n  port: 22\n---\ndb01:\n")
      assert.same({ web01 = { port = 22 } }, yaml.load_file(dir .. "/hosts.yaml"))
      assert.same({ { web01 = { port = 22 } }, { db01 = null } },
        yaml.load_file_all(dir .. "/hosts.yaml"))
    end)

    it("loads an empty file as nil", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      support.write(dir .. "/empty.yaml", "")
      assert.is_nil(yaml.load_file(dir .. "/empty.yaml"))
      assert.same({}, yaml.load_file_all(dir .. "/empty.yaml"))
    end)

    it("raises with the path for invalid YAML", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local path = dir .. "/hosts.yaml"
      support.write(path, "all:\n  hosts:\n    web01: x: 1\n")
      local ok, err = pcall(yaml.load_file, path)
      assert.is_false(ok)
      assert.equals(path .. ":3:13: mapping values are not allowed in this context", err)
    end)

    it("fails with ENOENT for a missing file", function()
      local v, msg, code = yaml.load_file("/nonexistent/hosts.yaml")
      assert.is_nil(v)
      assert.equals("/nonexistent/hosts.yaml: No such file or directory", msg)
      assert.equals("ENOENT", code)
      v, msg, code = yaml.load_file_all("/nonexistent/hosts.yaml")
      assert.is_nil(v)
      assert.equals("ENOENT", code)
    end)

    it("fails with EISDIR for a directory", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local v, msg, code = yaml.load_file(dir)
      assert.is_nil(v)
      assert.equals(dir .. ": Is a directory", msg)
      assert.equals("EISDIR", code)
    end)
  end)
end)
