-- support.lua: what the specs share: the binary under test, temp trees,
-- files, and running orch as a real child process.
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local procs = require("spec.helpers.procs")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers/support%.lua$") or "."
M.root = here
-- ORCH_BIN lets CI run the same specs against the sanitizer build.
-- Absolute, so a spec may run it in another folder (cwd).
M.bin = os.getenv("ORCH_BIN") or (M.root .. "/build/orch")
if M.bin:sub(1, 1) ~= "/" then M.bin = assert(fs.cwd()) .. "/" .. M.bin end

function M.tmpdir()
  return assert(fs.tmpdir("orch-spec-"))
end

function M.remove_tree(path)
  assert(fs.remove(path, { recursive = true }))
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

--- Run a shell command and return its stdout; a failure raises (the
-- spec's own plumbing, not what it tests).
function M.sh(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  assert(f:close())
  return out
end

--- Live processes whose command line holds `text`: spec.helpers.procs.with_text.
M.processes_with = procs.with_text

--- The first of `tools` (command names) not on PATH, or nil: for
-- `pending("needs " .. tool)` in a spec that runs them.
function M.missing(tools)
  for _, tool in ipairs(tools) do
    local r = proc.run({ "/bin/sh", "-c", 'command -v "$0" >/dev/null', tool })
    if not (r and r.ok) then return tool end
  end
  return nil
end

--- Does this process run as root (effective uid 0)? For `pending("needs root ...")`.
function M.is_root()
  return M.read("/proc/self/status"):match("\nUid:%s+%d+%s+(%d+)") == "0"
end

--- This process's pid.
function M.pid()
  return require("orch.core.info").pid
end

--- Is the process alive (a zombie counts as dead)?
M.alive = procs.is_alive

--- Poll check() until it returns a true value (20 s at most), and return
-- that value; for things another process does "soon", never for timings.
function M.eventually(check, what)
  local loop = require("orch.core.loop")
  local deadline = loop.now() + 20
  repeat
    local v = check()
    if v then return v end
    loop.sleep(0.02)
  until loop.now() > deadline
  error(("still not %s after 20 s"):format(what), 2)
end

--- Poll `path` until it holds `text`; its content.
function M.wait_for(path, text)
  return M.eventually(function()
    local f = io.open(path, "rb")
    local data = f and f:read("a")
    if f then f:close() end
    return data and data:find(text, 1, true) and data
  end, ("%q in %s"):format(text, path))
end

--- Play `body` as dir/site.lua with $D in it replaced by dir, keeping
-- the state store in dir/state.db; extra arguments go to orch play.
function M.play(dir, body, ...)
  M.write(dir .. "/site.lua", (body:gsub("%$D", function() return dir end)))
  return M.orch("play", dir .. "/site.lua", "--state", dir .. "/state.db", ...)
end

--- Write `before` to dir/f, play body (resources on $D/f), assert the
-- file became `after` (something changed), then that a second run changes nothing.
function M.converges(dir, before, body, after)
  M.write(dir .. "/f", before)
  local res = M.play(dir, body)
  assert(res.code == 0, res.stdout .. res.stderr)
  assert(M.read(dir .. "/f") == after, ("file is %q, expected %q"):format(M.read(dir .. "/f"), after))
  assert(M.recap(res):match("changed=[1-9]%d*  failed=0"), res.stdout)
  res = M.play(dir, body)
  assert(M.recap(res):match("changed=0  failed=0"), res.stdout)
  assert(M.read(dir .. "/f") == after, "the second run changed the file")
end

--- The counts of a run's recap: "ok=1  changed=0  failed=0  skipped=0".
function M.recap(res)
  return res.stdout:match("ok=%d+  changed=%d+  failed=%d+  skipped=%d+")
end

--- Run the orch binary: { code, signal, stdout, stderr }.
-- The last argument may be an options table for orch.proc.run (env, cwd, stdin).
function M.orch(...)
  local args = { ... }
  local opts = {}
  if type(args[#args]) == "table" then opts = table.remove(args) end
  local argv = { M.bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  opts.argv = argv
  opts.check = false
  opts.env = opts.env or {}
  if opts.env.NO_COLOR == nil then opts.env.NO_COLOR = "1" end
  return proc.run(opts)
end

return M
