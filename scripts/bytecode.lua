-- bytecode.lua: compile the Lua library to bytecode at build time, so that
-- orch loads it without parsing (ten times faster: parsing was most of a
-- short command's start-up). Run by the build as
--   orch lua scripts/bytecode.lua SRC_DIR DEST_DIR
-- Debug information is kept: tracebacks still name the source lines.
local fs = require("orch.core.fs")

local src, dest = arg[1], arg[2]
assert(src and dest, "usage: orch lua scripts/bytecode.lua SRC_DIR DEST_DIR")
for _, e in ipairs(assert(fs.walk(src))) do
  if e.type == "directory" then
    assert(fs.mkdir(dest .. "/" .. e.path, "0755") ~= nil)
  elseif e.path:match("%.lua$") then
    local chunk = assert(loadfile(src .. "/" .. e.path, "t"))
    assert(fs.mkdir((dest .. "/" .. e.path):match("^(.*)/"), "0755") ~= nil)
    assert(fs.write(dest .. "/" .. e.path, string.dump(chunk)))
  end
end
