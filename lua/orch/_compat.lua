-- _compat.lua: the library's module names before it was split into
-- packages, and where each library module lives now (commands are not
-- libraries: their modules are not listed). Providers and playbooks
-- written against older docs require the old names: a searcher, installed
-- once by orch.cli, loads the new module for them, so both names give the
-- same table.
local M = {}

M.renamed = {
  ["orch.args"] = "orch.cli.args",
  ["orch.artifacts"] = "orch.pipeline.artifacts",
  ["orch.config"] = "orch.playbook.config",
  ["orch.cron"] = "orch.pipeline.cron",
  ["orch.history"] = "orch.state.history",
  ["orch.infra_apply"] = "orch.infra.apply",
  ["orch.infra_plan"] = "orch.infra.plan",
  ["orch.infra_state"] = "orch.infra.state",
  ["orch.junit"] = "orch.pipeline.junit",
  ["orch.pipeline_file"] = "orch.pipeline.load",
  ["orch.pipeline_run"] = "orch.pipeline.run",
  ["orch.play"] = "orch.playbook.play",
  ["orch.pretty"] = "orch.cli.pretty",
  ["orch.providers"] = "orch.resource.providers",
  ["orch.remote"] = "orch.host.remote",
  ["orch.run"] = "orch.playbook.run",
  ["orch.schema"] = "orch.resource.schema",
  ["orch.selector"] = "orch.inventory.selector",
  ["orch.ssh"] = "orch.host.ssh",
  ["orch.ui"] = "orch.cli.ui",
  ["orch.validate"] = "orch.resource.validate",
  ["orch.var_file"] = "orch.infra.var_file",
  ["orch.yaml_order"] = "orch.inventory.yaml_order",
}

--- Append the searcher for old names (after Lua's own: a file of that
-- name on ORCH_PATH still wins). orch.cli calls it once, as it loads.
function M.install()
  local searchers = package.searchers
  searchers[#searchers + 1] = function(name)
    local new = M.renamed[name]
    if not new then return ("no old orch module '%s'"):format(name) end
    return function() return require(new) end, new
  end
end

return M
