-- cli/play.lua: `orch play FILE`: run a playbook and choose the exit code:
-- 0 ok, 1 a step, resource or host failed (or the store's lock is held),
-- 2 the playbook or an argument is wrong, 130 interrupted.
local ui_mod = require("orch.cli.ui")
local playbook = require("orch.playbook")

local M = {}

local EXIT = { ok = 0, failed = 1, error = 2, interrupted = 130 }

function M.run(path, opts)
  local ui = ui_mod.new({ json = opts.json, verbose = opts.verbose, diff = opts.diff })
  opts.ui = ui
  local outcome, message, code = playbook.execute(path, opts)
  if message then ui:error(message) end
  if not outcome then return code == "EINVAL" and 2 or 1 end
  return EXIT[outcome]
end

return M
