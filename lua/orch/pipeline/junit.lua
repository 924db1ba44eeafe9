-- pipeline/junit.lua: a pipeline run as JUnit XML, the report CI systems ingest:
-- a testsuite per pipeline, a testcase per stage.
local M = {}

-- XML text: the five entities escaped, characters XML 1.0 forbids dropped.
local function esc(s)
  s = tostring(s or ""):gsub("[%z\1-\8\11\12\14-\31]", "")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function seconds(s) return ("%.3f"):format(s or 0) end

--- The XML for summary (the pipeline runner's: stages with status,
-- elapsed, reason) and each stage's log from logs[name].
function M.render(pipeline, summary, logs, timestamp)
  local tests, failures, skipped = #summary.stages, 0, 0
  for _, s in ipairs(summary.stages) do
    if s.status == "failed" then failures = failures + 1 end
    if s.status == "skipped" then skipped = skipped + 1 end
  end
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    ('<testsuites name="orch" tests="%d" failures="%d" skipped="%d" time="%s">'):format(tests, failures, skipped,
      seconds(summary.elapsed)),
    ('  <testsuite name="%s" tests="%d" failures="%d" skipped="%d" time="%s" timestamp="%s">'):format(esc(pipeline),
      tests, failures, skipped, seconds(summary.elapsed), os.date("!%Y-%m-%dT%H:%M:%S", math.floor(timestamp))),
  }
  for _, s in ipairs(summary.stages) do
    out[#out + 1] = ('    <testcase name="%s" classname="%s" time="%s">'):format(esc(s.name), esc(pipeline), seconds(s.elapsed))
    if s.status == "failed" then
      out[#out + 1] = ('      <failure message="%s">%s</failure>'):format(esc(s.reason or "failed"), esc(logs[s.name]))
    elseif s.status == "skipped" then
      out[#out + 1] = ('      <skipped message="%s"/>'):format(esc(s.reason))
    end
    if logs[s.name] and logs[s.name] ~= "" then
      out[#out + 1] = ("      <system-out>%s</system-out>"):format(esc(logs[s.name]))
    end
    out[#out + 1] = "    </testcase>"
  end
  out[#out + 1] = "  </testsuite>"
  out[#out + 1] = "</testsuites>"
  return table.concat(out, "\n") .. "\n"
end

return M
