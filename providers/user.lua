-- providers/user.lua: a local user account: uid, primary and supplementary
-- groups, home, shell, comment (getent/id to read; useradd, usermod,
-- userdel to change). Only the attributes a playbook sets are compared, so
-- a user managed elsewhere is left alone in every other respect. Every
-- command is an argv list: no name passes through a shell as code.
local fileattrs = require("orch.fileattrs")

-- A name useradd accepts, and that can't be taken for an option.
local function check_name(what, name)
  if name == "" or name:find("^%-") or name:find("[:,%s/]") then
    error(("user: bad %s name %q"):format(what, name), 0)
  end
end

-- The passwd entry, the primary group's name and every group, in one round
-- trip. The script is constant; the name reaches it as $1.
local READ_SCRIPT = 'getent passwd -- "$1" || exit; id -gn -- "$1"; id -Gn -- "$1"; exit 0'

local function sorted_set(list, drop)
  local seen, out = {}, {}
  for _, g in ipairs(list) do
    if g ~= drop and not seen[g] then
      seen[g] = true
      out[#out + 1] = g
    end
  end
  table.sort(out)
  return out
end

-- want.groups as names, checked, without `primary` (a primary group is
-- no supplementary one).
local function wanted_groups(want, primary)
  if not want.groups then return nil end
  local names = {}
  for i, g in ipairs(want.groups) do
    if type(g) ~= "string" and type(g) ~= "number" then
      error(("user %s: groups[%d] must be a group name, got %s"):format(want.name, i, type(g)), 0)
    end
    names[i] = tostring(g)
    check_name("group", names[i])
  end
  return sorted_set(names, primary)
end

local function primary_of(want)
  if want.group and want.gid then error(("user %s: give group or gid, not both"):format(want.name), 0) end
  return want.group or (want.gid and tostring(want.gid))
end

-- Attribute -> useradd/usermod option, in the order changes are listed.
local OPTIONS = { { "uid", "-u" }, { "group", "-g" }, { "groups", "-G" }, { "home", "-d" },
  { "shell", "-s" }, { "comment", "-c" } }

-- The value an option takes for want's `attr`.
local function option_value(want, attr, groups)
  if attr == "uid" then return want.uid and tostring(want.uid) end
  if attr == "group" then return primary_of(want) end
  if attr == "groups" then return groups and groups[1] and table.concat(groups, ",") end
  return want[attr]
end

return {
  user = {
    schema = {
      name        = { type = "string", required = true, positional = true },
      state       = { type = "string", enum = { "present", "absent" }, default = "present" },
      uid         = { type = "integer" },
      group       = { type = "string" },    -- the primary group: a name or a gid
      gid         = { type = "integer" },   -- the same, as a number
      groups      = { type = "list" },      -- supplementary groups, exactly these
      home        = { type = "string" },
      shell       = { type = "string" },
      comment     = { type = "string" },
      system      = { type = "boolean", default = false },  -- on creation only
      create_home = { type = "boolean", default = true },   -- on creation only
      remove_home = { type = "boolean", default = false },  -- on state = "absent" only
    },
    -- One round trip, changes nothing; nil means absent.
    read = function(ctx, want)
      check_name("user", want.name)
      local r, err = ctx.host:exec({ "sh", "-c", READ_SCRIPT, "sh", want.name }, { check = false })
      if not r then error(err, 0) end
      if r.code == 2 then return nil end  -- getent: no such key
      if r.code ~= 0 then
        error(("user %s: getent passwd failed (exit code %d): %s"):format(want.name, r.code, r.stderr), 0)
      end
      local entry, primary, all = r.stdout:match("^([^\n]*)\n([^\n]*)\n([^\n]*)")
      local name, uid, gid, comment, home, shell =
        (entry or ""):match("^([^:]*):[^:]*:(%d+):(%d+):([^:]*):([^:]*):([^:]*)$")
      if not name then error(("user %s: cannot parse %q"):format(want.name, r.stdout), 0) end
      local groups = {}
      for g in all:gmatch("%S+") do groups[#groups + 1] = g end
      return {
        name = name, uid = math.tointeger(tonumber(uid)), gid = math.tointeger(tonumber(gid)),
        group = primary, groups = sorted_set(groups, primary),
        comment = comment, home = home, shell = shell,
      }
    end,
    diff = function(ctx, want, have)
      local primary = primary_of(want)
      local changes = {}
      local function add(attr, from, to) changes[#changes + 1] = { attr = attr, from = from, to = to } end
      if not have then
        add("state", "absent", "present")
        local groups = wanted_groups(want, primary)
        for _, o in ipairs(OPTIONS) do
          local v = option_value(want, o[1], groups)
          if v then add(o[1], nil, v) end
        end
        return changes
      end
      if want.uid and want.uid ~= have.uid then add("uid", have.uid, want.uid) end
      local moves = primary and not fileattrs.owner_matches(have.group, have.gid, primary)
      if moves then add("group", have.group, primary) end
      -- the primary group in effect after this run is not a supplementary
      -- one (a new one given as a gid has no name yet: nothing is dropped)
      local after = have.group
      if moves then after = not primary:match("^%d+$") and primary or nil end
      local groups = wanted_groups(want, after)
      local function shown(list) return list[1] and table.concat(list, ",") or nil end
      if groups and shown(groups) ~= shown(have.groups) then add("groups", shown(have.groups), shown(groups)) end
      for _, attr in ipairs({ "home", "shell", "comment" }) do
        if want[attr] and want[attr] ~= have[attr] then add(attr, have[attr], want[attr]) end
      end
      return changes
    end,
    -- useradd with everything set, or usermod with what the diff lists.
    -- A new home is only recorded (usermod -d), not moved: files stay put.
    apply = function(ctx, want, have, changes)
      local listed = {}
      for _, c in ipairs(changes) do listed[c.attr] = c.to == nil and "" or c.to end  -- nil: no groups
      local argv = { have and "usermod" or "useradd" }
      for _, o in ipairs(OPTIONS) do
        local attr, flag = o[1], o[2]
        if listed[attr] ~= nil then
          argv[#argv + 1] = flag
          argv[#argv + 1] = tostring(listed[attr])
        end
      end
      if not have then
        if want.system then argv[#argv + 1] = "-r" end
        argv[#argv + 1] = want.create_home and "-m" or "-M"
      end
      argv[#argv + 1] = "--"
      argv[#argv + 1] = want.name
      ctx.host:exec(argv)
    end,
    delete = function(ctx, have, want)
      local argv = { "userdel" }
      if want.remove_home then argv[#argv + 1] = "-r" end
      argv[#argv + 1] = "--"
      argv[#argv + 1] = have.name
      ctx.host:exec(argv)
    end,
  },
}
