-- resource/providers.lua: find resource types: a providers/ folder beside the
-- playbook, then ORCH_PROVIDERS_PATH, then orch's own providers/.
local fs = require("orch.core.fs")
local info = require("orch.core.info")

local M = {}

local loaded = {}    -- file path -> its types table

--- The folders searched, in order.
function M.dirs(playbook_dir)
  local dirs = {}
  if playbook_dir then dirs[#dirs + 1] = playbook_dir .. "/providers" end
  for dir in (os.getenv("ORCH_PROVIDERS_PATH") or ""):gmatch("[^:]+") do
    dirs[#dirs + 1] = dir
  end
  dirs[#dirs + 1] = info.root .. "/providers"
  return dirs
end

-- What every file type takes: the engine handles them all, so a file type
-- declares only its own attributes.
local FILE_ATTRS = {
  path     = { type = "string", required = true },
  mode     = { type = "mode" },
  owner    = { type = "string" },
  group    = { type = "string" },
  backup   = { type = "boolean", default = false },
  validate = { type = { "string", "function" } },
}

local function check_type(path, tname, t)
  local function bad(why) error(("%s: type '%s' %s"):format(path, tname, why), 0) end
  if type(t) ~= "table" then bad("must be a table") end
  if type(t.schema) ~= "table" then bad("needs a schema table") end
  if t.file then
    if type(t.content) ~= "function" then bad("is a file type and needs content(ctx, want, have)") end
    for k, spec in pairs(FILE_ATTRS) do
      -- a type that computes its path (systemd_unit) takes none
      if t.schema[k] == nil and not (k == "path" and t.path) then t.schema[k] = spec end
    end
  else
    if type(t.read) ~= "function" then bad("needs read(ctx, want)") end
    if type(t.apply) ~= "function" then bad("needs apply(ctx, want, have, changes)") end
  end
  for k, spec in pairs(t.schema) do
    if type(spec) ~= "table" then bad(("schema.%s must be a table"):format(tostring(k))) end
  end
end

local function load_module(path)
  if loaded[path] ~= nil then return loaded[path] end
  local chunk, err = loadfile(path, "t")
  if not chunk then error(err, 0) end
  local types = chunk()
  if type(types) ~= "table" then
    error(("%s: a provider module must return a table of types, got %s"):format(path, type(types)), 0)
  end
  for tname, t in pairs(types) do check_type(path, tname, t) end
  loaded[path] = types
  return types
end

--- The type named `tname` ("file", or "lab.host" from lab.lua), its
-- module's path; nil when no folder has it.
function M.find(tname, playbook_dir)
  local module, key = tname:match("^([%w_]+)%.([%w_]+)$")
  if not module then module, key = tname, tname end
  if not module:match("^[%w_]+$") then return nil end
  for _, dir in ipairs(M.dirs(playbook_dir)) do
    local path = dir .. "/" .. module .. ".lua"
    if fs.stat(path) then
      local t = load_module(path)[key]
      if t then return t, path end
    end
  end
end

--- Names of the modules in every folder (candidates for DSL names).
function M.names(playbook_dir)
  local names, seen = {}, {}
  for _, dir in ipairs(M.dirs(playbook_dir)) do
    for _, file in ipairs(fs.list(dir) or {}) do
      local name = file:match("^([%a_][%w_]*)%.lua$")
      if name and not seen[name] then
        seen[name] = true
        names[#names + 1] = name
      end
    end
  end
  return names
end

return M
