-- cli/args.lua: parse a command's arguments against its option table, with
-- errors that say which argument was wrong.
local M = {}

local function find(spec, name)
  for _, o in ipairs(spec.options or {}) do
    if o.long == name or o.short == name then return o end
  end
end

local function key(o) return (o.long or o.short):gsub("^%-+", ""):gsub("%-", "_") end

--- Parse argv (a list) for a command spec; returns opts (by long name,
-- dashes as underscores) and the positional list, or nil, message.
-- "--" ends the options; "--opt=value" and "--opt value" both work, and
-- with spec.single_dash "-opt" and "-opt=value" too.
function M.parse(spec, argv)
  local opts, rest = {}, {}
  for _, o in ipairs(spec.options or {}) do
    if o.multi then opts[key(o)] = {} elseif o.default ~= nil then opts[key(o)] = o.default end
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      table.move(argv, i + 1, #argv, #rest + 1, rest)
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      -- Terraform's spelling, for commands that take it: -auto-approve,
      -- -var=k=v, -parallelism=5 are --auto-approve, --var k=v, ...
      local given = a
      if spec.single_dash and a:match("^%-[^-][^=]") and not find(spec, a) then a = "-" .. a end
      local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = find(spec, name)
      if not o then return nil, ("unknown option '%s'"):format((given:match("^[^=]*"))) end
      local value = true
      if o.arg then
        value = inline
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, ("option '%s' needs a value (%s)"):format(name, o.arg) end
        end
        if o.number then
          local n = tonumber(value)
          if not n then return nil, ("option '%s' expects a number, got '%s'"):format(name, value) end
          value = n
        end
      elseif inline then
        return nil, ("option '%s' takes no value"):format(name)
      end
      if o.multi then table.insert(opts[key(o)], value) else opts[key(o)] = value end
      if spec.stop_at_first and o.stop then
        table.move(argv, i + 1, #argv, #rest + 1, rest)
        break
      end
    else
      rest[#rest + 1] = a
      if spec.stop_at_first then
        table.move(argv, i + 1, #argv, #rest + 1, rest)
        break
      end
    end
    i = i + 1
  end
  return opts, rest
end

--- Help text for a command spec.
function M.help(spec)
  local lines = { "usage: " .. spec.usage, "", spec.summary }
  if spec.description then lines[#lines + 1] = ""; lines[#lines + 1] = spec.description end
  if spec.options and #spec.options > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "options:"
    for _, o in ipairs(spec.options) do
      local names = (o.short and (o.short .. ", ") or "    ") .. (o.long or "")
      if o.arg then names = names .. " " .. o.arg end
      lines[#lines + 1] = ("  %-26s %s"):format(names, o.help)
    end
    if spec.single_dash then
      lines[#lines + 1] = "Terraform's single-dash spellings work too: -var=NAME=VALUE, -parallelism=N, ..."
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

--- A usage error of `orch CMD` (or of orch itself): two lines on stderr,
-- the second pointing at the help; returns exit code 2.
function M.usage_error(cmd, msg)
  io.stderr:write(("orch%s: %s\n"):format(cmd and (" " .. cmd) or "", msg))
  io.stderr:write(("try 'orch help%s'\n"):format(cmd and (" " .. cmd) or ""))
  return 2
end

return M
