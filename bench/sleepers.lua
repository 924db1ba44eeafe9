-- sleepers.lua: memory of N coroutines sleeping on timers at once; prints
-- the resident set size (MB) measured while all of them sleep.
--   orch lua bench/sleepers.lua [N]
local loop = require("orch.core.loop")

local function rss_mb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
end

local n = tonumber(arg[1]) or 10000
local base = rss_mb()
for _ = 1, n do loop.spawn(function() loop.sleep(1) end) end
loop.sleep(0.5)  -- every task has started and sleeps now
collectgarbage()
print(("%.1f %.1f"):format(rss_mb(), base))
