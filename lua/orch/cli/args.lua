-- cli/args.lua: parse a command's arguments against its option table, with
-- errors that say which argument was wrong.
local M = {}

local function find(spec, name)
  for _, o in ipairs(spec.options or {}) do
    if o.long == name or o.short == name then return o end
  end
end

local function key(o) return (o.long or o.short):gsub("^%-+", ""):gsub("%-", "_") end

-- What a number option's ARG allows, unless the option says otherwise
-- (integer, min, above): counts and sizes are whole and at least 1, ids
-- too, seconds are finite and not negative.
local KINDS = {
  N = { integer = true, min = 1 }, BYTES = { integer = true, min = 1 }, RUN_ID = { integer = true, min = 1 },
  SECONDS = { min = 0 },
}

-- value as option o's number, or nil and what is wrong with it.
local function number_of(o, name, value)
  local kind = KINDS[o.arg] or {}
  local integer = o.integer == nil and kind.integer or o.integer
  local min, above = o.min == nil and kind.min or o.min, o.above
  local n = tonumber(value)
  local what = integer and "a whole number" or (o.arg == "SECONDS" and "a number of seconds" or "a number")
  local bound = above and (" above %s"):format(above)
    or (min and o.max and (" from %s to %s"):format(min, o.max))
    or (min and (" of %s or more"):format(min)) or ""
  local bad = ("option '%s' expects %s%s, got '%s'"):format(name, what, bound, value)
  if not n or n ~= n or n == math.huge or n == -math.huge then return nil, bad end
  if integer then
    n = math.tointeger(n)
    if not n or math.abs(n) >= 2^53 then return nil, bad end
  end
  if (above and n <= above) or (min and n < min) or (o.max and n > o.max) then return nil, bad end
  return n
end

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
          local n, why = number_of(o, name, value)
          if not n then return nil, why end
          value = n
        end
        if o.check then
          local why = o.check(value)
          if why then return nil, ("option '%s': %s"):format(name, why) end
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

--- --listen's value: IP:PORT, [IPv6]:PORT, :PORT or PORT (0..65535), with
-- localhost as 127.0.0.1; host and port, or nil and what is wrong. Never a
-- name to look up: what a server binds is said exactly.
function M.parse_listen(v)
  local host, port = v:match("^%[([^%]]*)%]:(%d+)$")
  if not host then host, port = v:match("^([^:]*):(%d+)$") end
  if not host then host, port = "", v:match("^(%d+)$") end
  port = tonumber(port)
  if not port or port > 65535 then return nil, ("expects HOST:PORT or PORT (0 to 65535), got '%s'"):format(v) end
  if host == "" or host == "localhost" then host = "127.0.0.1" end
  if not (host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)) then
    return nil, ("expects an IP address, not the name '%s' (127.0.0.1, 0.0.0.0, [::1])"):format(host)
  end
  return host, math.tointeger(port)
end

--- An option check (o.check): why v is not a --listen address, or nil.
function M.check_listen(v)
  local ok, why = M.parse_listen(v)
  return not ok and why or nil
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
