-- providers/service.lua: a systemd service: running or not, enabled at
-- boot or not. "restarted" and "reloaded" act on every run, as in Ansible
-- (a handler is where they belong). Hosts without systemd get a clear
-- error, not a guess.

-- Unit file states that `systemctl is-enabled` answers with success.
local ENABLED = { enabled = true, ["enabled-runtime"] = true, static = true, indirect = true,
  generated = true, transient = true, alias = true }
-- ... and of those, the ones enable/disable can't change.
local FIXED = { static = true, generated = true, transient = true }

local function check_name(name)
  if name == "" or name:find("^%-") or name:find("[/%s]") then
    error(("service: bad unit name %q"):format(name), 0)
  end
end

local function systemctl(ctx, ...)
  ctx.host:exec({ "systemctl", ... })
end

return {
  service = {
    schema = {
      name    = { type = "string", required = true, positional = true },
      state   = { type = "string", enum = { "started", "stopped", "restarted", "reloaded" } },
      enabled = { type = "boolean" },
    },
    -- One round trip once systemd is known to run: `systemctl show` tells
    -- whether the unit exists, runs, and starts at boot.
    read = function(ctx, want)
      local h, name = ctx.host, want.name
      check_name(name)
      if not h:stat("/run/systemd/system") then
        error(("service %s: systemd is not running on %s (no /run/systemd/system); cannot manage services here")
          :format(name, h.name), 0)
      end
      local r = h:exec({ "systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "UnitFileState",
        "--", name })
      local props = {}
      for k, v in r.stdout:gmatch("(%w+)=([^\n]*)") do props[k] = v end
      if props.LoadState == "not-found" then
        error(("service %s: no such unit on %s"):format(name, h.name), 0)
      end
      return { name = name, load = props.LoadState, active = props.ActiveState,
        unit_file = props.UnitFileState or "", enabled = ENABLED[props.UnitFileState] or false }
    end,
    diff = function(ctx, want, have)
      local changes = {}
      if want.enabled == false and FIXED[have.unit_file] then
        error(("service %s: its unit file is %s: it cannot be disabled (mask it instead)")
          :format(want.name, have.unit_file), 0)
      end
      if want.enabled ~= nil and want.enabled ~= have.enabled then
        changes[#changes + 1] = { attr = "enabled", from = have.enabled, to = want.enabled }
      end
      local running = have.active == "active" or have.active == "reloading"
      local s = want.state
      if (s == "started" and not running) or (s == "stopped" and running) or s == "restarted" or s == "reloaded" then
        changes[#changes + 1] = { attr = "state", from = have.active, to = s }
      end
      return changes
    end,
    apply = function(ctx, want, have, changes)
      for _, c in ipairs(changes) do
        if c.attr == "enabled" then
          systemctl(ctx, want.enabled and "enable" or "disable", "--", want.name)
        elseif c.to == "started" then
          systemctl(ctx, "start", "--", want.name)
        elseif c.to == "stopped" then
          systemctl(ctx, "stop", "--", want.name)
        elseif c.to == "restarted" then
          systemctl(ctx, "restart", "--", want.name)   -- starts a stopped one
        elseif c.to == "reloaded" then
          -- reloading a stopped service fails; starting it loads the config
          local running = have.active == "active" or have.active == "reloading"
          systemctl(ctx, running and "reload" or "start", "--", want.name)
        end
      end
    end,
  },
}
