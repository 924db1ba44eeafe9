-- cli/script.lua: `orch lua FILE [ARGS]` and `orch -e CODE`: Lua with the
-- engine loaded, run as lua5.4 would run it, tasks finished before exit.
local info = require("orch.core.info")
local errors = require("orch.errors")

local M = {}

-- Scripts see the loop run to the end, as a blocking interpreter would.
local function finish_tasks()
  require("orch.core.loop").run()
end

local function report_error(err)
  io.stderr:write("orch: ", errors.message(err, true), "\n")
end

--- Run a Lua file like lua5.4: arg[0] is the script, ... are its args.
function M.run_file(path, script_args)
  local chunk, err = loadfile(path)
  if not chunk then
    io.stderr:write("orch: ", err, "\n")
    return 2
  end
  local argt = { [-1] = "lua", [-2] = info.exe, [0] = path }
  for i, a in ipairs(script_args) do argt[i] = a end
  _G.arg = argt
  local ok, e = xpcall(chunk, errors.traceback, table.unpack(script_args))
  if ok then ok, e = xpcall(finish_tasks, errors.traceback) end
  if not ok then report_error(e); return 1 end
  return 0
end

--- Run a chunk given on the command line (orch -e CODE).
function M.run_code(code)
  local chunk, err = load(code, "=(command line)")
  if not chunk then io.stderr:write("orch: ", err, "\n"); return 2 end
  local ok, e = xpcall(chunk, errors.traceback)
  if ok then ok, e = xpcall(finish_tasks, errors.traceback) end
  if not ok then report_error(e); return 1 end
  return 0
end

return M
