-- providers/systemd_unit.lua: a systemd unit file (app.service, app.timer,
-- ...) in `dir`, followed by `systemctl daemon-reload` when it changed. A
-- file type: the engine compares, validates, backs up, writes atomically
-- and records each version; this only says where (dir .. "/" .. name) and
-- what the content is.
local fs = require("orch.core.fs")

local KINDS = { service = true, socket = true, timer = true, target = true, path = true, mount = true }

-- A schema check: a bad name is the playbook's error, caught before running.
local function check_name(name)
  local kind = name:match("^[^/]+%.(%a+)$")
  if not (kind and KINDS[kind]) or name:find("^%.") then
    return false, "must end in .service, .socket, .timer, .target, .path or .mount and contain no '/'"
  end
  return true
end

local function unit_path(want)
  return (want.dir:gsub("/+$", "")) .. "/" .. want.name
end

return {
  systemd_unit = {
    file = true,
    schema = {
      name     = { type = "string", required = true, positional = true, check = check_name },
      content  = { type = "string" },
      src      = { type = "string" },   -- beside the playbook, or in files/
      dir      = { type = "string", default = "/etc/systemd/system" },
      mode     = { type = "mode", default = "0644" },
    },
    path = unit_path,   -- the file the engine manages
    content = function(ctx, want)
      if want.content and want.src then error(("systemd_unit %s: give content or src, not both"):format(want.name), 0) end
      if want.src then return assert(fs.read(ctx.source(want.src, "files"))) end
      if not want.content then error(("systemd_unit %s: give content or src"):format(want.name), 0) end
      return want.content
    end,
    -- After the file changed (never in check mode): systemd rereads units.
    after_apply = function(ctx)
      if ctx.host:stat("/run/systemd/system") then
        ctx.host:exec({ "systemctl", "daemon-reload" })
      else
        ctx.log("systemd is not running: daemon-reload skipped")
      end
    end,
  },
}
