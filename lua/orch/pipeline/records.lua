-- pipeline/records.lua: what the state store recorded of pipeline runs, read
-- back: a pipeline's latest runs, one run whole (stages, logs, artifacts).
-- The writing side is pipeline/run.lua's.
local fs = require("orch.core.fs")

local M = {}

--- The newest run of pipeline `name`, and its newest successful one.
function M.latest(store, name)
  return store.db:row("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY id DESC LIMIT 1", name),
    store.db:row("SELECT * FROM pipeline_runs WHERE pipeline = ? AND status = 'ok' ORDER BY id DESC LIMIT 1", name)
end

--- Up to `limit` runs of pipeline `name`, newest first, each with its
-- stages (no logs).
function M.runs(store, name, limit)
  local runs = store.db:rows("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?", name, limit)
  for _, r in ipairs(runs) do
    r.stages = store.db:rows("SELECT stage, status, attempts, started, finished, reason FROM stage_runs"
      .. " WHERE pipeline_run = ? ORDER BY started IS NULL, started", r.id)
  end
  return runs
end

--- Run `id` whole: its stages with their logs, and its artifacts, each
-- marked present (still on disk) with its entries; nil when there is none.
function M.run(store, id)
  local r = store.db:row("SELECT * FROM pipeline_runs WHERE id = ?", id)
  if not r then return nil end
  r.stages = store.db:rows("SELECT * FROM stage_runs WHERE pipeline_run = ? ORDER BY started IS NULL, started", id)
  r.artifacts = store.db:rows("SELECT stage, path, files, bytes, sha256 FROM pipeline_artifacts"
    .. " WHERE pipeline_run = ? ORDER BY stage", id)
  for _, a in ipairs(r.artifacts) do
    a.present = r.pruned == 0 and fs.stat(a.path) ~= nil
    local ok, entries = pcall(function() return a.present and require("orch.core.archive").list(a.path) end)
    a.entries = ok and entries or nil
  end
  return r
end

return M
