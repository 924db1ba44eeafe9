-- state/orphans.lua: what a killed orch leaves running. Every local
-- command orch starts leads a process group of its own, which orch-keeper
-- (engine/keeper/keeper.c) kills the moment orch dies. Should the keeper
-- die too (kill -9 of both, the OOM killer), this journal is the second
-- line: while a process holds a store's lock, each group it starts is
-- journalled beside the store (STORE.procs/PID: "pgid start-time").
-- Whoever next takes a lock over from that process, now dead, ends the
-- groups still alive (TERM, then KILL) before doing anything, and says so:
-- the same command never runs twice side by side. An orch that ends as it
-- should removes its journal.
local fs = require("orch.core.fs")
local info = require("orch.core.info")
local loop = require("orch.core.loop")
local proc = require("orch.proc")

local M = {}

local function journal_of(store_path, pid) return ("%s.procs/%d"):format(store_path, pid) end

-- /proc/PID/stat: process group and start time (field 5 and 22).
local function stat_of(pid)
  local line = fs.read("/proc/" .. pid .. "/stat")
  local rest = line and line:match("^%d+ %(.*%) (.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return { state = f[1], pgrp = tonumber(f[3]), start = f[20] }
end

local journals = {}   -- this process's, removed when it ends as it should

--- Journal the process groups this process starts, for the store at path
-- (from now on, until it exits).
function M.journal(store_path)
  if store_path == ":memory:" then return end
  local file = journal_of(store_path, info.pid)
  journals[file] = true
  proc.on_spawn = function(pid)
    local st = stat_of(pid)
    local f = io.open(file, "a")
    if not f then   -- the first group: the folder is made when needed
      fs.mkdir(store_path .. ".procs", "0700")
      f = io.open(file, "a")
    end
    if f then f:write(("%d %s\n"):format(pid, st and st.start or "?")); f:close() end
  end
end

--- This process ended as it should: nothing it started is left to end,
-- and the next lock holder need not read its journals.
function M.forget()
  for file in pairs(journals) do os.remove(file) end
  journals = {}
end

-- Every live process by process group, in one look at /proc.
local function groups()
  local by = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    local pid = tonumber(name)
    local st = pid and stat_of(pid)
    if st and st.state ~= "Z" then
      by[st.pgrp] = by[st.pgrp] or {}
      table.insert(by[st.pgrp], pid)
    end
  end
  return by
end

-- The live members of process group pgid that are still the group orch
-- started: its leader with the recorded start time, or (the leader gone)
-- any member, since a group id is not reused while the group lives.
local function members(pgid, start, live)
  local leader = stat_of(pgid)
  if leader and leader.state ~= "Z" and leader.pgrp == pgid and leader.start ~= start then return {} end
  return (live or groups())[pgid] or {}
end

--- End what dead process `pid` (it ran here) left running from the store
-- at path; returns a description of each group ended, then forgets them.
function M.end_left_by(store_path, pid)
  local file = journal_of(store_path, pid)
  local text = fs.read(file)
  if not text then return {} end
  local ended, live = {}, groups()
  for pgid, start in text:gmatch("(%d+) (%S+)") do
    pgid = tonumber(pgid)
    local alive = members(pgid, start, live)
    if #alive > 0 then
      local cmd = (fs.read("/proc/" .. alive[1] .. "/cmdline") or ""):gsub("%z", " "):gsub("%s+$", "")
      ended[#ended + 1] = ("group %d (%d process%s: %s)"):format(pgid, #alive, #alive == 1 and "" or "es", cmd)
      for _, sig in ipairs({ "TERM", "KILL" }) do
        proc.run({ "kill", "-s", sig, "--", "-" .. pgid })
        local deadline = loop.now() + (sig == "TERM" and 5 or 2)
        while #members(pgid, start) > 0 and loop.now() < deadline do loop.sleep(0.02) end
        if #members(pgid, start) == 0 then break end
      end
    end
  end
  fs.remove(file)
  return ended
end

return M
