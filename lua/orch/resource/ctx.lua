-- resource/ctx.lua: the `ctx` a provider's functions get, built in this one
-- place for plays and for infrastructure alike, so a provider sees the same
-- shape wherever its type is used.
local fs = require("orch.core.fs")

local M = {}

-- A file on the control machine named by a playbook: absolute, or in the
-- playbook's `subdir` folder (templates/, files/), or beside it, as
-- Ansible looks for them.
function M.find_source(run, rel, subdir)
  if rel:sub(1, 1) == "/" then return rel end
  local base = run.playbook_dir or "."
  local candidates = { base .. "/" .. rel }
  if subdir then table.insert(candidates, 1, base .. "/" .. subdir .. "/" .. rel) end
  for _, candidate in ipairs(candidates) do
    if fs.stat(candidate) then return candidate end
  end
  error(("%s: no such file beside the playbook%s"):format(rel,
    subdir and (" or in its " .. subdir .. "/ folder") or ""), 0)
end

--- The short id of a state: its store (the file, wherever it is reached
-- from) and workspace. Machine-wide names a provider makes carry it, so
-- two checkouts, or two workspaces, never take each other's objects.
function M.state_id(store_path, workspace)
  local path = store_path and (fs.realpath(store_path) or store_path) or ""
  return fs.sha256_data(path .. "\n" .. (workspace or "")):sub(1, 6)
end

--- The ctx of type `tname` acting on host `h` for `run`: host, check
-- (providers never read it: the engine does), type, run, playbook_dir,
-- dir (the provider's data folder, <playbook dir>/.orch/<provider>),
-- state_id (of the run's store and `workspace`: infrastructure's, or none
-- for a play), log(msg), and source(rel, subdir) (a file beside the playbook).
local ids = setmetatable({}, { __mode = "k" })   -- run -> { [workspace] = id }: a ctx is made per resource

function M.new(run, tname, h, log, workspace)
  local base = run.playbook_dir or "."
  local by_ws = ids[run] or {}
  ids[run] = by_ws
  local id = by_ws[workspace or ""] or M.state_id(run.store and run.store.path, workspace)
  by_ws[workspace or ""] = id
  return { host = h, check = run.check, type = tname, run = run, playbook_dir = run.playbook_dir,
    dir = base .. "/.orch/" .. (tname:match("^([%w_]+)%.") or tname), log = log, state_id = id,
    source = function(rel, subdir) return M.find_source(run, rel, subdir) end }
end

return M
