-- pipeline/cron.lua: parse 5-field cron expressions and find their next fire time.
local M = {}

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }
local DAYS = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 }

local FIELDS = {
  { key = "minutes", name = "minute", min = 0, max = 59 },
  { key = "hours", name = "hour", min = 0, max = 23 },
  { key = "doms", name = "day of month", min = 1, max = 31 },
  { key = "months", name = "month", min = 1, max = 12, names = MONTHS },
  { key = "dows", name = "day of week", min = 0, max = 7, names = DAYS },  -- 7 folds to 0
}

local MACROS = {
  ["@hourly"] = "0 * * * *",
  ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *",
  ["@weekly"] = "0 0 * * 0",
  ["@monthly"] = "0 0 1 * *",
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *",
}

-- Far enough for any yearly schedule and the 4-yearly Feb 29; a leap day
-- across a skipped century leap year (2100) is out of reach and gives nil.
local HORIZON_YEARS = 5

-- Raised inside the parser, caught and reworded by M.parse.
local function bad(field, fmt, ...)
  error({ why = (field and field.name .. ": " or "") .. fmt:format(...) }, 0)
end

local function parse_value(field, s)
  if s:match("^%d+$") then
    local n = tonumber(s)
    if n < field.min or n > field.max then
      bad(field, "%s is out of range %d-%d", s, field.min, field.max)
    end
    return math.tointeger(n)
  end
  local named = field.names and field.names[s:lower()]
  if named then return named end
  if s == "" then bad(field, "missing value") end
  if field.names and s:match("^%a+$") then bad(field, "unknown name '%s'", s) end
  bad(field, "'%s' is not a number", s)
end

-- One list item: `*`, `a`, `a-b`, each optionally `/step`; `a/n` means a-max/n.
local function parse_item(field, item, set)
  if item == "" then bad(field, "empty list item") end
  local range, step = item:match("^([^/]*)/(.*)$")
  range = range or item
  local lo, hi
  if range == "*" then
    lo, hi = field.min, field.max
  else
    local a, b = range:match("^([^-]*)%-(.*)$")
    if a then
      lo, hi = parse_value(field, a), parse_value(field, b)
      if lo > hi then bad(field, "range %s is reversed", range) end
    else
      lo = parse_value(field, range)
      hi = step and field.max or lo
    end
  end
  local by = 1
  if step then
    if not step:match("^%d+$") then bad(field, "step '%s' is not a number", step) end
    by = math.tointeger(tonumber(step)) or 0
    if by == 0 then bad(field, "step must be at least 1, got %s", step) end
  end
  for v = lo, hi, by do set[v] = true end
end

local function parse_field(field, text)
  local set = {}
  for item in (text .. ","):gmatch("([^,]*),") do parse_item(field, item, set) end
  return set
end

-- 0 = Sunday (Sakamoto): pure arithmetic, so no time zone gets involved.
local OFFSETS = { 0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4 }
local function weekday(y, m, d)
  if m < 3 then y = y - 1 end
  return (y + y // 4 - y // 100 + y // 400 + OFFSETS[m] + d) % 7
end

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function days_in(y, m)
  if m == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then return 29 end
  return MONTH_DAYS[m]
end

local Schedule = {}
Schedule.__index = Schedule

function Schedule:__tostring() return "cron(" .. self.text .. ")" end

-- cron's rule: with both day fields restricted, either may match; when one
-- is `*` (a field starting with `*`, as in Vixie cron, so `*/2` counts) its
-- set is full and only the other decides.
function Schedule:is_day(y, m, d)
  local dom, dow = self.doms[d], self.dows[weekday(y, m, d)]
  if self.dom_star or self.dow_star then return dom and dow end
  return dom or dow
end

--- The first fire time strictly after `after` (epoch seconds, default now),
--- in local time, or nil when nothing matches within HORIZON_YEARS.
-- Walks the calendar, skipping whole months, days and hours that can't
-- match: at most ~1900 day steps, however sparse the schedule.
function Schedule:next(after)
  after = after or os.time()
  if type(after) ~= "number" then
    error("cron: next() wants epoch seconds, got " .. type(after), 2)
  end
  local t = os.date("*t", math.floor(after))
  local y, mo, d, h, mi = t.year, t.month, t.day, t.hour, t.min + 1
  local last_year = y + HORIZON_YEARS
  while true do
    if mo > 12 then mo, y = 1, y + 1 end  -- a skipped month carries before days_in
    if mi > 59 then mi, h = 0, h + 1 end
    if h > 23 then h, d = 0, d + 1 end
    if d > days_in(y, mo) then d, mo = 1, mo + 1 end
    if mo > 12 then mo, y = 1, y + 1 end
    if y > last_year then return nil end
    if not self.months[mo] then
      mo, d, h, mi = mo + 1, 1, 0, 0
    elseif not self:is_day(y, mo, d) then
      d, h, mi = d + 1, 0, 0
    elseif not self.hours[h] then
      h, mi = h + 1, 0
    else
      while mi <= 59 and not self.minutes[mi] do mi = mi + 1 end
      if mi <= 59 then
        -- mktime resolves DST: a skipped wall time moves, a repeated one
        -- fires once; the check keeps the answer strictly after `after`.
        local at = os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = 0 })
        if at > after then return at end
        mi = mi + 1
      end
    end
  end
end

--- A schedule for `expr` (5 fields or an @macro); raises on a bad one.
function M.parse(expr)
  if type(expr) ~= "string" then
    error("cron: expression must be a string, got " .. type(expr), 2)
  end
  local ok, res = pcall(function()
    local body = expr:match("^%s*(.-)%s*$")
    if body:sub(1, 1) == "@" then
      body = MACROS[body:lower()] or bad(nil, "unknown macro '%s'", body)
    end
    local words = {}
    for w in body:gmatch("%S+") do words[#words + 1] = w end
    if #words ~= 5 then bad(nil, "expected 5 fields, got %d", #words) end
    local s = setmetatable({ text = expr }, Schedule)
    for i, field in ipairs(FIELDS) do s[field.key] = parse_field(field, words[i]) end
    s.dows[0] = s.dows[0] or s.dows[7]
    s.dom_star, s.dow_star = words[3]:sub(1, 1) == "*", words[5]:sub(1, 1) == "*"
    -- 0 0 31 2 * parses, and would wait forever without a word
    if not s:next(0) then bad(nil, "no date ever matches it (like 31 February), so it would never fire") end
    return s
  end)
  if ok then return res end
  if type(res) ~= "table" then error(res, 0) end  -- a bug here, not in expr
  error(("cron: bad expression '%s': %s"):format(expr, res.why), 2)
end

return M
