-- pipeline/init.lua: the pipeline DSL: `pipeline "name" { stage "x" { ... } }`
-- checked whole before anything runs: keys, needs, cycles, triggers, each
-- error naming the stage and where it is defined.
local errors = require("orch.errors")
local cron = require("orch.pipeline.cron")
local secret = require("orch.secret")

local M = {}

local STAGE_KEYS = { sh = true, run = true, needs = true, timeout = true, retry = true, env = true,
  allow_failure = true, when = true, artifacts = true, on = true, cwd = true, serial = true, max_fail = true }
local PIPELINE_KEYS = { triggers = true, env = true, keep = true, on_busy = true }
local WHEN = { on_success = true, on_failure = true, always = true }
local TRIGGER_WORDS = { manual = true, commit = true, webhook = true }
local TRIGGER_KEYS = { schedule = true, commit = true, webhook = true }

local function list_of_strings(v) return (type(v) == "string" or secret.is(v)) and { v } or v end

local function is_text(v) return type(v) == "string" or secret.is(v) end

-- Why v is not a string or a list of strings (a secret counts as one
-- where `secrets`), or nil.
local function not_strings(v, secrets)
  if v == nil or type(v) == "string" or (secrets and secret.is(v)) then return nil end
  if type(v) ~= "table" or secret.is(v) then return ("a string or a list of strings, not %s"):format(type(v)) end
  local n = 0
  for k in pairs(v) do
    n = n + 1
    if math.type(k) ~= "integer" then return ("a list, not a map (it has the key '%s')"):format(tostring(k)) end
  end
  for i = 1, n do
    local x = v[i]
    if x == nil then return "a list without holes" end
    if not (type(x) == "string" or (secrets and secret.is(x))) then
      return ("a list of strings, but item %d is %s"):format(i, type(x))
    end
  end
end

-- Why v is not an environment (names to strings, numbers, secrets, or
-- false to unset), or nil.
local function not_env(v)
  if v == nil then return nil end
  if type(v) ~= "table" or secret.is(v) then return ("a table of NAME = value, not %s"):format(type(v)) end
  for k, x in pairs(v) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
      return ("a table of NAME = value, but it has the key %s"):format(tostring(k))
    end
    if not (is_text(x) or type(x) == "number" or x == false) then
      return ("a table of NAME = value, but %s is %s"):format(k, type(x))
    end
  end
end

--- stage "name" { ... }: a stage definition for the pipeline's table;
-- `where` is the file:line that defines it.
function M.stage(name, where)
  if type(name) ~= "string" or not name:match("^[%w_.%-]+$") then
    error("stage needs a name of letters, digits, '_', '.', '-'", 3)
  end
  return function(spec)
    local function bad(fmt, ...) error(("stage '%s': " .. fmt):format(name, ...), 3) end
    if type(spec) ~= "table" then bad("expected a table") end
    for k in pairs(spec) do
      if not STAGE_KEYS[k] then bad("unknown key '%s'", tostring(k)) end
    end
    if (spec.sh == nil) == (spec.run == nil) then bad("give sh (commands) or run (a function), one of them") end
    if spec.run ~= nil and type(spec.run) ~= "function" then bad("run must be a function") end
    if spec.when ~= nil and not WHEN[spec.when] then
      bad("when must be on_success, on_failure or always; got %s", tostring(spec.when))
    end
    if spec.on ~= nil and type(spec.on) ~= "string" then bad("on must be a selector string, like \"role:web\"") end
    if (spec.serial ~= nil or spec.max_fail ~= nil) and spec.on == nil then
      bad("serial and max_fail apply to stages that run on hosts (on = ...)")
    end
    if spec.timeout ~= nil and (type(spec.timeout) ~= "number" or spec.timeout <= 0) then
      bad("timeout must be a number of seconds above 0")
    end
    for key, secrets in pairs({ sh = true, needs = false, artifacts = false }) do
      local why = not_strings(spec[key], secrets)
      if why then bad("%s must be %s", key, why) end
    end
    local why = not_env(spec.env)
    if why then bad("env must be %s", why) end
    if spec.retry ~= nil and not (math.type(spec.retry) == "integer" and spec.retry >= 0) then
      bad("retry must be a whole number of retries, 0 or more")
    end
    if spec.cwd ~= nil and type(spec.cwd) ~= "string" then bad("cwd must be a string") end
    if spec.allow_failure ~= nil and type(spec.allow_failure) ~= "boolean" then bad("allow_failure must be true or false") end
    local s = { name = name, where = where }
    for k, v in pairs(spec) do s[k] = v end
    s.needs = list_of_strings(s.needs) or {}
    s.sh = list_of_strings(s.sh)
    s.artifacts = list_of_strings(s.artifacts)
    for _, pattern in ipairs(s.artifacts or {}) do
      if type(pattern) ~= "string" or pattern:sub(1, 1) == "/" or ("/" .. pattern .. "/"):find("/%.%./") then
        bad("artifacts are paths (or globs) inside the stage's folder, got %s", tostring(pattern))
      end
    end
    s.when = s.when or "on_success"
    s.retry = math.tointeger(s.retry) or 0
    return setmetatable(s, { __name = "orch.stage" })
  end
end

local function is_stage(v)
  local mt = getmetatable(v)
  return mt and mt.__name == "orch.stage"
end

-- triggers = { "manual", "commit", "webhook", schedule = "0 2 * * *",
-- commit = { repo =, branch =, every = }, webhook = { secret = } }, as
-- { manual = true, schedules = { cron... }, commit = {...}, webhook = {...} }.
local function check_triggers(name, t, bad)
  local out = { list = {} }
  if t == nil then return out end
  if type(t) ~= "table" then bad("triggers must be a table") end
  for k, v in pairs(t) do
    if math.type(k) == "integer" then
      if not TRIGGER_WORDS[v] then
        bad("unknown trigger %s (use \"manual\", \"commit\", \"webhook\", schedule = \"CRON\")", tostring(v))
      end
      out[v] = out[v] or {}
    elseif not TRIGGER_KEYS[k] then
      bad("unknown trigger '%s' (use schedule, commit or webhook)", tostring(k))
    elseif k == "schedule" then
      out.schedules = {}
      for _, expr in ipairs(list_of_strings(v) or {}) do
        local ok, s = pcall(cron.parse, expr)
        if not ok then bad("%s", (tostring(s):gsub("^[^:]*:%d+: ", ""))) end
        out.schedules[#out.schedules + 1] = s
      end
    elseif type(v) ~= "table" then
      bad("trigger %s takes a table, like %s", k,
        k == "commit" and "{ repo = \".\", branch = \"main\", every = 30 }" or "{ secret = secret(os.getenv(\"HOOK_SECRET\")) }")
    else
      out[k] = v
    end
  end
  if out.commit then
    local c = out.commit
    for key in pairs(c) do
      if key ~= "repo" and key ~= "branch" and key ~= "every" then bad("commit trigger: unknown key '%s'", tostring(key)) end
    end
    c.repo = c.repo or "."   -- no branch: the one the repository's HEAD names
    c.every = c.every or 30
    if type(c.repo) ~= "string" or (c.branch ~= nil and type(c.branch) ~= "string") then
      bad("commit trigger: repo and branch are strings")
    end
    if type(c.every) ~= "number" or c.every <= 0 then bad("commit trigger: every is a number of seconds above 0") end
  end
  if out.webhook then
    for key in pairs(out.webhook) do
      if key ~= "secret" then bad("webhook trigger: unknown key '%s'", tostring(key)) end
    end
  end
  for _, word in ipairs({ "manual", "commit", "webhook" }) do
    if out[word] then out.list[#out.list + 1] = word end
  end
  for _, s in ipairs(out.schedules or {}) do out.list[#out.list + 1] = "schedule=" .. s.text end
  return out
end

--- Check a pipeline's table: stages, their needs, no cycle, triggers.
-- Raises with what is wrong, naming stages and where they are, at the
-- position of the caller `level` levels up (as error() counts).
function M.define(name, spec, level)
  local at = errors.where((level or 1) + 1)
  at = at ~= "?" and at .. ": " or ""
  local function bad(fmt, ...) error(("%spipeline '%s': " .. fmt):format(at, name, ...), 0) end
  if type(spec) ~= "table" then bad("expected a table") end
  -- its name makes a folder (.orch/runs/NAME) and a lock: a plain word
  if type(name) ~= "string" or not name:match("^[%w_][%w_.%-]*$") then
    error(("%spipeline needs a name of letters, digits, '_', '.', '-' (not first), got %q"):format(at, tostring(name)), 0)
  end
  local why = not_env(spec.env)
  if why then bad("env must be %s", why) end
  local p = { name = name, stages = {}, by_name = {}, env = spec.env or {}, keep = spec.keep,
    on_busy = spec.on_busy or "queue" }
  for k, v in pairs(spec) do
    if math.type(k) == "integer" then
      if not is_stage(v) then bad("entry %d is not a stage \"name\" { ... }", k) end
      if p.by_name[v.name] then
        bad("stage '%s' is defined twice (%s and %s)", v.name, p.by_name[v.name].where, v.where)
      end
      p.by_name[v.name] = v
    elseif not PIPELINE_KEYS[k] then
      bad("unknown key '%s'", tostring(k))
    end
  end
  if p.keep ~= nil and not (math.type(p.keep) == "integer" and p.keep >= 1) then
    bad("keep must be a whole number of runs, 1 or more")
  end
  if p.on_busy ~= "queue" and p.on_busy ~= "skip" then
    bad("on_busy must be \"queue\" or \"skip\", got %s", tostring(p.on_busy))
  end
  p.triggers = check_triggers(name, spec.triggers, bad)
  for i = 1, #spec do p.stages[i] = spec[i] end
  for _, s in ipairs(p.stages) do
    for _, n in ipairs(s.needs) do
      if not p.by_name[n] then bad("stage '%s' (%s) needs '%s', which is not a stage of it", s.name, s.where, n) end
    end
  end
  -- a cycle, named stage by stage
  local state, stack = {}, {}
  local function visit(s)
    if state[s.name] == "done" then return end
    if state[s.name] == "active" then
      local from
      for i, n in ipairs(stack) do if n == s.name then from = i end end
      local cycle = table.move(stack, from, #stack, 1, {})
      cycle[#cycle + 1] = s.name
      bad("stages form a cycle: %s", table.concat(cycle, " -> "))
    end
    state[s.name] = "active"
    stack[#stack + 1] = s.name
    for _, n in ipairs(s.needs) do visit(p.by_name[n]) end
    stack[#stack] = nil
    state[s.name] = "done"
  end
  for _, s in ipairs(p.stages) do visit(s) end
  return p
end

return M
