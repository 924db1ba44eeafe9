-- cli/init.lua: the orch command line: parse, dispatch, choose the exit code.
-- Exit codes: 0 success, 1 the run failed, 2 usage or playbook error.
require("orch._compat").install()
local args = require("orch.cli.args")
local declared = require("orch.cli.commands")

local M = {}

local commands, order = declared.commands, declared.order
M.commands, M.order = commands, order   -- for scripts/cli_docs.lua

--- What `orch`, `orch --help` and `orch help` print: every command in one line.
function M.overview()
  local lines = {
    "usage: orch COMMAND [options]   (orch -e CODE runs a Lua chunk)", "",
    "orch is an orchestration engine: playbooks in Lua, run by one binary.", "",
    "commands:",
  }
  for _, name in ipairs(order) do
    lines[#lines + 1] = ("  %-10s %s"):format(name, commands[name].summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "'orch help COMMAND' or 'orch COMMAND --help' shows a command's options."
  return table.concat(lines, "\n") .. "\n"
end

--- Run the command line argv; returns the exit code.
function M.main(argv)
  local first = argv[1]
  if first == nil or first == "-h" or first == "--help" then
    io.stdout:write(M.overview())
    return first and 0 or 2
  elseif first == "--version" then
    return commands.version.run()
  elseif first == "-e" then
    if argv[2] == nil then return args.usage_error(nil, "-e needs a chunk of Lua code") end
    return require("orch.cli.script").run_code(argv[2])
  end
  local spec = commands[first]
  if not spec then
    return args.usage_error(nil, ("unknown command '%s'"):format(first))
  end
  local opts, rest = args.parse(spec, table.move(argv, 2, #argv, 1, {}))
  if not opts then return args.usage_error(first, rest) end
  if opts.help then io.stdout:write(args.help(spec)); return 0 end
  if opts.persist then require("orch.host.persist").configured = opts.persist end
  -- Ctrl-C can land in the engine's own Lua code (the hook raises wherever
  -- Lua runs): that is an interrupt, not an internal error.
  local ok, code = xpcall(spec.run, debug.traceback, opts, rest)
  -- an orch that ends (not one killed) leaves nothing for a takeover to end
  require("orch.state.orphans").forget()
  if ok then return code end
  if require("orch.core.loop").interrupted() then
    io.stderr:write("orch: interrupted\n")
    return 130
  end
  error(code, 0)
end

return M
