-- errors.lua: how errors read: the traceback of the user's code only (not
-- the engine frames that called it), shown in full only when asked; where
-- in a playbook a call came from; and failures already reported.
local info = require("orch.core.info")

local M = {}

-- A run failure already reported (a failed step or resource, a failed
-- command): exit 1, unlike a plain Lua error in the playbook, which is
-- the author's mistake: exit 2.
local Failure = { __tostring = function(f) return f.message end }

function M.failure(message, reported)
  return setmetatable({ message = message, reported = reported }, Failure)
end

function M.is_failure(err) return getmetatable(err) == Failure end

--- "file:line" of the function `level` levels up from the caller of
-- where (1: the caller itself), as luaL_where finds it; "?" off the end
-- of the stack or in C.
function M.where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or info.currentline <= 0 then return "?" end
  return ("%s:%d"):format(info.short_src, info.currentline)
end

-- orch's own code: its modules and its shipped providers (as sources).
local OWN = { "@" .. info.root .. "/lua/", "@" .. info.root .. "/providers/" }

local function own(source)
  for _, prefix in ipairs(OWN) do
    if source:sub(1, #prefix) == prefix then return true end
  end
  return source:find("/lua/orch/", 1, true) ~= nil
end

--- "file:line" of the nearest caller, from `level` up, that is not orch's
-- own code: the line of the playbook a mistake is in. nil if none is.
function M.user_where(level)
  for l = level + 1, level + 40 do
    local frame = debug.getinfo(l, "Sl")
    if not frame then return nil end
    if frame.currentline > 0 and frame.source:sub(1, 1) == "@" and not own(frame.source) then
      return ("%s:%d"):format(frame.short_src, frame.currentline)
    end
  end
end

--- A message handler for xpcall: the message plus the stack of the code
-- that raised it, cut where the engine's own xpcall began.
function M.traceback(err)
  if type(err) ~= "string" then return err end
  local tb = debug.traceback(err, 2)
  local cut = tb:find("\n\t%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

--- The message for a user: the first part only unless verbose.
function M.message(err, verbose)
  local msg = type(err) == "string" and err or tostring(err)
  if verbose then return msg end
  return (msg:gsub("\nstack traceback:.*$", ""))
end

return M
