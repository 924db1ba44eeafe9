-- output.lua: busted's terminal output, closed by the totals line CI reads:
-- "N passed, N failed, N skipped" on a line of its own.
return function(options)
  local busted = require("busted")
  local name = require("orch.core.term").isatty("stdout")
    and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. name)(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    io.stdout:write(("\n%d passed, %d failed, %d skipped\n"):format(
      handler.successesCount, failed, handler.pendingsCount))
    io.stdout:flush()
    return nil, true
  end)
  return handler
end
