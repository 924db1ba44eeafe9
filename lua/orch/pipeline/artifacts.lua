-- pipeline/artifacts.lua: what a stage declares it made, archived per run as
-- tar.gz (a snapshot: later stages or runs can't change it), and unpacked
-- for the stages that need that stage.
local fs = require("orch.core.fs")
-- orch.core.archive is required where it is used: opening libarchive and
-- its libraries takes longer than a short pipeline does without artifacts.

local M = {}

-- base as a glob(3) pattern of itself: its metacharacters escaped.
local function glob_escape(base) return (base:gsub("[%*%?%[%]\\]", "\\%0")) end

--- Archive what stage.artifacts (globs relative to base) matches into
-- <workspace>/artifacts/<stage>.tar.gz. Returns { stage, path, files,
-- bytes, sha256 }, or nil and why (a pattern that matches nothing fails:
-- a declared artifact that was not made is a broken build).
function M.collect(workspace, stage, base)
  local paths, seen = {}, {}
  local prefix = base:gsub("/$", "") .. "/"
  for _, pattern in ipairs(stage.artifacts) do
    local matches = fs.glob(glob_escape(prefix) .. pattern)
    if #matches == 0 then return nil, ("artifacts: '%s' matched nothing in %s"):format(pattern, base) end
    for _, path in ipairs(matches) do
      local rel = path:sub(#prefix + 1)
      if not seen[rel] then seen[rel] = true; paths[#paths + 1] = rel end
    end
  end
  local dest = ("%s/artifacts/%s.tar.gz"):format(workspace, stage.name)
  local ok, err = fs.mkdir(workspace .. "/artifacts", "0755")
  if not ok then return nil, err end
  local made, aerr = require("orch.core.archive").create(dest, base, paths)
  if not made then return nil, "artifacts: " .. aerr end
  return { stage = stage.name, path = dest, files = made.files, bytes = made.bytes, sha256 = fs.sha256(dest) }
end

--- Unpack the archives of `records` (what collect returned for the stages
-- a stage needs) into dir, each file at its path relative to its stage's
-- folder. Returns dir, or nil and why.
function M.unpack(records, dir)
  local ok, err = fs.mkdir(dir, "0755")
  if not ok then return nil, err end
  for _, r in ipairs(records) do
    local done, xerr = require("orch.core.archive").extract(r.path, dir)
    if not done then return nil, ("artifacts of %s: %s"):format(r.stage, xerr) end
  end
  return dir
end

return M
