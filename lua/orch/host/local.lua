-- host/local.lua: the host interface providers use, for the local machine. An
-- SSH host offers the same methods, so a provider written against these
-- runs anywhere unchanged.
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local task = require("orch.task")
local facts = require("orch.host.facts")
local paths = require("orch.paths")

local M = {}

local Host = {}
Host.__index = Host

--- Run a command (a shell string or an argv list): { code, signal,
-- stdout, stderr }. A failure raises, naming the host and command, unless
-- opts.check == false. opts: env, cwd, stdin, timeout (as orch.proc).
function Host:exec(cmd, opts)
  opts = task.command_opts(opts or {})
  local res, err = proc.run(cmd, opts)   -- (a secret in cmd stays off `ps`: orch.proc)
  if not res then
    if opts.check == false then return nil, err end
    error(("%s: %s"):format(self.name, err), 2)
  end
  if not res.ok and opts.check ~= false then
    error(("%s: %s"):format(self.name, proc.failure_message(res, cmd)), 2)
  end
  return res
end

--- stat (following links; opts.link = true for lstat), with the file's
-- sha256 when opts.sha256 and it is a regular file. nil when absent;
-- other failures as nil, err, code.
function Host:stat(path, opts)
  local st, err, code = (opts and opts.link and fs.lstat or fs.stat)(path)
  if not st then
    if code == "ENOENT" or code == "ENOTDIR" then return nil end
    return nil, err, code
  end
  if opts and opts.sha256 and st.type == "file" then
    st.sha256, err, code = fs.sha256(path)
    if not st.sha256 then return nil, err, code end
  end
  return st
end

--- path as orch records it: absolute (against the current folder) and normalised.
function Host:absolute(path) return paths.absolute(path) end

--- Temporaries an interrupted atomic write of path left beside it
-- (".NAME.orch-" and six random characters): their paths.
function Host:leftover_temps(path)
  local dir, base = path:match("^(.*)/([^/]*)$")
  return paths.temps_of(dir, base, fs.list(dir ~= "" and dir or "/") or {})
end

function Host:read(path) return fs.read(path) end

--- Atomic write: temp file beside path, mode/owner set, then rename.
function Host:write(path, content, opts) return fs.write(path, content, opts) end

function Host:mkdir(path, mode) return fs.mkdir(path, mode) end
function Host:chmod(path, mode) return fs.chmod(path, mode) end
function Host:chown(path, owner, group) return fs.chown(path, owner, group) end
function Host:symlink(target, path) return fs.symlink(target, path) end
function Host:readlink(path) return fs.readlink(path) end
function Host:rename(from, to) return fs.rename(from, to) end
function Host:remove(path, opts) return fs.remove(path, opts) end
function Host:walk(path) return fs.walk(path) end

--- A temp file with content on the host; returns its path and a cleanup.
function Host:temp_file(content)
  local dir = assert(fs.tmpdir("orch-tmp-"))
  local path = dir .. "/file"
  local ok, err, code = fs.write(path, content, { mode = "0600" })
  if not ok then fs.remove(dir, { recursive = true }); return nil, err, code end
  return path, function() fs.remove(dir, { recursive = true }) end
end

--- Facts about the machine (orch.host.facts), gathered once and cached.
Host.facts = facts.of

--- Copy a file or tree: on the local machine, a copy.
function Host:put(src, dst)
  local r = self:exec({ "cp", "-a", "--", src, dst }, { check = false })
  if not r or r.code ~= 0 then return nil, ("%s: cp %s %s failed"):format(self.name, src, dst), "EFAILURE" end
  return true
end
Host.get = Host.put

function Host:close() end

function Host:__tostring() return "host " .. self.name end

--- The local machine as a host; `h` (an inventory entry) names it.
function M.localhost(h)
  h = h or {}
  return setmetatable({ name = h.name or "local", address = "localhost", roles = h.roles or {},
    vars = h.vars or {}, connection = "local" }, Host)
end

return M
