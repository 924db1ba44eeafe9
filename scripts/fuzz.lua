-- fuzz.lua: regression fuzzing. Mutated inputs, seeded from examples like
-- the specs', go to every parser a user feeds: YAML, inventories, templates,
-- cron, selectors, .tfvars, JSON, pipeline definitions and the command line.
-- A parser may refuse an input, with a message; what it must never do is
-- crash (the sanitizer build aborts), hang (the caller's timeout), or raise
-- an internal error (one that points into orch's own code, or isn't text).
--
--   build-asan/orch lua scripts/fuzz.lua [SECONDS] [OUT_DIR]
--
-- Before each input, OUT_DIR/current holds it, so a crash or a hang leaves
-- the input that did it; each internal error is saved in OUT_DIR/findings.
-- Prints "fuzz: N inputs, N internal errors" and exits 1 on any.
local fs = require("orch.core.fs")
local info = require("orch.core.info")

local budget = tonumber(arg[1]) or 60
local out = arg[2] or "build/fuzz"
assert(fs.mkdir(out .. "/findings", "0755") ~= nil)
local work = assert(fs.tmpdir("orch-fuzz-"))

math.randomseed(tonumber(os.getenv("FUZZ_SEED") or "") or os.time())

local SEEDS = {
  yaml = { "a: 1\nb: [x, y]\nc: {d: e}\n", "all:\n  hosts:\n    web[01:03]:\n      ansible_host: 10.0.0.1\n",
    "x: &a [1, 2]\ny: *a\nz: {<<: {k: v}, w: 1}\n", "- 'q''s'\n- \"e\\n\"\n- |\n  block\n- !!int 3\n", "---\na: 1\n...\n" },
  inventory = { "all:\n  vars: { ansible_user: u }\n  children:\n    web:\n      hosts:\n        web[1:3]: { ansible_port: 2222 }\n",
    "db:\n  hosts: { db1: { ansible_host: 10.0.0.2, ansible_become: true } }\n" },
  template = { "hello {{ name }}\n{% for i = 1, 3 do %}{{ i }},{% end %}\n{# c #}", "{{ host.name }}: {{ port or 80 }}\n" },
  cron = { "*/15 9-17 * * mon-fri", "0 2 * * *", "@daily", "0 0 29 2 *", "5,10-20/3 * 1 jan,jun sun" },
  selector = { "all", "web*,!web03", "role:web&role:eu", "db0?", "*" },
  tfvars = { 'a = "x" # c\nb = 1\nc = [1, "two"]\nd = true\ne = null // x\n' },
  json = { '{"a": [1, 2.5, "x", true, null], "b": {"c": "\\u00e9"}}', "[]", '"s"' },
}

-- A mutation of text: flipped bytes, inserted structure, a cut, a doubled
-- slice, or a splice of two seeds.
local SPECIAL = { "\0", "\n", ":", "[", "]", "{", "}", "*", "&", "-", ",", "\"", "'", "#", "%", "\\", "..",
  "9999999999", "-1", "@", "|", "!", "<<", "{{", "}}", "{%", "%}", "=", "null", "NaN", "1e999" }

local function mutate(text, seeds)
  local n = math.random(1, 4)
  for _ = 1, n do
    local r, len = math.random(6), #text
    local i = math.random(1, len + 1)
    if r == 1 and len > 0 then
      text = text:sub(1, i - 1) .. string.char(math.random(0, 255)) .. text:sub(i + 1)
    elseif r == 2 then
      text = text:sub(1, i - 1) .. SPECIAL[math.random(#SPECIAL)] .. text:sub(i)
    elseif r == 3 then
      text = text:sub(1, math.random(0, len))
    elseif r == 4 and len > 0 and i <= len then
      local j = math.random(i, math.min(len, i + 40))
      text = text:sub(1, j) .. text:sub(i, j) .. text:sub(j + 1)
    elseif r == 5 then
      local other = seeds[math.random(#seeds)]
      text = text:sub(1, i - 1) .. other:sub(math.random(1, #other + 1))
    else
      text = text:sub(1, i - 1) .. text:sub(i + math.random(1, 8))
    end
  end
  return text
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Internal: not text, or pointing into orch's own sources.
local OWN = { info.root .. "/lua/", "/lua/orch/", "stack traceback" }
local function internal(err)
  if type(err) ~= "string" then
    local ok, s = pcall(tostring, err)
    return not ok or type(s) ~= "string" or s:match("^table: ") ~= nil
  end
  for _, p in ipairs(OWN) do if err:find(p, 1, true) then return true end end
  return false
end

local TARGETS = {
  yaml = function(t) return require("orch.core.yaml").load(t, "fuzz.yaml") end,
  inventory = function(t)
    write(work .. "/hosts.yaml", t)
    local inv = require("orch.inventory").new()
    return inv:load(work .. "/hosts.yaml")
  end,
  -- a template runs the user's Lua: an endless loop in it is theirs, cut
  -- short here by an instruction budget
  template = function(t)
    debug.sethook(function() error("fuzz: budget", 0) end, "", 1e7)
    local ok, res = pcall(require("orch.template").render, t, { name = "n", port = 1, host = { name = "h" } }, "fuzz.tmpl")
    debug.sethook()
    if not ok and tostring(res):find("fuzz: budget", 1, true) then return nil end
    if not ok then error(res, 0) end
    return res
  end,
  cron = function(t) return require("orch.pipeline.cron").parse(t) end,
  selector = function(t) return require("orch.inventory.selector").parse(t) end,
  tfvars = function(t)
    write(work .. "/v.tfvars", t)
    return require("orch.infra.var_file").load(work .. "/v.tfvars")
  end,
  json = function(t) return require("orch.json").decode(t) end,
}

-- Pipeline definitions and command lines are made of values, not bytes:
-- random values of every type in every slot.
local VALUES = { true, false, 0, -1, 1.5, 1e308, "", "x", "../../x", "a b", {}, { "s" }, { x = 1 }, { 1, nil, 3 },
  function() end }
local function any() return VALUES[math.random(#VALUES)] end
local STAGE_KEYS = { "sh", "run", "needs", "timeout", "retry", "env", "allow_failure", "when", "artifacts", "on", "cwd",
  "serial", "max_fail", "bogus" }

local function pipeline_case()
  local pipeline = require("orch.pipeline")
  local spec = { env = math.random(3) == 1 and any() or nil, triggers = math.random(3) == 1 and any() or nil,
    keep = math.random(4) == 1 and any() or nil }
  for i = 1, math.random(0, 3) do
    local s = {}
    for _, k in ipairs(STAGE_KEYS) do if math.random(4) == 1 then s[k] = any() end end
    if math.random(2) == 1 then s.sh = "true" end
    local name = math.random(5) == 1 and any() or ("s" .. i)
    local ok, stage = pcall(pipeline.stage, name, "fuzz.lua:1")
    if ok then ok, stage = pcall(stage, s) end
    spec[i] = ok and stage or s
  end
  return "pipeline " .. tostring(spec), function() return pipeline.define(math.random(5) == 1 and any() or "p", spec) end
end

local function cli_case()
  local cli = require("orch.cli.commands")
  local args = require("orch.cli.args")
  local names = cli.order
  local name = names[math.random(#names)]
  local words = { "--state", "-f", "--json", "--jobs", "0", "-5", "x", "--", "--lock-timeout", "1e999", "--listen",
    ":", "[::1]:99999", "-var", "a=b", "-e", "=", "--timeout", "nan", "--max-body", "0.5", "--forks", "" }
  local argv = {}
  for i = 1, math.random(0, 6) do argv[i] = words[math.random(#words)] end
  return name .. " " .. table.concat(argv, " "), function()
    local spec = cli.commands[name]
    local opts, why = args.parse(spec, argv)
    if not opts and type(why) ~= "string" then error(why) end
  end
end

local tried, found = 0, 0
local names = {}
for name in pairs(TARGETS) do names[#names + 1] = name end
table.sort(names)
names[#names + 1] = "pipeline"
names[#names + 1] = "cli"
local deadline = os.clock() + budget   -- CPU seconds: a hang is the caller's timeout to catch

while os.clock() < deadline do
  for _, name in ipairs(names) do
    local label, fn
    if name == "pipeline" then label, fn = pipeline_case()
    elseif name == "cli" then label, fn = cli_case()
    else
      local seeds = SEEDS[name]
      label = mutate(seeds[math.random(#seeds)], seeds)
      fn = function() return TARGETS[name](label) end
    end
    write(out .. "/current", name .. "\n" .. label)
    tried = tried + 1
    local ok, err = pcall(fn)
    if not ok and internal(err) then
      found = found + 1
      write(("%s/findings/%s-%d"):format(out, name, found), label .. "\n---\n" .. tostring(err) .. "\n")
      io.stderr:write(("fuzz: %s: internal error: %s\n"):format(name, tostring(err):match("[^\n]*")))
    end
  end
end

fs.remove(work, { recursive = true })
os.remove(out .. "/current")
print(("fuzz: %d inputs, %d internal errors (findings in %s/findings)"):format(tried, found, out))
os.exit(found == 0 and 0 or 1)
