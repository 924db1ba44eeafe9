-- inventory.lua: an Ansible-style YAML inventory of a spec.helpers.sshd
-- lab's servers, written to a file for orch's -i.
local fs = require("orch.core.fs")

local M = {}

-- YAML scalars: strings double-quoted (JSON-style escapes), tables as flow.
local function yaml_value(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      if c == "\n" then return "\\n" end
      if c == '"' or c == "\\" then return "\\" .. c end
      return ("\\x%02x"):format(c:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if #v > 0 or next(v) == nil then
      local items = {}
      for i, x in ipairs(v) do items[i] = yaml_value(x) end
      return "[" .. table.concat(items, ", ") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local items = {}
    for i, k in ipairs(keys) do items[i] = yaml_value(k) .. ": " .. yaml_value(v[k]) end
    return "{" .. table.concat(items, ", ") .. "}"
  end
  error("cannot write a " .. t .. " to YAML")
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

--- Write the inventory of lab's servers; its path. opts as lab:inventory_yaml.
function M.write(lab, opts)
  opts = opts or {}
  local path = opts.path or (lab.dir .. "/hosts.yaml")
  local out = { "# orch spec lab " .. lab.dir, "all:" }
  if opts.vars and next(opts.vars) then
    out[#out + 1] = "  vars:"
    for _, k in ipairs(sorted_keys(opts.vars)) do
      out[#out + 1] = ("    %s: %s"):format(k, yaml_value(opts.vars[k]))
    end
  end
  out[#out + 1] = "  hosts:"
  for i, h in ipairs(lab.hosts) do
    out[#out + 1] = "    " .. h.name .. ":"
    local vars = {
      ansible_host = h.address,
      ansible_port = h.port,
      ansible_user = lab.user,
    }
    if opts.key ~= false then vars.ansible_ssh_private_key_file = opts.key or lab.key end
    local own = opts.host_vars and (opts.host_vars[i] or opts.host_vars[h.name]) or {}
    for k, v in pairs(own) do vars[k] = v end
    for _, k in ipairs(sorted_keys(vars)) do
      out[#out + 1] = ("      %s: %s"):format(k, yaml_value(vars[k]))
    end
  end
  local groups = opts.groups or lab.groups
  if groups and next(groups) then
    out[#out + 1] = "  children:"
    for _, g in ipairs(sorted_keys(groups)) do
      out[#out + 1] = "    " .. g .. ":"
      out[#out + 1] = "      hosts:"
      for _, ref in ipairs(groups[g]) do
        local h = type(ref) == "number" and lab.hosts[ref] or nil
        out[#out + 1] = "        " .. tostring(h and h.name or ref) .. ": {}"
      end
    end
  end
  assert(fs.write(path, table.concat(out, "\n") .. "\n", { mode = "0644" }))
  return path
end

return M
