-- require_graph.lua: which package of lua/orch requires which, for the
-- contributor guide and for spec/layout_spec.lua. Run as
--   orch lua scripts/require_graph.lua [LUA_DIR]
-- Prints "package -> packages it requires" (the top-level utilities are
-- the package "(utilities)"; the C core, orch.core, is left out).
local fs = require("orch.core.fs")

local M = {}

--- The package of module `name` ("orch.cli.run" -> "cli"; a top-level
-- module -> "(utilities)"); nil for orch.core and outside orch.
function M.package_of(name, packages)
  local first, rest = name:match("^orch%.([%w_]+)(.*)$")
  if not first or first == "core" then return nil end
  if rest ~= "" or packages[first] then return first end
  return "(utilities)"
end

--- package -> { package it requires = { "file: module", ... } }, and the
-- set of packages (folders of dir).
function M.graph(dir)
  local packages, files = {}, {}
  for _, e in ipairs(assert(fs.walk(dir))) do
    if e.type == "directory" then
      packages[e.path:match("^([^/]+)")] = true
    elseif e.path:match("%.lua$") then
      files[#files + 1] = e.path
    end
  end
  local graph = {}
  for _, path in ipairs(files) do
    local from = path:find("/") and path:match("^([^/]+)") or "(utilities)"
    graph[from] = graph[from] or {}
    local text = assert(fs.read(dir .. "/" .. path))
    for name in text:gmatch('require%s*%(?%s*"(orch%.[%w_.]+)"') do
      local to = M.package_of(name, packages)
      if to and to ~= from then
        graph[from][to] = graph[from][to] or {}
        table.insert(graph[from][to], path .. ": " .. name)
      end
    end
  end
  return graph, packages
end

if arg and arg[0] and arg[0]:match("require_graph%.lua$") then
  local graph = M.graph(arg[1] or "lua/orch")
  local names = {}
  for p in pairs(graph) do names[#names + 1] = p end
  table.sort(names)
  for _, p in ipairs(names) do
    local to = {}
    for q in pairs(graph[p]) do to[#to + 1] = q end
    table.sort(to)
    print(("%-12s -> %s"):format(p, #to > 0 and table.concat(to, ", ") or "(nothing)"))
  end
end

return M
