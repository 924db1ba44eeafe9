-- template_spec.lua: the template language: output, control flow, whitespace,
-- error positions and the render_file cache.
local support = require("spec.helpers.support")
local template = require("orch.template")

-- { name, source, vars, expected output }
local cases = {
  { "an expression", "Hello {{ name }}!", { name = "World" }, "Hello World!" },
  { "nil renders empty", "[{{ missing }}][{{ nil }}]", {}, "[][]" },
  { "false renders false", "{{ flag }}", { flag = false }, "false" },
  { "numbers", "{{ 1 + 2 }} {{ 1.5 }} {{ 7 // 2 }} {{ port }}", { port = 8080 }, "3 1.5 3 8080" },
  { "several values: the first", "{{ string.find('abc', 'b') }}", {}, "2" },
  { "a numeric for", "{% for i = 1, 3 do %}{{ i }},{% end %}", {}, "1,2,3," },
  { "ipairs over a list",
    "{% for _, u in ipairs(upstreams) do %}\n  server {{ u }};\n{% end %}\n",
    { upstreams = { "a:80", "b:80" } }, "  server a:80;\n  server b:80;\n" },
  { "if: then branch", "{% if n == 1 then %}one{% elseif n == 2 then %}two{% else %}many{% end %}",
    { n = 1 }, "one" },
  { "if: elseif branch", "{% if n == 1 then %}one{% elseif n == 2 then %}two{% else %}many{% end %}",
    { n = 2 }, "two" },
  { "if: else branch", "{% if n == 1 then %}one{% elseif n == 2 then %}two{% else %}many{% end %}",
    { n = 5 }, "many" },
  { "a missing variable is falsy", "{% if debug then %}debug{% else %}quiet{% end %}", {}, "quiet" },
  { "locals", "{% local n = #hosts %}{{ n }} hosts", { hosts = { 1, 2, 3 } }, "3 hosts" },
  { "globals set by the template", "{% x = 1 %}{% x = x + 1 %}{{ x }}", {}, "2" },
  { "a local function", "{% local function up(s) return s:upper() end %}{{ up('a') }}", {}, "A" },
  { "a Lua comment at the end of a statement", "{% x = 1 -- why %}{{ x }}", {}, "1" },
  { "Lua comments in a multi-line statement", "{% x = 1 -- one\n y = 2 -- two %}{{ x + y }}", {}, "3" },
  { "a line comment ends at the tag's end", "{% x = 1 -- note %} text", {}, " text" },
  { "a long Lua comment", "{% x = 1 --[[ %} ]] %}{{ x }}", {}, "1" },
  { "a comment", "a{# not shown #}b", {}, "ab" },
  { "a multi-line comment", "a{# one\ntwo #}b", {}, "ab" },
  { "vars shadow the base", "{{ type }}", { type = "web" }, "web" },
  { "the base", "{{ string.upper('x') }} {{ math.max(1, 2) }} {{ tostring(nil) }} {{ type(os.time()) }}",
    {}, "X 2 nil number" },
  { "json()", "{{ json({ 1, 2 }) }}", {}, "[1,2]" },
  { "quote()", "{{ quote(\"it's\") }}", {}, "'it'\\''s'" },

  -- whitespace control
  { "{{- strips before", "a \n {{- x }}", { x = 1 }, "a1" },
  { "-}} strips after", "{{ x -}} \n b", { x = 1 }, "1b" },
  { "{%- strips before", "a \n {%- if true then %}b{% end %}", {}, "ab" },
  { "-%} strips after", "{% if true then -%} \n b{% end %}", {}, "b" },
  { "{#- strips before", "a \n {#- c #}b", {}, "ab" },
  { "-#} strips after", "a{# c -#} \n b", {}, "ab" },
  { "both sides", "a  {{- 1 -}}  b\n {%- if true then -%}\n c {#- x -#} d{% end %}", {}, "a1bcd" },
  { "a minus in an expression is not a marker", "{{ 5 - 2 }}{{ -x }}", { x = 1 }, "3-1" },

  -- standalone tag lines vanish; other lines keep their whitespace
  { "standalone tags", "a\n{% if true then %}\nb\n{% end %}\nc\n", {}, "a\nb\nc\n" },
  { "indented standalone tags",
    "list:\n  {% for i = 1, 2 do %}\n  - {{ i }}\n  {% end %}\nend\n", {}, "list:\n  - 1\n  - 2\nend\n" },
  { "a standalone comment line", "a\n   {# note #}   \nb\n", {}, "a\nb\n" },
  { "several tags on one line", "a\n  {% if true then %}{% if true then %}  \nb\n{% end %}{# x #}{% end %}\n", {},
    "a\nb\n" },
  { "a standalone tag at the end without a newline", "a\n  {% x = 1 %}", {}, "a\n" },
  { "a standalone tag at the start", "{% x = 1 %}\na", {}, "a" },
  { "a multi-line standalone tag", "a\n  {%\n  x = 1\n  %}\nb{{ x }}\n", {}, "a\nb1\n" },
  { "CRLF standalone lines", "a\r\n{% if true then %}\r\nb\r\n{% end %}\r\n", {}, "a\r\nb\r\n" },
  { "an expression line is kept", "  {{ nothing }}\n", {}, "  \n" },
  { "a tag beside text is kept in place", "a {% if true then %}b{% end %}\n", {}, "a b\n" },
  { "a tag beside an expression is kept", "{% if true then %}{{ 1 }}\n{% end %}", {}, "1\n" },
  { "blank lines stay", "a\n\n  \nb", {}, "a\n\n  \nb" },

  -- text that looks like tags, and code that holds delimiters
  { "literal braces and percents", "{ a } 100% {x} %} }} #} {", {}, "{ a } 100% {x} %} }} #} {" },
  { "}} in a double-quoted string", '{{ "a}}b" }}', {}, "a}}b" },
  { "%} in a single-quoted string", "{% local s = 'x %} y' %}{{ s }}", {}, "x %} y" },
  { "an escaped quote", [[{{ "q\"}}" }}]], {}, 'q"}}' },
  { "a long string", "{{ [[a}}b]] }}{{ [==[c%}]]d]==] }}", {}, "a}}bc%}]]d" },
  { "a table constructor before }}", "{{ #{1, 2}}}", {}, "2" },
  { "{{ printed through an expression", '{{ "{{" }} x {{ "}}" }}', {}, "{{ x }}" },
  { "a multi-line expression", "{{\n  a +\n  b\n}}", { a = 1, b = 2 }, "3" },
  { "a multi-line statement", "{% if\n  x\nthen %}yes{% end %}", { x = true }, "yes" },
  { "text with newlines and quotes", 'line "1"\n\tline \\2\0\n', {}, 'line "1"\n\tline \\2\0\n' },
}

describe("orch.template", function()
  describe("renders", function()
    for _, case in ipairs(cases) do
      local name, source, vars, expected = table.unpack(case)
      it(name, function()
        assert.equals(expected, template.render(source, vars, "t.tmpl"))
      end)
    end
  end)

  it("renders without vars", function()
    assert.equals("x=", template.render("x={{ x }}"))
  end)

  it("compiles once and renders many times", function()
    local before = template.stats.compiles
    local render = template.compile("{{ a }}-{{ b }}", "t")
    assert.equals("1-2", render({ a = 1, b = 2 }))
    assert.equals("x-", render({ a = "x" }))
    assert.equals(before + 1, template.stats.compiles)
  end)

  it("does not modify the vars it is given", function()
    local vars = { a = 1, list = { 1 } }
    local out = template.render("{% a = 2; b = 3 %}{{ a }}{{ b }}", vars)
    assert.equals("23", out)
    assert.same({ a = 1, list = { 1 } }, vars)
    assert.is_nil(getmetatable(vars))
  end)

  it("starts every render from fresh globals", function()
    local render = template.compile("{% if seen then %}again{% end %}{% seen = true %}", "t")
    assert.equals("", render({}))
    assert.equals("", render({}))
  end)

  it("cannot change the libraries it shares with other renders", function()
    assert.same({ false, "t:2: the string library is read-only" },
      { pcall(template.render, "\n{% string.upper = nil %}", {}, "t") })
    assert.same({ false, "t:1: the os library is read-only" },
      { pcall(template.render, "{% os.exit = 1 %}", {}, "t") })
    assert.is_function(string.upper)
    assert.equals("X", template.render("{{ string.upper('x') }}"))
  end)

  it("rejects vars that are not a table", function()
    local render = template.compile("x", "t")
    assert.has_error(function() render("nope") end, "template vars must be a table, got string")
  end)

  describe("syntax errors name the template line", function()
    local function compile_error(source, name)
      local ok, err = pcall(template.compile, source, name or "t.tmpl")
      assert.is_false(ok)
      return err
    end

    it("of a for without end", function()
      assert.equals("t.tmpl:3: 'end' expected (to close 'for' at line 2) at the end of the template",
        compile_error("line1\n{% for i = 1, 3 do %}\nx\n"))
    end)

    it("of a bad expression on line 3", function()
      assert.equals("t.tmpl:3: unexpected symbol near '}}'",
        compile_error("a\nb\nx = {{ 1 + }}\nd\n"))
    end)

    it("of a statement missing its then", function()
      assert.equals("t.tmpl:2: 'then' expected at the end of the tag",
        compile_error("a\n{% if x %}b{% end %}"))
    end)

    it("after long text and multi-line tags", function()
      local src = "a\n\n{{\nx\n}}\n{#\n\n#}\n{% if true then\n %}\n" .. "text\n" .. "{% end end %}\n"
      assert.equals("t.tmpl:12: <eof> expected near 'end'", compile_error(src))
    end)

    it("of an unclosed tag", function()
      assert.equals("t.tmpl:2: '{{' is not closed by '}}'", compile_error("a\nb {{ x\n\n"))
      assert.equals("t.tmpl:1: '{%' is not closed by '%}'", compile_error("{% if x then"))
      assert.equals("t.tmpl:1: '{#' is not closed by '#}'", compile_error("{# note"))
    end)

    it("of an unfinished string", function()
      assert.equals("t.tmpl:1: unfinished string in '{{' tag", compile_error("{{ 'a }}"))
    end)

    it("with a long path in full", function()
      local name = "/srv/" .. ("very-long-directory-name/"):rep(4) .. "app.ini.tmpl"
      assert.equals(name .. ":1: unexpected symbol near '}}'", compile_error("{{ 1 + }}", name))
    end)
  end)

  describe("runtime errors name the template line", function()
    local function render_error(source, vars, name)
      local ok, err = pcall(template.render, source, vars or {}, name or "app.ini.tmpl")
      assert.is_false(ok)
      return err
    end

    it("of indexing nil on line 5", function()
      assert.equals("app.ini.tmpl:5: attempt to index a nil value (global 'cfg')",
        render_error("[app]\n{% if true then %}\nname = x\n\nport = {{ cfg.port }}\n{% end %}\n"))
    end)

    it("of error() in the template", function()
      assert.equals("app.ini.tmpl:2: port is required",
        render_error("a\n{% assert(port, 'port is required') %}\n"))
    end)

    it("of a library function it calls", function()
      assert.equals("app.ini.tmpl:3: bad argument #1 to 'rep' (string expected, got table)",
        render_error("\n\n{{ string.rep({}, 2) }}"))
    end)

    it("of a helper passed in vars", function()
      local err = render_error("\n{{ helper() }}", { helper = function() error("boom") end })
      assert.matches("^app%.ini%.tmpl:2: .*template_spec%.lua:%d+: boom$", err)
    end)

    it("inside a function the template defines", function()
      assert.equals("app.ini.tmpl:2: attempt to perform arithmetic on a nil value (local 'x')",
        render_error("{% local function f(x)\n return x + 1 end %}\n{{ f() }}"))
    end)

    it("with a long path in full", function()
      local name = "/srv/" .. ("very-long-directory-name/"):rep(4) .. "app.ini.tmpl"
      assert.equals(name .. ":1: attempt to index a nil value (global 'cfg')",
        render_error("{{ cfg.port }}", {}, name))
    end)

    it("keeping error values that are not strings", function()
      local obj = {}
      local ok, err = pcall(template.render, "{% error(obj) %}", { obj = obj })
      assert.is_false(ok)
      assert.equals(obj, err)
    end)
  end)

  describe("render_file", function()
    it("compiles a file once and again only when it changes", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local path = dir .. "/app.ini.tmpl"
      support.write(path, "port = {{ port }}\n")
      local before = template.stats.compiles
      assert.equals("port = 1\n", template.render_file(path, { port = 1 }))
      assert.equals("port = 2\n", template.render_file(path, { port = 2 }))
      assert.equals(before + 1, template.stats.compiles)
      support.write(path, "listen = {{ port }}\n")
      assert.equals("listen = 3\n", template.render_file(path, { port = 3 }))
      assert.equals(before + 2, template.stats.compiles)
    end)

    it("names the file in errors", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local path = dir .. "/bad.tmpl"
      support.write(path, "a\n{{ cfg.x }}\n")
      local ok, err = pcall(template.render_file, path, {})
      assert.is_false(ok)
      assert.equals(path .. ":2: attempt to index a nil value (global 'cfg')", err)
    end)

    it("fails on a missing file", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local path = dir .. "/missing.tmpl"
      local out, err, code = template.render_file(path, {})
      assert.is_nil(out)
      assert.equals(path .. ": No such file or directory", err)
      assert.equals("ENOENT", code)
    end)
  end)
end)
