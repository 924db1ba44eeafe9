local support = require("spec.helpers.support")
local leaks = require("spec.helpers.leaks")
local fs = require("orch.core.fs")

-- Issue 11: a secret a stage prints is masked in every log line orch
-- keeps or reports (the console, --json, the log files, the store, the
-- JUnit report, `pipeline show`), also base64- or URL-encoded, also when it
-- comes through a Lua error; and secret() works in env and sh().
describe("secrets in pipelines (#11)", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local TOKEN = "s3cr3t-v@lue/x+Q"
  local TOKEN_ENV = "tok-from-env-98765"

  local said = {}
  local function orch(...)
    local args = { ... }
    local opts = type(args[#args]) == "table" and table.remove(args) or {}
    opts.env = opts.env or {}
    opts.env.CI_TOKEN = TOKEN_ENV
    args[#args + 1] = opts
    local res = support.orch(table.unpack(args))
    said[#said + 1] = res.stdout .. res.stderr
    return res
  end

  it("masks a secret in every form, wherever a stage's output goes", function()
    support.write(dir .. "/ci.lua", [=[
local token = secret("]=] .. TOKEN .. [=[")
pipeline "p" {
  env = { TOKEN = token, FROM_ENV = secret(os.getenv("CI_TOKEN")) },
  stage "echo" { sh = {
    'echo "clear: $TOKEN"',
    'printf %s "$TOKEN" | base64',
    'printf x%s "$TOKEN" | base64',
    'printf xy%s "$TOKEN" | base64',
    'printf "%s\n" "$TOKEN" | sed "s/@/%40/; s,/,%2F,; s/+/%2B/"',
    'echo "$FROM_ENV"',
    'test "$TOKEN" = "]=] .. TOKEN .. [=["',
  } },
  stage "sh" { env = { STAGE_TOKEN = token }, run = function(ctx)
    local r = ctx.sh("printf %s " .. token)                    -- a secret in the command itself
    assert(r.stdout == "]=] .. TOKEN .. [=[", "sh got " .. r.stdout)
    ctx.sh(token .. "" == token and 'test "$STAGE_TOKEN" = "$TOKEN"')
    sh("test " .. token .. ' = "$TOKEN"', { env = { TOKEN = token } })   -- the playbook's own sh
    ctx.log("logged " .. token)
  end },
  stage "boom" { needs = { "sh" }, run = function(ctx) error("it broke with " .. token) end },
  stage "plain" { needs = { "echo" }, run = function(ctx) error("plain error: ]=] .. TOKEN .. [=[") end },
}]=])
    local res = orch("pipeline", "run", "p", "-f", dir .. "/ci.lua", "--junit", dir .. "/report.xml")
    assert.equals(1, res.code, res.stdout .. res.stderr)
    assert.matches("ok%s+echo", res.stdout)
    assert.matches("ok%s+sh", res.stdout)
    assert.matches("(sensitive)", res.stdout, 1, true)
    orch("pipeline", "run", "p", "-f", dir .. "/ci.lua", "--json")
    orch("pipeline", "show", "1", "-f", dir .. "/ci.lua")
    orch("pipeline", "show", "2", "-f", dir .. "/ci.lua", "--json")
    orch("pipeline", "history", "-f", dir .. "/ci.lua")

    local printed = leaks.in_text(table.concat(said, "\n"), { TOKEN, TOKEN_ENV })
    assert.is_nil(printed, "printed: " .. tostring(printed))
    assert.same({}, leaks.in_tree(dir, { TOKEN, TOKEN_ENV }, { [dir .. "/ci.lua"] = true }))
    assert.matches("(sensitive)", support.read(dir .. "/report.xml"), 1, true)

    -- the logs are the owner's only
    local logs = dir .. "/.orch/runs/p/1/logs"
    assert.equals("0700", ("%04o"):format(fs.stat(logs).mode & 4095))
    for _, name in ipairs(fs.list(logs)) do
      assert.equals("0600", ("%04o"):format(fs.stat(logs .. "/" .. name).mode & 4095), name)
    end
  end)
end)
