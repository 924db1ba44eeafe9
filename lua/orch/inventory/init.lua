-- inventory/init.lua: the hosts a playbook can target, in definition order,
-- from the DSL (host "web01" { ... }), Ansible YAML inventories and Lua
-- inventory files.
local errors = require("orch.errors")
local yaml = require("orch.core.yaml")
local yaml_order = require("orch.inventory.yaml_order")
local suggest_mod = require("orch.suggest")
local fs = require("orch.core.fs")
local secret = require("orch.secret")

local M = {}

local null = yaml.null

local Inventory = {}
Inventory.__index = Inventory

---------------------------------------------------------------------------
-- Names, suggestions, values

M.close_matches = suggest_mod.close_matches
local suggest = suggest_mod.did_you_mean

local function is_list(v)
  if type(v) ~= "table" or getmetatable(v) then return false end
  local n = #v
  if n == 0 then return false end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- What a bad value was, for messages: string "x", number 8, a list, table.
local function describe(v)
  if v == nil then return "nothing" end
  if secret.is(v) then return "a secret" end
  if v == null then return "null" end
  if type(v) == "string" then return ("string %q"):format(v) end
  if type(v) == "table" then
    return next(v) == nil and "an empty table" or is_list(v) and "a list" or "a table"
  end
  return ("%s %s"):format(type(v), tostring(v))
end

-- A mapping (YAML gives {} for both [] and {}: empty counts as a mapping).
local function is_map(v)
  return type(v) == "table" and not getmetatable(v) and not is_list(v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- Host and role names must be writable in a selector: no separators, no
-- glob characters, and not a selector keyword.
local function bad_name(name)
  if type(name) ~= "string" or name == "" then
    return "a name must be a non-empty string, got " .. describe(name)
  end
  if name:find("[%s,&*?%[%]]") or name:find("^!") or name:find("^role:") then
    return ("'%s' cannot be used in a selector (no spaces or , & * ? [ ], "
      .. "no leading ! or role:)"):format(name)
  end
  if name == "all" then return "'all' is reserved: it selects every host" end
end

---------------------------------------------------------------------------
-- Host attributes: one converter each, shared by the DSL and YAML.
-- A converter returns the value to store, or nil and what it must be.

local BOOLEANS = { ["true"] = true, yes = true, on = true, y = true, ["1"] = true,
  ["false"] = false, no = false, off = false, n = false, ["0"] = false }
local CONNECTIONS = { ssh = "ssh", smart = "ssh", ["local"] = "local" }
local CHECKING = { yes = "yes", ["accept-new"] = "accept-new", no = "no" }

local function to_string(v)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "number" then return tostring(v) end
  return nil, "must be a non-empty string"
end

-- ~ and ~/x are the control machine's $HOME, as a shell would have it.
local function to_path(v)
  local s, why = to_string(v)
  if not s then return nil, why end
  local home = os.getenv("HOME")
  if home and (s == "~" or s:sub(1, 2) == "~/") then s = home .. s:sub(2) end
  return s
end

local function to_secret(v)
  if secret.is(v) then return v end
  if type(v) == "string" or type(v) == "number" then return secret.new(v) end
  return nil, "must be a string or secret(...)"
end

local converters = {
  address = to_string,
  user = to_string,
  port = function(v)
    if type(v) == "string" and v:match("^%d+$") then v = tonumber(v) end
    if math.type(v) == "integer" and v >= 1 and v <= 65535 then return v end
    return nil, "must be a port number (1-65535)"
  end,
  connection = function(v)
    return CONNECTIONS[v] or nil, "must be 'ssh' or 'local'"
  end,
  key_file = to_path,
  known_hosts = to_path,
  password = to_secret,
  become_password = to_secret,
  become = function(v)
    if type(v) == "boolean" then return v end
    local b = type(v) == "string" and BOOLEANS[v:lower()]
    if b ~= nil then return b end
    return nil, "must be true or false"
  end,
  host_key_checking = function(v)
    if v == true then return "yes" elseif v == false then return "no" end
    return CHECKING[v] or nil, "must be 'yes', 'accept-new' or 'no'"
  end,
  -- OpenSSH's ServerAliveInterval and ServerAliveCountMax: a host silent for
  -- interval x count while work waits is lost (default 15 s x 3)
  server_alive_interval = function(v)
    v = math.tointeger(tonumber(v))
    if v and v >= 1 and v <= 86400 then return v end
    return nil, "must be a whole number of seconds (1-86400)"
  end,
  server_alive_count_max = function(v)
    v = math.tointeger(tonumber(v))
    if v and v >= 1 and v <= 1000 then return v end
    return nil, "must be a whole number (1-1000)"
  end,
  roles = function(v)
    if v == nil or (type(v) == "table" and next(v) == nil) then return {} end
    if not is_list(v) then return nil, "must be a list of role names" end
    local out, seen = {}, {}
    for _, r in ipairs(v) do
      local why = bad_name(r) or (r == "ungrouped" and "'ungrouped' is reserved")
      if why then return nil, "bad role name: " .. why, true end
      if not seen[r] then seen[r] = true; out[#out + 1] = r end
    end
    return out
  end,
  vars = function(v)
    if not is_map(v) then return nil, "must be a table of variables" end
    local out = {}
    for k, x in pairs(v) do out[k] = x end
    return out
  end,
}
local ATTRS = sorted_keys(converters)

local function new_host(name)
  return { name = name, address = name, port = 22, connection = "ssh", become = false,
           roles = {}, vars = {} }
end

---------------------------------------------------------------------------
-- The inventory

--- An empty inventory.
function M.new()
  return setmetatable({ list = {}, by_name = {}, where = {}, role_set = {} }, Inventory)
end

-- Adds hosts all at once, after checking none is defined already, so a
-- failed load leaves the inventory as it was.
local function insert(inv, hosts, wheres)
  for i, h in ipairs(hosts) do
    if inv.by_name[h.name] then
      error(("host '%s' is defined twice: at %s and at %s"):format(h.name,
        inv.where[h.name], wheres[i]), 0)
    end
  end
  for i, h in ipairs(hosts) do
    inv.list[#inv.list + 1] = h
    inv.by_name[h.name] = h
    inv.where[h.name] = wheres[i]
    for _, r in ipairs(h.roles) do inv.role_set[r] = true end
  end
end

--- Add a host from the DSL: host "web01" { address = "10.0.0.11", ... }.
-- `where` ("site.lua:3") names the call in a duplicate's error; other
-- errors are raised without a position, for the caller to add. Returns
-- the host.
function Inventory:add_host(name, attrs, where)
  local why = bad_name(name)
  if why then error("host: " .. why, 0) end
  if attrs == nil then attrs = {} end
  if type(attrs) ~= "table" or getmetatable(attrs) then
    error(("host '%s': expected a table of attributes, got %s"):format(name, describe(attrs)), 0)
  end
  local h = new_host(name)
  for k, v in pairs(attrs) do
    if type(k) ~= "string" then
      error(("host '%s': unexpected positional value %s"):format(name, describe(v)), 0)
    end
    local convert = converters[k]
    if not convert then
      error(("host '%s': unknown attribute '%s'%s"):format(name, k, suggest(k, ATTRS)), 0)
    end
    local val, must, full = convert(v)
    if val == nil then
      error(full and ("host '%s': attribute '%s': %s"):format(name, k, must)
        or ("host '%s': attribute '%s' %s, got %s"):format(name, k, must, describe(v)), 0)
    end
    h[k] = val
  end
  insert(self, { h }, { where or "(unknown)" })
  return h
end

--- The hosts, in definition order (a new list).
function Inventory:hosts()
  return table.move(self.list, 1, #self.list, 1, {})
end

--- The host called `name`, or nil.
function Inventory:get(name)
  return self.by_name[name]
end

--- Every role name, sorted: the roles of the hosts and, from YAML, every
-- group (even one without hosts) but "all" and "ungrouped".
function Inventory:roles()
  return sorted_keys(self.role_set)
end

--- The DSL's `host` function for this inventory: host "web01" { ... }.
-- Errors point at the playbook line of the call.
function Inventory:dsl()
  return function(name)
    local where = errors.where(2)
    return function(attrs)
      local ok, h = pcall(self.add_host, self, name, attrs, where)
      if not ok then error(h, 2) end
      return h
    end
  end
end

-- Keys of a host (in its own mapping or in any vars:) that set its
-- attributes, in order of preference.
local ANSIBLE_KEYS = {
  address = { "ansible_host", "ansible_ssh_host" },
  user = { "ansible_user", "ansible_ssh_user" },
  port = { "ansible_port", "ansible_ssh_port" },
  key_file = { "ansible_ssh_private_key_file", "ansible_private_key_file" },
  connection = { "ansible_connection" },
  password = { "ansible_password", "ansible_ssh_pass", "ansible_ssh_password" },
  become = { "ansible_become" },
  become_password = { "ansible_become_password", "ansible_become_pass" },
  host_key_checking = { "ansible_host_key_checking", "ansible_ssh_host_key_checking" },
}
-- orch's own keys, read only in a host's own mapping: in a group's vars,
-- `port: 8080` is the application's port, not SSH's.
local OWN_KEYS = { address = true, user = true, port = true, key_file = true,
  server_alive_interval = true, server_alive_count_max = true,
  connection = true, become = true, known_hosts = true, host_key_checking = true,
  roles = true }
local GROUP_KEYS = { "children", "hosts", "vars" }

-- A range names at most this many hosts: web[0:99999999] is a typo, and
-- would take gigabytes before anything said so.
M.MAX_RANGE = 100000

-- web[01:03] -> web01, web02, web03: Ansible's host ranges (numbers keep
-- the start's zero padding; letters too; an optional :step). nil and why
-- for a bad one.
local function expand_range(name, outer)
  outer = outer or 1   -- hosts the ranges before this one make: the total multiplies
  local pre, spec, post = name:match("^([^%[]*)%[([^%]]*)%](.*)$")
  if not pre then return { name } end
  local a, b, step = spec:match("^([^:]*):([^:]+):?(%d*)$")
  step = tonumber(step ~= "" and step or "1")
  if not a or step == 0 then return nil, "expected [FROM:TO] or [FROM:TO:STEP]" end
  local from, to, number
  if (a == "" or a:match("^%d+$")) and b:match("^%d+$") then
    from, to, number = tonumber(a ~= "" and a or "0"), tonumber(b), true
  elseif a:match("^%a$") and b:match("^%a$") then
    from, to = a:byte(), b:byte()
  else
    return nil, "expected numbers or single letters"
  end
  if from > to then return nil, "it is empty (the start is past the end)" end
  local count = (to - from) // step + 1
  if outer * count > M.MAX_RANGE then
    return nil, ("it names %d hosts or more, past the %d a range may"):format(outer * count, M.MAX_RANGE)
  end
  local items = {}
  local fmt = number and ((#a > 1 and a:sub(1, 1) == "0") and ("%0" .. #a .. "d") or "%d")
  for k = from, to, step do items[#items + 1] = number and fmt:format(k) or string.char(k) end
  local rest, why = expand_range(post, outer * count)
  if not rest then return nil, why end
  local out = {}
  for _, x in ipairs(items) do
    for _, y in ipairs(rest) do out[#out + 1] = pre .. x .. y end
  end
  return out
end

-- Reads the groups of a YAML inventory into
-- groups[name] = { vars, parents = set, children = set } and
-- hosts[name] = { entries = { { group, vars } }, keys = set of raw keys }.
local function read_groups(path, data, keys)
  local groups, hosts = {}, {}
  local function fail(fmt, ...) error(path .. ": " .. fmt:format(...), 0) end
  local function group(name)
    local g = groups[name]
    if not g then
      g = { name = name, vars = {}, parents = {}, children = {} }
      groups[name] = g
    end
    return g
  end
  local function key_name(k, what)
    if math.type(k) == "integer" then return tostring(k) end
    if type(k) ~= "string" then fail("%s: a name must be a string, got %s", what, describe(k)) end
    return k
  end
  local function read_vars(vars, into, what)
    if vars == nil or vars == null then return end
    if not is_map(vars) then fail("%s: vars must be a mapping of variable names, got %s", what, describe(vars)) end
    for k, v in pairs(vars) do
      if type(k) ~= "string" then fail("%s: variable names must be strings, got %s", what, describe(k)) end
      into[k] = v
    end
  end
  local function read_group(name, def, parent)
    local what = ("group '%s'"):format(name)
    if name ~= "all" and name ~= "ungrouped" then
      local why = bad_name(name)
      if why then fail("%s: %s", what, why) end
    end
    if name == "all" and parent then fail("group 'all' cannot be a child of group '%s'", parent) end
    local g = group(name)
    if parent then
      g.parents[parent] = true
      groups[parent].children[name] = true
    elseif name ~= "all" then
      g.parents.all = true  -- a top-level group is a child of all
    end
    if def == nil or def == null then return end
    if not is_map(def) then
      fail("%s must be a mapping of hosts, vars and children, got %s", what, describe(def))
    end
    for k in pairs(def) do
      if k ~= "hosts" and k ~= "vars" and k ~= "children" then
        fail("%s: unknown key '%s'%s (a group has hosts, vars and children)", what,
          tostring(k), suggest(tostring(k), GROUP_KEYS))
      end
    end
    read_vars(def.vars, g.vars, what)
    if def.hosts ~= nil and def.hosts ~= null then
      if not is_map(def.hosts) then
        fail("%s: hosts must be a mapping of host names, got %s", what, describe(def.hosts))
      end
      for k, hv in pairs(def.hosts) do
        local raw = key_name(k, what)
        local names, why = expand_range(raw)
        if not names then
          local at = keys[raw] and keys[raw].line
          error(("%s%s: %s: bad host range '%s': %s"):format(path, at and (":" .. at) or "", what, raw, why), 0)
        end
        if hv ~= null and not is_map(hv) then
          fail("%s: host '%s' must be a mapping of variables, got %s", what, raw, describe(hv))
        end
        local vars = {}
        read_vars(hv, vars, ("%s: host '%s'"):format(what, raw))
        for idx, hname in ipairs(names) do
          local why = bad_name(hname)
          if why then fail("%s: host %s", what, why) end
          local h = hosts[hname]
          if not h then
            h = { name = hname, entries = {}, keys = {} }
            hosts[hname] = h
          end
          h.entries[#h.entries + 1] = { group = name, vars = vars }
          if not h.keys[raw] then h.keys[raw] = idx end
        end
      end
    end
    if def.children ~= nil and def.children ~= null then
      if not is_map(def.children) then
        fail("%s: children must be a mapping of group names, got %s", what, describe(def.children))
      end
      for k, cdef in pairs(def.children) do
        read_group(key_name(k, what), cdef, name)
      end
    end
  end

  if data == nil or data == null then return groups, hosts end
  if not is_map(data) then
    fail("the top level must be a mapping of groups (like 'all:'), got %s", describe(data))
  end
  group("all")
  for k, def in pairs(data) do
    local name = key_name(k, "the top level")
    if name == "hosts" or name == "vars" or name == "children" then
      fail("'%s' at the top level must be inside a group, like 'all:'", name)
    end
    read_group(name, def, nil)
  end
  return groups, hosts
end

-- Ansible's merge order of groups: by depth (all is 0; a group is one
-- deeper than its deepest parent), then ansible_group_priority, then name;
-- a later group's vars win. Returns rank[group] and lineage[group], the
-- group and its ancestors in that order. Raises on a cycle.
local function group_order(path, groups)
  local depth, visiting = {}, {}
  local function walk(name, trail)
    if depth[name] then return depth[name] end
    if visiting[name] then
      error(("%s: group '%s' is its own ancestor (%s)"):format(path, name,
        table.concat(trail, " > ") .. " > " .. name), 0)
    end
    visiting[name] = true
    trail[#trail + 1] = name
    local d = 0
    for _, p in ipairs(sorted_keys(groups[name].parents)) do
      d = math.max(d, walk(p, trail) + 1)
    end
    trail[#trail] = nil
    visiting[name] = nil
    depth[name] = d
    return d
  end
  local names = sorted_keys(groups)
  local priority = {}
  for _, name in ipairs(names) do
    walk(name, {})
    priority[name] = tonumber(groups[name].vars.ansible_group_priority) or 1
  end
  table.sort(names, function(a, b)
    if depth[a] ~= depth[b] then return depth[a] < depth[b] end
    if priority[a] ~= priority[b] then return priority[a] < priority[b] end
    return a < b
  end)
  local rank = {}
  for i, name in ipairs(names) do rank[name] = i end
  local by_rank = function(a, b) return rank[a] < rank[b] end
  local lineage = setmetatable({}, { __index = function(t, name)
    local set, list = {}, {}
    local function add(g)
      if set[g] then return end
      set[g] = true
      list[#list + 1] = g
      for p in pairs(groups[g].parents) do add(p) end
    end
    add(name)
    add("all")
    table.sort(list, by_rank)
    t[name] = list
    return list
  end })
  return rank, lineage
end

-- Build one host from its entries: roles, resolved vars, attributes.
local function resolve_host(path, groups, rank, lineage, entry)
  local name = entry.name
  local function fail(fmt, ...)
    error(("%s: host '%s': "):format(path, name) .. fmt:format(...), 0)
  end
  -- Its groups and their ancestors, in merge order.
  local order = lineage[entry.entries[1].group]
  local entries = entry.entries
  if #entries > 1 then
    local set = {}
    for _, e in ipairs(entries) do
      for _, g in ipairs(lineage[e.group]) do set[g] = true end
    end
    order = {}
    for g in pairs(set) do order[#order + 1] = g end
    table.sort(order, function(a, b) return rank[a] < rank[b] end)
    entries = table.move(entries, 1, #entries, 1, {})
    table.sort(entries, function(a, b) return rank[a.group] < rank[b.group] end)
  end
  local vars = {}
  for _, g in ipairs(order) do
    for k, v in pairs(groups[g].vars) do vars[k] = v end
  end
  -- The host's own keys, from each group that lists it, in the same order.
  local own = {}
  for _, e in ipairs(entries) do
    for k, v in pairs(e.vars) do
      if OWN_KEYS[k] then own[k] = v else vars[k] = v end
    end
  end
  local h = new_host(name)
  local function set(attr, key, v)
    if v == nil or v == null then return end
    local val, must, full = converters[attr](v)
    if val == nil then
      if full then fail("'%s': %s", key, must) end
      fail("'%s' %s, got %s", key, must, describe(v))
    end
    h[attr] = val
  end
  for attr, keys in pairs(ANSIBLE_KEYS) do
    for i = #keys, 1, -1 do  -- the first key listed wins
      set(attr, keys[i], vars[keys[i]])
      vars[keys[i]] = nil
    end
  end
  for attr, v in pairs(own) do
    if attr ~= "roles" then set(attr, attr, v) end
  end
  local roles = {}
  for _, g in ipairs(order) do
    if g ~= "all" and g ~= "ungrouped" then roles[g] = true end
  end
  if own.roles ~= nil and own.roles ~= null then
    local extra, must, full = converters.roles(own.roles)
    if not extra then
      if full then fail("'roles': %s", must) end
      fail("'roles' %s, got %s", must, describe(own.roles))
    end
    for _, r in ipairs(extra) do roles[r] = true end
  end
  h.roles = sorted_keys(roles)
  h.vars = vars
  return h
end

--- Read an inventory in Ansible's YAML layout (groups with hosts, vars and
-- children; groups become roles). Returns the inventory, or nil, err,
-- code when the file cannot be read; bad YAML or a wrong shape raises.
function Inventory:load_yaml(path)
  local text, err, code = fs.read(path)
  if not text then return nil, err, code end
  local data = yaml.load(text, path)
  local keys = yaml_order.scan_keys(text)
  local groups, entries = read_groups(path, data, keys)
  local rank, lineage = group_order(path, groups)
  local built = {}
  for name, entry in pairs(entries) do
    local h = resolve_host(path, groups, rank, lineage, entry)
    -- written order: its first key in the text, then its place in a range
    local at
    for raw, idx in pairs(entry.keys) do
      local k = keys[raw]
      local pos = { rank = k and k.rank or math.huge, idx = idx, line = k and k.line }
      if not at or pos.rank < at.rank or (pos.rank == at.rank and pos.idx < at.idx) then at = pos end
    end
    built[#built + 1] = { host = h, at = at }
  end
  table.sort(built, function(a, b)
    if a.at.rank ~= b.at.rank then return a.at.rank < b.at.rank end
    if a.at.idx ~= b.at.idx then return a.at.idx < b.at.idx end
    return a.host.name < b.host.name
  end)
  local hosts, wheres = {}, {}
  for i, b in ipairs(built) do
    hosts[i] = b.host
    wheres[i] = b.at.line and ("%s:%d"):format(path, b.at.line) or path
  end
  local ok, e = pcall(insert, self, hosts, wheres)
  if not ok then error(path .. ": " .. e, 0) end
  for name in pairs(groups) do
    if name ~= "all" and name ~= "ungrouped" then self.role_set[name] = true end
  end
  return self
end

--- Run a Lua inventory file, with `host` (the DSL's) in its environment.
-- Returns the inventory, or nil, err, code when it cannot be read.
function Inventory:load_lua(path)
  local text, err, code = fs.read(path)
  if not text then return nil, err, code end
  local env = setmetatable({ host = self:dsl() }, { __index = _G })
  local chunk, why = load(text, "@" .. path, "t", env)
  if not chunk then error(why, 0) end
  chunk()
  return self
end

local function load_file(self, path)
  local ext = (path:match("%.(%w+)$") or ""):lower()
  if ext == "lua" then return self:load_lua(path) end
  if ext == "ini" or ext == "cfg" then
    error(("%s: INI inventories are not supported; convert it to YAML with "
      .. "'ansible-inventory -i %s --list -y'"):format(path, path), 0)
  end
  return self:load_yaml(path)
end

--- Load an inventory file: .lua runs it; anything else is read as YAML
-- (Ansible's INI format is refused with the command that converts it).
-- Returns the inventory, or nil, "path: what is wrong", code for every
-- fault of the file: unreadable ("ENOENT", ...) or wrong ("EINVAL").
function Inventory:load(path)
  if type(path) ~= "string" then
    error("inventory: expected a path (a string), got " .. describe(path), 2)
  end
  -- the same file through -i and the playbook's inventory(): once
  local real = fs.realpath(path)
  self.loaded = self.loaded or {}
  if real and self.loaded[real] then return self end
  if real then self.loaded[real] = true end
  local ok, inv, err, code = pcall(load_file, self, path)
  if ok and inv then return self end
  if real then self.loaded[real] = nil end
  if not ok then return nil, tostring(inv), "EINVAL" end
  return nil, err, code
end

--- Load each file of a list (-i FILE...), in order: the inventory, or
-- nil, err, code for the first that fails.
function Inventory:load_all(paths)
  for _, path in ipairs(paths or {}) do
    local ok, err, code = self:load(path)
    if not ok then return nil, err, code end
  end
  return self
end

return M
