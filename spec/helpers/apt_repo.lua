-- apt_repo.lua: a throwaway apt repository on disk, of tiny packages built
-- with dpkg-deb, and an APT_CONFIG under which apt sees that repository
-- and nothing else (its own package lists, cache and logs). Specs install
-- packages with it without the network and without touching this
-- machine's package lists.
--
--   local repo = apt_repo.create(dir, { { name = "orch-spec-x", version = "1.0" } })
--   support.orch("play", f, { env = repo.env })   -- apt-get, apt-cache see only repo
local fs = require("orch.core.fs")
local proc = require("orch.proc")

local M = {}

-- What the repository and the package provider run.
M.TOOLS = { "dpkg-deb", "dpkg-query", "apt-get", "apt-cache" }

local function write(path, data)
  assert(fs.write(path, data, { mode = "0644" }))
end

-- Build one package; its stanza for the Packages index.
local function build(dir, i, pkg)
  local root = ("%s/build/%d"):format(dir, i)
  assert(fs.mkdir(root .. "/DEBIAN"))
  local control = ("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: orch specs <specs@orch.invalid>\n"
    .. "Description: a package the orch specs install and remove\n"):format(pkg.name, pkg.version)
  write(root .. "/DEBIAN/control", control)
  for path, content in pairs(pkg.files or {}) do
    assert(fs.mkdir(root .. path:match("^(.*)/[^/]*$")))
    write(root .. path, content)
  end
  local deb = ("%s_%s_all.deb"):format(pkg.name, pkg.version)
  proc.check({ "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, dir .. "/repo/" .. deb })
  local path = dir .. "/repo/" .. deb
  return control .. ("Filename: ./%s\nSize: %d\nSHA256: %s\n"):format(
    deb, assert(fs.stat(path)).size, assert(fs.sha256(path)))
end

--- Build packages ({ name, version, files = { [absolute path] = content } })
-- under dir, index them, and load the index with `apt-get update` (under
-- the repository's APT_CONFIG, so nothing else is fetched). Returns
-- { dir, config (the APT_CONFIG path), env = { APT_CONFIG = config } }.
function M.create(dir, packages)
  assert(fs.mkdir(dir .. "/repo"))
  local index = {}
  for i, pkg in ipairs(packages) do index[i] = build(dir, i, pkg) end
  write(dir .. "/repo/Packages", table.concat(index, "\n"))
  for _, d in ipairs({ "/state/lists/partial", "/cache/archives/partial", "/log", "/sources.list.d" }) do
    assert(fs.mkdir(dir .. d))
  end
  write(dir .. "/sources.list", ("deb [trusted=yes] file:%s/repo ./\n"):format(dir))
  local config = dir .. "/apt.conf"
  write(config, table.concat({
    ('Dir::State "%s/state";'):format(dir),
    ('Dir::Cache "%s/cache";'):format(dir),
    ('Dir::Log "%s/log";'):format(dir),
    ('Dir::Etc::sourcelist "%s/sources.list";'):format(dir),
    ('Dir::Etc::sourceparts "%s/sources.list.d";'):format(dir),
    -- the lists are in a temp folder the _apt user may not reach
    'APT::Sandbox::User "root";',
  }, "\n") .. "\n")
  local env = { APT_CONFIG = config }
  proc.check({ "apt-get", "-qq", "update" }, { env = env })
  return { dir = dir, config = config, env = env }
end

return M
