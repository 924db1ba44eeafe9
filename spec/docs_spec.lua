-- docs_spec.lua: the docs cannot drift from the help, and their links lead
-- somewhere. Needs no spec helper: the binary is $ORCH_BIN (or build/orch).
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/docs_spec%.lua$") or "."
local bin = os.getenv("ORCH_BIN") or (root .. "/build/orch")

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  local ok, _, code = f:close()
  return out, ok and 0 or code
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function exists(path) return os.rename(path, path) == true end

local function lines_of(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t)
  return t
end

-- GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes.
local function slug(heading)
  return (heading:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
end

local function anchors(text)
  local seen, set = {}, {}
  local in_code = false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then in_code = not in_code
    elseif not in_code then
      local h = line:match("^#+%s+(.-)%s*$")
      if h then
        local s = slug(h)
        local n = seen[s]
        set[n and (s .. "-" .. n) or s] = true
        seen[s] = (n or 0) + 1
      end
    end
  end
  return set
end

-- Links outside code: [text](target), with the code blocks and spans taken out.
local function links(text)
  local found, in_code = {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then in_code = not in_code
    elseif not in_code then
      line = line:gsub("``.-``", ""):gsub("`[^`]*`", "")
      for target in line:gmatch("%]%(([^)%s]+)[^)]*%)") do found[#found + 1] = target end
    end
  end
  return found
end

describe("docs", function()
  it("has CLI pages that equal what scripts/cli_docs.lua writes from the help now", function()
    local tmp = assert(sh("mktemp -d")):gsub("%s+$", "")
    finally(function() sh("rm -rf " .. q(tmp)) end)
    local out, code = sh(("cd %s && %s lua scripts/cli_docs.lua %s 2>&1"):format(q(root), q(bin), q(tmp)))
    assert.equals(0, code, out)
    local made = sh("cd " .. q(tmp) .. " && ls")
    assert.same(lines_of(made), lines_of(sh("cd " .. q(root .. "/docs/reference/cli") .. " && ls")),
      "docs/reference/cli/ has other files than the generator writes")
    for name in made:gmatch("[^\n]+") do
      assert.equals(read(tmp .. "/" .. name), read(root .. "/docs/reference/cli/" .. name),
        "docs/reference/cli/" .. name .. " is stale: run build/orch lua scripts/cli_docs.lua docs/reference/cli")
    end
  end)

  it("shows each command's help exactly as `orch help CMD` prints it", function()
    local pages = sh("cd " .. q(root .. "/docs/reference/cli") .. " && ls")
    local n = 0
    for name in pages:gmatch("([%w_-]+)%.md\n") do
      if name ~= "README" then
        local page = assert(read(root .. "/docs/reference/cli/" .. name .. ".md"))
        local block = page:match("```text\n(.-)```\n")
        local help, code = sh(q(bin) .. " help " .. name)
        assert.equals(0, code)
        assert.equals(help, block, name .. ".md")
        n = n + 1
      end
    end
    assert.is_true(n >= 10)
  end)

  it("links only to files and headings that exist", function()
    local files = { "README.md" }
    for f in sh("cd " .. q(root) .. " && find docs providers -name '*.md' | sort"):gmatch("[^\n]+") do
      files[#files + 1] = f
    end
    assert.is_true(#files > 10)
    local broken = {}
    for _, file in ipairs(files) do
      local text = assert(read(root .. "/" .. file))
      local dir = file:match("^(.*)/") or "."
      for _, target in ipairs(links(text)) do
        if not target:match("^%a[%w+.-]*:") then  -- http:, mailto: ...
          local path, anchor = target:match("^([^#]*)#?(.*)$")
          local full = path == "" and (root .. "/" .. file) or (root .. "/" .. dir .. "/" .. path)
          if not exists(full) then
            broken[#broken + 1] = file .. ": " .. target
          elseif anchor ~= "" and full:match("%.md$") and not anchors(read(full))[anchor] then
            broken[#broken + 1] = file .. ": " .. target .. " (no such heading)"
          end
        end
      end
    end
    assert.same({}, broken)
  end)
end)
