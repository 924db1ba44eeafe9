-- procs.lua: this machine's processes as /proc shows them, for the specs:
-- is one alive, its descendants, those whose command line holds a text;
-- and terminate, which signals only the processes it is handed.
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local proc = require("orch.proc")

local M = {}

--- /proc/PID/stat: { state, ppid, start }; nil when there is no such process.
function M.stat(pid)
  local line = fs.read("/proc/" .. pid .. "/stat")
  if not line then return nil end
  local rest = line:match("^%d+ %(.*%) (.*)$")   -- comm may hold ") "
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- fields[1] is field 3 (state), so field N is fields[N - 2]
  return { state = fields[1], ppid = tonumber(fields[2]), start = fields[20] }
end

--- Is the process alive (a zombie counts as dead)?
function M.is_alive(pid)
  local st = M.stat(pid)
  return st ~= nil and st.state ~= "Z"
end

--- Every descendant of pid, with its start time so a recycled pid is never
-- signalled: { { pid, start }, ... }. O(processes) per call; fine here.
function M.descendants(pid)
  local children = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    if name:match("^%d+$") then
      local st = M.stat(name)
      if st then
        children[st.ppid] = children[st.ppid] or {}
        table.insert(children[st.ppid], { pid = tonumber(name), start = st.start })
      end
    end
  end
  local out, queue = {}, { pid }
  while #queue > 0 do
    local p = table.remove(queue)
    for _, c in ipairs(children[p] or {}) do
      out[#out + 1] = c
      queue[#queue + 1] = c.pid
    end
  end
  return out
end

--- Live processes whose command line holds `text` (a zombie's is empty),
-- as "PID: command line" strings. Pass a text only this spec made (its
-- temp folder, a marker), so another project's processes never count.
function M.with_text(text)
  local found = {}
  for _, pid in ipairs(fs.list("/proc") or {}) do
    if pid:match("^%d+$") then
      local cmd = fs.read("/proc/" .. pid .. "/cmdline") or ""
      if cmd:find(text, 1, true) then found[#found + 1] = pid .. ": " .. cmd:gsub("%z", " ") end
    end
  end
  return found
end

--- TERM the listed processes ({ { pid, start }, ... }) if they are still
-- the ones seen (same start time), wait up to 3 s for them to go, then
-- KILL what is left.
function M.terminate(list)
  local function same(c)
    local st = M.stat(c.pid)
    return st ~= nil and st.state ~= "Z" and st.start == c.start
  end
  local deadline = loop.now() + 3
  local sig
  while true do
    local left = {}
    for _, c in ipairs(list) do
      if same(c) then left[#left + 1] = tostring(c.pid) end
    end
    if #left == 0 then return end
    local next_sig = (sig == nil and "TERM") or (loop.now() > deadline and "KILL") or nil
    if sig == "KILL" and loop.now() > deadline + 2 then
      error("processes survive SIGKILL: " .. table.concat(left, " "))
    end
    if next_sig and next_sig ~= sig then
      sig = next_sig
      -- sh's builtin kill: no procps needed (slim images lack /usr/bin/kill)
      proc.run({ "/bin/sh", "-c", 'kill -s "$0" "$@" 2>/dev/null', sig, table.unpack(left) })
    end
    loop.sleep(0.01)
  end
end

return M
