-- providers/group.lua: a local group and its gid (getent group, groupadd,
-- groupmod, groupdel). Every command is an argv list: a name never passes
-- through a shell.

-- A name groupadd accepts, and that can't be taken for an option.
local function check_name(name)
  if name == "" or name:find("^%-") or name:find("[:,%s/]") then
    error(("group: bad group name %q"):format(name), 0)
  end
end

return {
  group = {
    schema = {
      name   = { type = "string", required = true, positional = true },
      state  = { type = "string", enum = { "present", "absent" }, default = "present" },
      gid    = { type = "integer" },
      -- only when the group is created: a gid below GID_MIN
      system = { type = "boolean", default = false, diff = false },
    },
    -- One round trip; nil means absent.
    read = function(ctx, want)
      check_name(want.name)
      local r, err = ctx.host:exec({ "getent", "group", "--", want.name }, { check = false })
      if not r then error(err, 0) end
      if r.code == 2 then return nil end  -- getent: no such key
      if r.code ~= 0 then
        error(("group %s: getent group failed (exit code %d): %s"):format(want.name, r.code, r.stderr), 0)
      end
      local name, gid = r.stdout:match("^([^:\n]*):[^:\n]*:(%d+):")
      if not name then error(("group %s: cannot parse getent's answer %q"):format(want.name, r.stdout), 0) end
      return { name = name, gid = math.tointeger(tonumber(gid)) }
    end,
    apply = function(ctx, want, have)
      local argv
      if not have then
        argv = { "groupadd" }
        if want.gid then argv[#argv + 1] = "-g"; argv[#argv + 1] = tostring(want.gid) end
        if want.system then argv[#argv + 1] = "-r" end
      else
        argv = { "groupmod", "-g", tostring(want.gid) }  -- the gid is all the diff can list
      end
      argv[#argv + 1] = "--"
      argv[#argv + 1] = want.name
      ctx.host:exec(argv)
    end,
    delete = function(ctx, have)
      ctx.host:exec({ "groupdel", "--", have.name })
    end,
  },
}
