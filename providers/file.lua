-- providers/file.lua: a file's content (given, or copied from a file on
-- the control machine), mode and ownership. The engine compares, validates,
-- backs up, writes atomically and records each version.
local fs = require("orch.core.fs")

return {
  file = {
    file = true,
    schema = {
      content  = { type = "string" },
      src      = { type = "string" },   -- beside the playbook, or in files/
    },
    -- nil: the content is not managed, only mode and ownership
    content = function(ctx, want)
      if want.content and want.src then error("file: give content or src, not both", 0) end
      if want.src then return assert(fs.read(ctx.source(want.src, "files"))) end
      return want.content
    end,
  },
}
