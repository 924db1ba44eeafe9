-- paths.lua: file paths as orch records them: absolute and normalised, so
-- a version recorded from one folder is found and restored from any other.
local M = {}

--- path without "//", "/./" and "dir/..": purely textual (a symlink in it
-- is not followed, as the kernel would for "..": orch records what it was
-- told, made absolute).
function M.normalize(path)
  local absolute = path:sub(1, 1) == "/"
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then parts[#parts] = nil
      elseif not absolute then parts[#parts + 1] = ".." end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local joined = table.concat(parts, "/")
  if absolute then return "/" .. joined end
  return joined ~= "" and joined or "."
end

--- path made absolute against base (the current folder when not given).
function M.absolute(path, base)
  if path:sub(1, 1) ~= "/" then
    base = base or assert(require("orch.core.fs").cwd())
    path = base .. "/" .. path
  end
  return M.normalize(path)
end

--- Of the names in dir, the temporaries an atomic write of dir/base
-- makes (".base.orch-" and six random characters, as fs.write and SFTP
-- writes name them), as paths.
function M.temps_of(dir, base, names)
  local prefix = "." .. base .. ".orch-"
  local out = {}
  for _, name in ipairs(names) do
    if name:sub(1, #prefix) == prefix and #name == #prefix + 6 then out[#out + 1] = dir .. "/" .. name end
  end
  table.sort(out)
  return out
end

return M
