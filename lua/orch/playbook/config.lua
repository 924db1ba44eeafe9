-- playbook/config.lua: `config "name" { ... }`: resources grouped into a named
-- configuration, versioned as a whole: a new version whenever a run
-- changes any of its files, so the set can be rolled back together.
local history = require("orch.state.history")

local M = {}

local Config = {}
Config.__index = Config

function M.begin(run, name)
  return setmetatable({ run = run, name = name, files = {}, order = {}, changed = false }, Config)
end

--- A file resource of this configuration ran on host h. Files it did not
-- change get their current state recorded (version 0) the first time, so
-- rolling back can put them back too.
function Config:touch(h, path, changed, label)
  if changed then self.changed = true end
  if self.run.check then return end
  if not changed then history.ensure_original(self.run.store, h, path, self.run.id, label) end
  local key = h.name .. ":" .. path
  if not self.files[key] then
    self.files[key] = { host = h.name, path = path }
    self.order[#self.order + 1] = key
  end
end

--- Record a version if something changed (or none exists yet); returns
-- its number, or nil when nothing was recorded.
function Config:finish()
  local run = self.run
  if run.check then return nil end
  local exists = run.store.db:value("SELECT 1 FROM configs WHERE name = ?", self.name)
  if exists and not self.changed then return nil end
  local files = {}
  for i, key in ipairs(self.order) do
    local f = self.files[key]
    files[i] = { host = f.host, path = f.path, version = history.latest(run.store, f.host, f.path).version }
  end
  return history.config_record(run.store, self.name, files, run.id, "apply")
end

return M
