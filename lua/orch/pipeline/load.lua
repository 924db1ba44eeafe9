-- pipeline/load.lua: a file's pipelines, loaded into a run: the playbook's
-- environment (hosts, inventory, resources, sh, play, ...) plus `pipeline`
-- and `stage`, so a stage's function can do anything a playbook can.
local playbook = require("orch.playbook")
local pipeline = require("orch.pipeline")
local run_mod = require("orch.playbook.run")
local inventory_mod = require("orch.inventory")
local errors = require("orch.errors")

local M = {}


--- Load the file at path for a new run. opts: ui, store, id (the run's, if
-- it is recorded), inventory (files), vars, forks, limit, check. Returns
-- { run, list, by_name, dir }, or nil and what is wrong (a usage or
-- playbook error: the caller exits 2).
function M.load(path, opts)
  local chunk, err = playbook.loadfile(path)
  if not chunk then return nil, err end
  local run = run_mod.new({ id = opts.id, ui = opts.ui, store = opts.store, check = opts.check,
    playbook_dir = playbook.folder(path), inventory = inventory_mod.new(), limit = opts.limit,
    forks = math.tointeger(opts.forks) or 50 })
  local loaded, ierr = run.inventory:load_all(opts.inventory)
  if not loaded then return nil, ierr end
  local list, by_name = {}, {}
  local dsl = {}
  function dsl.stage(name)
    return pipeline.stage(name, errors.where(2))
  end
  function dsl.pipeline(name)
    if type(name) ~= "string" then error("pipeline needs a name (a string)", 2) end
    return function(spec)
      if by_name[name] then error(("pipeline '%s' is defined twice"):format(name), 2) end
      local p = pipeline.define(name, spec, 2)
      by_name[name] = p
      list[#list + 1] = p
      return p
    end
  end
  local ok, perr = playbook.evaluate(run, chunk, path, { vars = opts.vars, forks = run.forks, extra = dsl })
  if not ok then return nil, errors.message(perr) end
  return { run = run, list = list, by_name = by_name, dir = playbook.folder(path) }
end

--- The pipeline named `name` of a loaded file, or nil and a message that
-- lists the names it has.
function M.find(loaded, name, path)
  local p = loaded.by_name[name]
  if p then return p end
  local names = {}
  for _, q in ipairs(loaded.list) do names[#names + 1] = q.name end
  return nil, ("no pipeline '%s' in %s (it has: %s)"):format(name, path,
    #names > 0 and table.concat(names, ", ") or "none")
end

return M
