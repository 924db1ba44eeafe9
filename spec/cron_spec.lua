local cron = require("orch.cron")

-- Local wall times, so the spec holds in any time zone.
local function at(y, mo, d, h, mi)
  return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = 0 })
end
local function show(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = t and os.date("%Y-%m-%d %a %H:%M", t) or "nil" end
  return table.concat(out, ", ")
end

-- Thursday 2026-01-15 10:30.
local REF = at(2026, 1, 15, 10, 30)

-- { expr, { expected fires in order, chained with next() }, from = start }
-- An empty list expects nil.
local CASES = {
  -- plain fields
  { "* * * * *", { at(2026, 1, 15, 10, 31), at(2026, 1, 15, 10, 32) } },
  { "30 * * * *", { at(2026, 1, 15, 11, 30), at(2026, 1, 15, 12, 30) } },
  { "45 10 * * *", { at(2026, 1, 15, 10, 45), at(2026, 1, 16, 10, 45) } },
  { "15 10 * * *", { at(2026, 1, 16, 10, 15) } },
  { "  0\t0   * * *  ", { at(2026, 1, 16, 0, 0) } },
  -- lists, ranges, steps
  { "0,20,40 * * * *", { at(2026, 1, 15, 10, 40), at(2026, 1, 15, 11, 0), at(2026, 1, 15, 11, 20) } },
  { "10-12 * * * *", { at(2026, 1, 15, 11, 10), at(2026, 1, 15, 11, 11), at(2026, 1, 15, 11, 12),
                       at(2026, 1, 15, 12, 10) } },
  { "*/7 * * * *", { at(2026, 1, 15, 10, 35), at(2026, 1, 15, 10, 42), at(2026, 1, 15, 10, 49),
                     at(2026, 1, 15, 10, 56), at(2026, 1, 15, 11, 0) } },
  { "10-50/20 * * * *", { at(2026, 1, 15, 10, 50), at(2026, 1, 15, 11, 10), at(2026, 1, 15, 11, 30) } },
  { "40/10 * * * *", { at(2026, 1, 15, 10, 40), at(2026, 1, 15, 10, 50), at(2026, 1, 15, 11, 40) } },
  { "0 */6 * * *", { at(2026, 1, 15, 12, 0), at(2026, 1, 15, 18, 0), at(2026, 1, 16, 0, 0) } },
  { "0 9-17/4 * * *", { at(2026, 1, 15, 13, 0), at(2026, 1, 15, 17, 0), at(2026, 1, 16, 9, 0) } },
  { "0 8-10,14,20-22/2 * * *", { at(2026, 1, 15, 14, 0), at(2026, 1, 15, 20, 0), at(2026, 1, 15, 22, 0),
                                 at(2026, 1, 16, 8, 0) } },
  -- day of month, month, rollovers
  { "0 0 1 * *", { at(2026, 2, 1, 0, 0), at(2026, 3, 1, 0, 0) } },
  { "0 12 31 * *", { at(2026, 1, 31, 12, 0), at(2026, 3, 31, 12, 0), at(2026, 5, 31, 12, 0) } },
  { "0 0 * 3 *", { at(2026, 3, 1, 0, 0), at(2026, 3, 2, 0, 0) } },
  { "0 0 1 jan *", { at(2027, 1, 1, 0, 0), at(2028, 1, 1, 0, 0) } },
  { "0 0 1 JUN-aug *", { at(2026, 6, 1, 0, 0), at(2026, 7, 1, 0, 0), at(2026, 8, 1, 0, 0),
                         at(2027, 6, 1, 0, 0) } },
  { "0 0 1 */4 *", { at(2026, 5, 1, 0, 0), at(2026, 9, 1, 0, 0), at(2027, 1, 1, 0, 0) } },
  { "59 23 31 12 *", { at(2026, 12, 31, 23, 59), at(2027, 12, 31, 23, 59) } },
  { "0 0 1 1 *", { at(2027, 1, 1, 0, 0) }, from = at(2026, 1, 1, 0, 0) },  -- strictly after
  -- day of week, Sunday as 0 and 7
  { "0 0 * * mon", { at(2026, 1, 19, 0, 0), at(2026, 1, 26, 0, 0) } },
  { "0 0 * * 0", { at(2026, 1, 18, 0, 0), at(2026, 1, 25, 0, 0) } },
  { "0 0 * * 7", { at(2026, 1, 18, 0, 0), at(2026, 1, 25, 0, 0) } },
  { "0 0 * * Sun", { at(2026, 1, 18, 0, 0) } },
  { "0 0 * * mon-fri", { at(2026, 1, 16, 0, 0), at(2026, 1, 19, 0, 0), at(2026, 1, 20, 0, 0) } },
  { "0 0 * * 5-7", { at(2026, 1, 16, 0, 0), at(2026, 1, 17, 0, 0), at(2026, 1, 18, 0, 0),
                     at(2026, 1, 23, 0, 0) } },
  { "0 0 * * 1,3,5", { at(2026, 1, 16, 0, 0), at(2026, 1, 19, 0, 0), at(2026, 1, 21, 0, 0) } },
  -- DOM/DOW: both restricted is OR, one `*` leaves only the other
  { "0 0 13 * 5", { at(2026, 4, 3, 0, 0), at(2026, 4, 10, 0, 0), at(2026, 4, 13, 0, 0),
                    at(2026, 4, 17, 0, 0) }, from = at(2026, 4, 1, 0, 0) },
  { "0 0 13 * *", { at(2026, 2, 13, 0, 0), at(2026, 3, 13, 0, 0), at(2026, 4, 13, 0, 0) } },
  { "0 0 * * 5", { at(2026, 1, 16, 0, 0), at(2026, 1, 23, 0, 0) } },
  -- Vixie cron: a field starting with `*` counts as `*`, so this is AND
  { "0 0 */10 * 1", { at(2026, 5, 11, 0, 0) } },
  -- leap day
  { "0 0 29 2 *", { at(2028, 2, 29, 0, 0), at(2032, 2, 29, 0, 0) } },
  -- macros
  { "@hourly", { at(2026, 1, 15, 11, 0), at(2026, 1, 15, 12, 0) } },
  { "@daily", { at(2026, 1, 16, 0, 0) } },
  { "@MIDNIGHT", { at(2026, 1, 16, 0, 0) } },
  { "@weekly", { at(2026, 1, 18, 0, 0), at(2026, 1, 25, 0, 0) } },
  { "@monthly", { at(2026, 2, 1, 0, 0) } },
  { "@yearly", { at(2027, 1, 1, 0, 0) } },
  { "@annually", { at(2027, 1, 1, 0, 0) } },
  -- a chain within working hours, and across a weekend
  { "*/15 9-17 * * mon-fri", { at(2026, 1, 15, 10, 45), at(2026, 1, 15, 11, 0), at(2026, 1, 15, 11, 15),
                               at(2026, 1, 15, 11, 30), at(2026, 1, 15, 11, 45) } },
  { "*/15 9-17 * * mon-fri", { at(2026, 1, 16, 17, 45), at(2026, 1, 19, 9, 0), at(2026, 1, 19, 9, 15) },
    from = at(2026, 1, 16, 17, 40) },
}

local BAD = {
  { "", "expected 5 fields, got 0" },
  { "* * * *", "expected 5 fields, got 4" },
  { "* * * * * *", "expected 5 fields, got 6" },
  { "60 * * * *", "minute: 60 is out of range 0-59" },
  { "* 24 * * *", "hour: 24 is out of range 0-23" },
  { "* * 0 * *", "day of month: 0 is out of range 1-31" },
  { "* * 32 * *", "day of month: 32 is out of range 1-31" },
  { "* * * 13 *", "month: 13 is out of range 1-12" },
  { "* * * * 8", "day of week: 8 is out of range 0-7" },
  { "*/0 * * * *", "minute: step must be at least 1, got 0" },
  { "* 1-5/0 * * *", "hour: step must be at least 1, got 0" },
  { "*/x * * * *", "minute: step 'x' is not a number" },
  { "* * * foo *", "month: unknown name 'foo'" },
  { "* * * mon *", "month: unknown name 'mon'" },
  { "* * * * funday", "day of week: unknown name 'funday'" },
  { "a * * * *", "minute: 'a' is not a number" },
  { "5-1 * * * *", "minute: range 5-1 is reversed" },
  { "* * * * sat-sun", "day of week: range sat-sun is reversed" },
  { "1,,2 * * * *", "minute: empty list item" },
  { "1- * * * *", "minute: missing value" },
  { "@fortnightly", "unknown macro '@fortnightly'" },
  { "@reboot", "unknown macro '@reboot'" },
  -- parses, but no date matches: it would never fire
  { "0 0 30 2 *", "no date ever matches it (like 31 February), so it would never fire" },
  { "0 0 31 4,6,9,11 *", "no date ever matches it" },
  { "* * 31 2 *", "no date ever matches it" },
}

describe("orch.cron", function()
  for _, case in ipairs(CASES) do
    local expr, want, from = case[1], case[2], case.from or REF
    it(("'%s' from %s fires at %s"):format(expr, show({ from }), #want > 0 and show(want) or "nil"), function()
      local s = cron.parse(expr)
      local got, t = {}, from
      for i = 1, math.max(#want, 1) do
        t = s:next(t)
        got[i] = t
        if not t then break end
      end
      if #want == 0 then
        assert.is_nil(got[1], show(got))
      else
        assert.same(want, got, "got " .. show(got))
      end
    end)
  end

  for _, case in ipairs(BAD) do
    local expr, why = case[1], case[2]
    it(("refuses '%s': %s"):format(expr, why), function()
      local ok, err = pcall(function() local s = cron.parse(expr); return s end)  -- no tail call: keep the frame
      assert.is_false(ok)
      -- level 2: the message points at the caller's line
      assert.matches("cron_spec.lua:%d+: cron: bad expression '", err)
      assert.matches("cron: bad expression '" .. expr .. "': " .. why, err, 1, true)
    end)
  end

  it("refuses a non-string expression", function()
    assert.has_error(function() cron.parse(42) end, "cron: expression must be a string, got number")
  end)

  it("keeps the original text", function()
    assert.equals("*/15 9-17 * * mon-fri", cron.parse("*/15 9-17 * * mon-fri").text)
    assert.equals("@daily", cron.parse("@daily").text)
  end)

  it("rounds to whole minutes, strictly after a time with seconds", function()
    local s = cron.parse("* * * * *")
    assert.equals(at(2026, 1, 15, 10, 31), s:next(REF + 59))
    assert.equals(at(2026, 1, 15, 10, 32), s:next(REF + 60))
  end)

  it("defaults to now, with 0 seconds", function()
    local now = os.time()
    local t = cron.parse("* * * * *"):next()
    assert.is_true(t > now and t <= now + 60)
    assert.equals(0, os.date("*t", t).sec)
  end)

end)
