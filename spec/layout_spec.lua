-- The library's layout is its architecture (#10): packages depend one way,
-- only the command line prints, and the module names of older docs load.
local require_graph = require("scripts.require_graph")
local fs = require("orch.core.fs")

-- Higher packages may require lower ones and their own level, never up.
local LEVEL = { ["(utilities)"] = 0, state = 1, inventory = 1, host = 1, resource = 1,
  playbook = 2, pipeline = 2, infra = 2, cli = 3 }

local function cycle_from(graph, start)
  local seen, path = {}, {}
  local function visit(p)
    if path[p] then return true end
    if seen[p] then return false end
    seen[p], path[p] = true, true
    for q in pairs(graph[p] or {}) do
      if visit(q) then return true end
    end
    path[p] = nil
    return false
  end
  return visit(start)
end

describe("the Lua library's layout", function()
  local graph, packages = require_graph.graph("lua/orch")

  it("places every package at a level", function()
    for p in pairs(packages) do
      assert.is_not_nil(LEVEL[p], ("package %s has no level in spec/layout_spec.lua"):format(p))
    end
  end)

  it("never requires a package of a higher level", function()
    for from, targets in pairs(graph) do
      for to, where in pairs(targets) do
        assert(LEVEL[to] <= LEVEL[from], ("%s (level %d) requires %s (level %d): %s"):format(from,
          LEVEL[from], to, LEVEL[to], table.concat(where, "; ")))
      end
    end
  end)

  it("has no cycle between packages", function()
    for p in pairs(graph) do
      assert.is_false(cycle_from(graph, p), "a cycle through package " .. p)
    end
  end)

  it("prints and exits only in cli/", function()
    for _, e in ipairs(assert(fs.walk("lua/orch"))) do
      if e.type == "file" and e.path:match("%.lua$") and not e.path:match("^cli/") then
        local text = assert(fs.read("lua/orch/" .. e.path))
        -- (a frontier: fingerprint( is not print()
        for _, what in ipairs({ "io%.stdout", "io%.stderr", "os%.exit", "%f[%w_.:]print%(" }) do
          assert.is_nil(text:find(what), ("lua/orch/%s uses %s"):format(e.path, what))
        end
      end
    end
  end)

  it("loads the module names providers used before the packages as the same modules", function()
    assert.equals(require("orch.inventory.selector"), require("orch.selector"))
    assert.equals(require("orch.resource.providers"), require("orch.providers"))
    assert.equals(require("orch.state.history"), require("orch.history"))
    assert.is_function(require("orch.host").localhost)
    for old, new in pairs(require("orch._compat").renamed) do
      assert.is_truthy(package.searchpath(new, package.path), ("%s -> %s: no such module"):format(old, new))
    end
  end)
end)
