-- _compat.lua: the library's module names before it was split into
-- packages, and where each module lives now. Providers and playbooks
-- written against older docs require the old names: a searcher, installed
-- once by orch.cli, loads the new module for them, so both names give the
-- same table.
local M = {}

M.renamed = {
  ["orch.adhoc"] = "orch.cli.run",
  ["orch.args"] = "orch.cli.args",
  ["orch.artifacts"] = "orch.pipeline.artifacts",
  ["orch.config"] = "orch.playbook.config",
  ["orch.cron"] = "orch.pipeline.cron",
  ["orch.history"] = "orch.state.history",
  ["orch.infra_apply"] = "orch.infra.apply",
  ["orch.infra_cmd"] = "orch.cli.infra",
  ["orch.infra_plan"] = "orch.infra.plan",
  ["orch.infra_state"] = "orch.infra.state",
  ["orch.junit"] = "orch.pipeline.junit",
  ["orch.pipeline_cmd"] = "orch.cli.pipeline",
  ["orch.pipeline_file"] = "orch.pipeline.load",
  ["orch.pipeline_run"] = "orch.pipeline.run",
  ["orch.play"] = "orch.playbook.play",
  ["orch.pretty"] = "orch.cli.pretty",
  ["orch.providers"] = "orch.resource.providers",
  ["orch.remote"] = "orch.host.remote",
  ["orch.repl"] = "orch.cli.repl",
  ["orch.run"] = "orch.playbook.run",
  ["orch.schema"] = "orch.resource.schema",
  ["orch.selector"] = "orch.inventory.selector",
  ["orch.serve"] = "orch.cli.serve",
  ["orch.ssh"] = "orch.host.ssh",
  ["orch.ui"] = "orch.cli.ui",
  ["orch.validate"] = "orch.resource.validate",
  ["orch.var_file"] = "orch.infra.var_file",
  ["orch.versions"] = "orch.cli.history",
  ["orch.yaml_order"] = "orch.inventory.yaml_order",
}

local installed = false

--- Append the searcher for old names (after Lua's own: a file of that
-- name on ORCH_PATH still wins).
function M.install()
  if installed then return end
  installed = true
  local searchers = package.searchers
  searchers[#searchers + 1] = function(name)
    local new = M.renamed[name]
    if not new then return ("no old orch module '%s'"):format(name) end
    return function() return require(new) end, new
  end
end

return M
