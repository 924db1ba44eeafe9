-- validate_spec.lua: checking content before it is installed.
local support = require("spec.helpers.support")
local fs = require("orch.core.fs")
local validate = require("orch.validate")

-- { kind, content, expected message (nil: valid) [, true: it is a pattern] }
local cases = {
  { "json", '{"a": 1, "b": [true, null]}' },
  { "json", "[]" },
  { "json", '{\n  "a": 1,\n  "b": 2\n  "c": 3\n}',
    "invalid JSON at line 4, column 3: Expected comma or object end but found T_STRING" },
  { "json", "", "invalid JSON at line 1, column 1: Expected value but found T_END" },
  { "json", "[1, 2", "invalid JSON at line 1, column 6: Expected comma or array end but found T_END" },
  { "json", '{\n"a": tru\n}', "invalid JSON at line 2, column 6: Expected value but found invalid token" },

  { "yaml", "a: 1\nb: [1, 2]\n" },
  { "yaml", "a: 1\n---\nb: 2\n" },
  { "yaml", "" },
  { "yaml", "a: 1\nb: [1, 2\n",
    "invalid YAML at line 3, column 1: did not find expected ',' or ']' (while parsing a flow sequence at 2:4)" },
  { "yaml", "a: b: c\n", "invalid YAML at line 1, column 5: mapping values are not allowed in this context" },
  { "yaml", "a: 1\na: 2\n", "invalid YAML at line 2, column 1: duplicate key 'a'" },
  { "yaml", "a:\n\t- 1\n", "invalid YAML at line 2, column 1: found character that cannot start any token" },

  { "sh", "echo hello\nif true; then echo yes; fi\n" },
  { "sh", "" },
  -- Patterns: the words are the shell's own (dash: "sh: 3: Syntax error: ...").
  { "sh", "if true; then\necho hi\n", "^invalid shell: sh: [%a ]*3: [^\n]*$", true },
  { "sh", "echo (\n", "^invalid shell: sh: [%a ]*%d: [^\n]*$", true },

  { "env", "A=1\n# comment\n\n  # indented comment\nexport B=\"x y\"\nC='q # r'\nD=\nE=\"esc \\\" quote\" # note\r\n" },
  { "env", "" },
  { "env", "A=1\nB-C=2\n", "invalid env file at line 2: invalid variable name 'B-C'" },
  { "env", "1A=x\n", "invalid env file at line 1: invalid variable name '1A'" },
  { "env", "A = 1\n", "invalid env file at line 1: invalid variable name 'A '" },
  { "env", "A=1\n\nB=\"open\n", "invalid env file at line 3: unterminated double quote" },
  { "env", "A='open", "invalid env file at line 1: unterminated single quote" },
  { "env", "A=\"a\\\"\n", "invalid env file at line 1: unterminated double quote" },
  { "env", "A='x' y\n", "invalid env file at line 1: unexpected text after the closing quote" },
  { "env", "A=1\njust words\n", "invalid env file at line 2: expected KEY=value" },
}

describe("orch.validate", function()
  describe("check", function()
    for _, case in ipairs(cases) do
      local kind, content, expected, is_pattern = table.unpack(case)
      local what = ("%s %s %q"):format(expected and "rejects" or "accepts", kind, content)
      it(what, function()
        if is_pattern then
          local ok, msg = validate.check(kind, content)
          assert.is_nil(ok)
          assert.matches(expected, msg)
        elseif expected then
          assert.same({ nil, expected }, { validate.check(kind, content) })
        else
          assert.same({ true }, { validate.check(kind, content) })
        end
      end)
    end
  end)

  it("names the file when opts.name is given", function()
    assert.same({ nil, "/etc/app.json: invalid JSON at line 1, column 1: Expected value but found T_END" },
      { validate.check("json", "", { name = "/etc/app.json" }) })
  end)

  describe("a function", function()
    it("passes when it returns true", function()
      assert.is_true(validate.check(function(c) return c:find("port") ~= nil end, "port = 1"))
    end)

    it("fails with its message", function()
      local fn = function() return false, "port is missing" end
      assert.same({ nil, "validation failed: port is missing" }, { validate.check(fn, "x") })
    end)

    it("fails without a message", function()
      assert.same({ nil, "validation failed: the validator returned nil" },
        { validate.check(function() end, "x") })
    end)

    it("fails when it raises", function()
      local ok, msg = validate.check(function() error("port out of range") end, "x")
      assert.is_nil(ok)
      assert.matches("^validation failed: .*validate_spec%.lua:%d+: port out of range$", msg)
      assert.same({ nil, "validation failed: plain" }, { validate.check(function() error("plain", 0) end, "x") })
    end)
  end)

  describe("a command", function()
    -- The command records the temp path it was given, so we can check that
    -- the copy is gone afterwards.
    local function run_recording(content)
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local log = dir .. "/path"
      local ok, msg = validate.check("echo %s > '" .. log .. "'; grep -q needle %s", content,
        { name = "/etc/app/app.conf" })
      local path = support.read(log):gsub("\n$", "")
      return ok, msg, path
    end

    it("passes on exit code 0, and removes the temp copy", function()
      local ok, msg, path = run_recording("hay needle hay\n")
      assert.same({ true }, { ok, msg })
      assert.matches("/app%.conf$", path)
      assert.is_nil(fs.stat(path))
      assert.is_nil(fs.stat((path:match("^(.*)/"))))
    end)

    it("fails on another exit code, and removes the temp copy", function()
      local ok, msg, path = run_recording("hay\n")
      assert.is_nil(ok)
      assert.matches("^/etc/app/app%.conf: validation command failed %(exit code 1%): echo /tmp/", msg)
      assert.is_nil(fs.stat(path))
    end)

    it("shows the tail of stderr", function()
      local ok, msg = validate.check("cat %s >/dev/null; echo 'bad line 3' >&2; exit 3", "x")
      assert.is_nil(ok)
      assert.matches("^validation command failed %(exit code 3%): cat %S+ >/dev/null; echo 'bad line 3' >&2; exit 3\nbad line 3$",
        msg)
    end)

    it("uses the caller's run and write_temp", function()
      local calls = {}
      local opts = {
        write_temp = function(content)
          calls[#calls + 1] = "write " .. content
          return "/remote/tmp/it's here", function() calls[#calls + 1] = "cleanup" end
        end,
        run = function(cmdline)
          calls[#calls + 1] = "run " .. cmdline
          return { code = 2, stdout = "", stderr = "line 1\nnginx: [emerg] unexpected \"}\"\n" }
        end,
      }
      local ok, msg = validate.check("nginx -t -c %s", "events {}", opts)
      assert.is_nil(ok)
      assert.equals("validation command failed (exit code 2): nginx -t -c '/remote/tmp/it'\\''s here'\n"
        .. "line 1\nnginx: [emerg] unexpected \"}\"", msg)
      assert.same({ "write events {}", "run nginx -t -c '/remote/tmp/it'\\''s here'", "cleanup" }, calls)
    end)

    it("cleans up when run raises", function()
      local cleaned = false
      local opts = {
        write_temp = function() return "/t/x", function() cleaned = true end end,
        run = function() error("connection lost", 0) end,
      }
      assert.has_error(function() validate.check("check %s", "x", opts) end, "connection lost")
      assert.is_true(cleaned)
    end)

    it("fails when the temp copy cannot be written", function()
      local opts = { write_temp = function() return nil, "/t: Permission denied" end, run = error }
      assert.same({ nil, "validation command: cannot write a temp file: /t: Permission denied" },
        { validate.check("check %s", "x", opts) })
    end)
  end)

  it("rejects an unknown kind", function()
    assert.has_error(function() validate.check("xml", "x") end,
      "validate must be json, yaml, sh, env, a function or a command with %s, got 'xml'")
    assert.has_error(function() validate.check(42, "x") end,
      "validate must be json, yaml, sh, env, a function or a command with %s, got number")
    assert.has_error(function() validate.check("json", nil) end,
      "content to validate must be a string, got nil")
  end)
end)
