-- errors.lua: how errors read: the traceback of the user's code only (not
-- the engine frames that called it), shown in full only when asked.
local M = {}

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
