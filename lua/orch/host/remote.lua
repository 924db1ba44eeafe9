-- host/remote.lua: a host reached over SSH, with the same methods as the local
-- one (orch.host.local), so every provider runs on it unchanged. Files go over
-- SFTP (host/sftp.lua: no remote process per operation, requests sent in
-- flights); commands over exec channels, all on one session opened once
-- per run.
local fs = require("orch.core.fs")
local secret = require("orch.secret")
local proc = require("orch.proc")
local facts = require("orch.host.facts")
local paths = require("orch.paths")
local prefetch = require("orch.host.prefetch")
local sftp = require("orch.host.sftp")
local task = require("orch.task")

local M = {}

local Remote = {}
Remote.__index = Remote

local quote = proc.quote

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end
local function basename(path) return path:match("([^/]*)$") end

-- What runs a line that holds a secret: the line itself comes first on
-- stdin, so the host's `ps` shows only this. `read -r` takes one line (a
-- shell reads a pipe byte by byte, leaving the rest for the command), so
-- the line's backslashes and newlines travel escaped for printf %b.
local READ_LINE = [[sh -c 'IFS= read -r c && eval "$(printf %b "$c")"']]

local function escaped(line)
  return (line:gsub("\\", "\\\\"):gsub("\n", "\\n"))
end

--- The shell command that runs cmd with opts (env, cwd, timeout, become)
-- on the host: a string is a shell command, a list an argv. With a
-- secret in it, the command is READ_LINE and the second value is what
-- goes first on its stdin.
function Remote:command_line(cmd, opts)
  local line = proc.display(secret.reveal_deep(cmd))
  if opts.env then
    local names = {}
    for k in pairs(opts.env) do names[#names + 1] = k end
    table.sort(names)
    local parts = {}
    for _, k in ipairs(names) do
      local v = opts.env[k]
      parts[#parts + 1] = v == false and ("unset " .. k .. ";") or ("export %s=%s;"):format(k, quote(secret.reveal(v)))
    end
    line = table.concat(parts, " ") .. " " .. line
  end
  if opts.cwd then line = ("cd %s && %s"):format(quote(opts.cwd), line) end
  local preamble
  if secret.contains(line) then line, preamble = READ_LINE, escaped(line) .. "\n" end
  if opts.timeout then
    -- coreutils timeout leads a process group and signals all of it
    line = ("timeout -k %g %g sh -c %s"):format(opts.grace or 2, opts.timeout, quote(line))
  end
  -- (orch's own reads see the host as SFTP does: as the login user)
  if self.become and not opts._reads_only then
    line = ("sudo %s-u %s -- sh -c %s"):format(self.become_password and "-S -p '' " or "-n ",
      quote(self.become_user or "root"), quote(line))
  end
  return line, preamble
end

-- A helper command of this module (find, mv, rm, sha256sum): its result,
-- or nil, err, code naming the host when it failed or the host was lost.
local function helper(self, argv, reads_only)
  local r = self:exec(argv, { check = false, _reads_only = reads_only })
  if r.lost then return nil, r.error, r.code_name end
  if r.code ~= 0 then
    local why = r.stderr:gsub("%s+$", "")
    return nil, ("%s: %s: %s"):format(self.name, proc.display(argv), why ~= "" and why or proc.failure(r)), "EFAILURE"
  end
  return r
end

--- Run a command: { code | signal, stdout, stderr, ok }, raising on
-- failure (naming the host) unless opts.check == false.
function Remote:exec(cmd, opts)
  -- a command may change anything a batched read said (_reads_only: one
  -- of orch's own that only reads, such as the batch itself; it runs as
  -- the login user, without become, to see what SFTP sees)
  if not (opts and opts._reads_only) then self.cache, self.fresh = nil, {} end
  opts = task.command_opts(opts or {})
  proc.check_timeout(opts.timeout)
  local line, preamble = self:command_line(cmd, opts)
  local stdin = opts.stdin
  if preamble then stdin = preamble .. (stdin or "") end
  if self.become and self.become_password and not opts._reads_only then
    stdin = secret.reveal(self.become_password) .. "\n" .. (stdin or "")
  end
  -- the command's own timeout is kept here too, by a deadline a stalled
  -- network can't hold up: the remote `timeout`, plus its grace, plus 1 s
  local deadline = opts.timeout and (opts.timeout + (opts.grace or 2) + 1)
  local res, err, code = self.session:exec(line, stdin, opts.keep_stdin, deadline)
  if not res and code == "ETIMEDOUT" and opts.timeout then
    res = { code = 124, stdout = "", stderr = err, timed_out = true, timeout = opts.timeout }
  elseif not res then
    -- the host was lost (a transport failure, not the command's): said as a
    -- result with check = false, so r.stdout still reads, else raised
    local why = ("%s: lost: %s"):format(self.name, err)
    if opts.check == false then
      return { ok = false, lost = true, error = why, code_name = code, stdout = "", stderr = why }
    end
    error(why, 2)
  end
  if opts.timeout and res.code == 124 then
    res.timed_out, res.timeout = true, opts.timeout
  end
  res.shell = type(cmd) == "string"
  res.ok = proc.failure(res) == nil
  if not res.ok and opts.check ~= false then
    error(("%s: %s"):format(self.name, proc.failure_message(res, cmd)), 2)
  end
  return res
end

-- passwd and group, side by side over SFTP: two round trips and no
-- process on the host. A host that lacks one has no names of that kind; a
-- lost host raises, naming it, rather than passing for one without users.
local function passwd_and_group(self)
  local res, errs, codes = sftp.read_many(self.session, { "/etc/passwd", "/etc/group" })
  if not res then error(errs, 0) end
  for i = 1, 2 do
    if res[i] == false and codes[i] ~= "ENOENT" then error(errs[i], 0) end
  end
  return res[1] or "", res[2] or ""
end

-- passwd and group, read once per host: SFTP gives ids, users give names.
local function id_maps(self)
  if not self.users then
    local passwd, group = passwd_and_group(self)
    self.users, self.user_ids, self.groups, self.group_ids = {}, {}, {}, {}
    for line in passwd:gmatch("[^\n]+") do
      local name, id = line:match("^([^:]*):[^:]*:(%d+):")
      if name then
        id = tonumber(id)
        if not self.users[id] then self.users[id] = name end
        self.user_ids[name] = id
      end
    end
    for line in group:gmatch("[^\n]+") do
      local name, id = line:match("^([^:]*):[^:]*:(%d+):")
      if name then
        id = tonumber(id)
        if not self.groups[id] then self.groups[id] = name end
        self.group_ids[name] = id
      end
    end
  end
  return self
end

-- A name or numeric id to an id on this host; nil, message for an unknown name.
local function to_id(self, v, group)
  if v == nil then return nil end
  if math.type(v) == "integer" or tostring(v):match("^%d+$") then return tonumber(v) end
  id_maps(self)
  local id = (group and self.group_ids or self.user_ids)[v]
  if not id then return nil, ("%s: no such %s '%s'"):format(self.name, group and "group" or "user", v) end
  return id
end

-- ---- reads answered from one batch (host/prefetch.lua) ----
-- self.expected: what the last run read on this host ({ [path] = kinds:
-- l lstat, s stat, h sha256, c content, r link }), set by the run from the
-- store; self.reads: what this run has asked, saved for the next one.
-- The first read of an expected path fetches every expected path not read
-- yet in one command; its answers stand until orch changes something on
-- the host or runs a command there (self.cache = nil), and the next miss
-- fetches again. What was not expected is read live.

-- orch is about to change something on the host (at path): what a batch
-- said of it may no longer hold.
local function changing(self, path)
  self.cache = nil
  if path then self.placed[path] = true end
end

--- The reads to expect (the run sets them from the state store).
function Remote:expect(reads) self.expected = reads end

local function asked(self, path, kinds)
  if path:sub(1, 1) ~= "/" then return end   -- the batch takes absolute paths only
  local have = self.reads[path] or ""
  for k in kinds:gmatch(".") do
    if not have:find(k, 1, true) then have = have .. k end
  end
  self.reads[path] = have
end

-- The batch's answer for path, fetching the batch on a miss; nil: read live.
local function batched(self, path)
  local cached = self.cache and self.cache[path]
  if cached then return cached end
  local kinds = self.expected and self.expected[path]
  if not kinds or self.no_batch then return nil end
  local batch, room = { [path] = kinds }, prefetch.path_bytes - #path
  for p, k in pairs(self.expected) do
    if room < #p then break end
    if not self.reads[p] and not batch[p] and not (self.cache and self.cache[p]) then
      batch[p], room = k, room - #p
    end
  end
  local r = self:exec(prefetch.command(batch), { check = false, _reads_only = true })
  local got = prefetch.parse(r.stdout, batch)
  if not got then   -- no GNU find or base64 there, or a lost host: live, as before
    self.no_batch = true
    return nil
  end
  self.cache = self.cache or {}
  for p, e in pairs(got) do self.cache[p] = e end
  return self.cache[path]
end

-- names cost reading passwd and group once per host: only if asked for
local function with_names(self, st)
  return setmetatable(st, { __index = function(t, k)
    if k == "user" then return id_maps(self).users[t.uid] end
    if k == "group" then return id_maps(self).groups[t.gid] end
  end })
end

-- A stat as Remote:stat gives it, from a batch's entry: a fresh table
-- (callers may keep it); false when absent; nil when the entry lacks
-- what was asked (a content, a hash).
local function stat_from(self, e, link, want_sha)
  local s = e[link and "l" or "s"]
  if not s then return s end
  if want_sha and s.type == "file" and not (e.content or e.sha256) then return nil end
  local st = { type = s.type, mode = s.mode, uid = s.uid, gid = s.gid, size = s.size, mtime = s.mtime,
    target = link and s.target or nil }
  if want_sha and s.type == "file" then
    st.sha256, st.content = e.sha256 or fs.sha256_data(e.content), e.content
  end
  return with_names(self, st)
end

--- stat (or lstat with opts.link), plus sha256 of a regular file with
-- opts.sha256. nil when absent; failures as nil, err, code.
function Remote:stat(path, opts)
  local link, want_sha = opts and opts.link, opts and opts.sha256
  asked(self, path, (link and "l" or "s") .. (want_sha and "h" or ""))
  -- in a folder this run made, with no command run since, nothing is but
  -- what orch put there: anything else is absent, and no one is asked
  if self.fresh[dirname(path)] and not self.placed[path] then return nil end
  local e = batched(self, path)
  if e then
    local known = stat_from(self, e, link, want_sha)
    if known ~= nil then return known or nil end
  end
  local st, err, code
  if link then
    -- the target in the same flight: a path that is no link fails it, unheard
    local res, errs, codes = self.session:sftp({ { "lstat", path }, { "readlink", path } })
    if not res then return nil, errs, codes end
    st, err, code = res[1], errs[1], codes[1]
    if st then st.target = st.type == "link" and res[2] or nil end
  else
    st, err, code = sftp.stat(self.session, path)
  end
  if not st then
    if code == "ENOENT" then return nil end
    return nil, err, code
  end
  with_names(self, st)
  -- (looked at first: opening a fifo would hold the SFTP channel)
  if want_sha and st.type == "file" then
    -- a small file costs a read (the caller may want the content too:
    -- saves reading twice); a large one a sha256sum
    if st.size <= 1024 * 1024 then
      local data, rerr, rcode = sftp.read(self.session, path)
      if not data then return nil, rerr, rcode end
      st.sha256, st.content = fs.sha256_data(data), data
    else
      local r, xerr, xcode = helper(self, { "sha256sum", "--", path }, true)
      if not r then return nil, xerr, xcode end
      st.sha256 = r.stdout:match("^(%x+)")
    end
  end
  return st
end

--- path as orch records it: normalised; a relative one would depend on
-- the login's folder, so it is refused, naming the host.
function Remote:absolute(path)
  if path:sub(1, 1) ~= "/" then
    error(("%s: '%s' is relative: give an absolute path for a host over SSH"):format(self.name, path), 0)
  end
  return paths.normalize(path)
end

--- Temporaries an interrupted atomic write of path left beside it (none
-- in a directory this run made).
function Remote:leftover_temps(path)
  if self.fresh[dirname(path)] then return {} end
  local names = {}
  local entries, err, code = sftp.list(self.session, dirname(path))
  if not entries and code ~= "ENOENT" then error(err, 0) end
  for i, e in ipairs(entries or {}) do names[i] = e.name end
  return paths.temps_of(dirname(path), basename(path), names)
end

function Remote:read(path)
  asked(self, path, "c")
  local e = batched(self, path)
  if e and e.content then return e.content end
  return sftp.read(self.session, path)
end

-- rename over `to` atomically, as rename(2) does: OpenSSH's
-- posix-rename; a server without it has plain SFTP rename, which refuses
-- an existing target, and then one `mv -f`. extra requests go in the same
-- flight, after the rename; their answers are the second value.
local function rename_over(self, from, to, extra)
  local reqs = { { "posix_rename", from, to } }
  for i, r in ipairs(extra or {}) do reqs[i + 1] = r end
  local res, errs, codes = self.session:sftp(reqs)
  if not res then return nil, errs, codes end
  if res[1] then return true, { table.unpack(res, 2, #reqs) } end
  if codes[1] ~= "ENOTSUP" then return nil, errs[1], codes[1] end
  if not sftp.one(self.session, { "rename", from, to }) then
    local r, err, code = helper(self, { "mv", "-f", "--", from, to })
    if not r then return nil, err, code end
  end
  return true, extra and self.session:sftp(extra) or nil
end

local function mode_of(mode)
  return mode and (type(mode) == "string" and tonumber(mode, 8) or mode)
end

--- Atomic write: a temp file beside path (mode and owner set first), then
-- renamed over it. An existing file keeps its owner unless one is given,
-- and its mode unless one is given; a new one gets 0644. Three flights:
-- the temp's open with a look at path, its bytes and attributes, the
-- rename with a look at the result (what the caller's next stat gets).
function Remote:write(path, content, opts)
  changing(self, path)
  opts = opts or {}
  local uid, err = to_id(self, opts.owner, false)
  if opts.owner and not uid then return nil, err, "ENOUSER" end
  local gid
  gid, err = to_id(self, opts.group, true)
  if opts.group and not gid then return nil, err, "ENOGROUP" end
  local tmp = ("%s/.%s.orch-%06d"):format(dirname(path), basename(path), math.random(0, 999999))
  local look = { { "stat", path } }
  -- SFTP sets owner and group together: the temp's own fills a gap
  if (uid == nil) ~= (gid == nil) then look[2] = { "stat", tmp } end
  local ok, werr, wcode = sftp.write_new(self.session, tmp, content, function(old, cur)
    old = old or nil
    local attrs = { mode = mode_of(opts.mode) or (old and old.mode) or tonumber("644", 8) }
    if old then uid, gid = uid or old.uid, gid or old.gid end   -- keep the owner, as fs.write does
    if cur and (uid or gid) then uid, gid = uid or cur.uid, gid or cur.gid end
    attrs.uid, attrs.gid = uid, gid
    return attrs
  end, look)
  if not ok then return nil, werr, wcode end
  local done, rerr, rcode = rename_over(self, tmp, path, { { "stat", path } })
  if not done then
    self.session:sftp({ { "remove", tmp } })
    return nil, rerr, rcode
  end
  local st = rerr and rerr[1]
  if st then self.cache = { [path] = { s = st } } end   -- what a stat of it says now
  return true
end

--- mkdir -p; true when it created the last directory, false when there.
function Remote:mkdir(path, mode)
  changing(self, path)
  local ok, made, code = sftp.mkdir_p(self.session, path, mode_of(mode) or tonumber("755", 8))
  if ok == nil then return nil, made, code end
  for _, dir in ipairs(made) do self.fresh[dir], self.placed[dir] = true, true end
  return ok
end

function Remote:chmod(path, mode)
  changing(self, path)
  return sftp.one(self.session, { "setstat", path, { mode = mode_of(mode) } })
end

function Remote:chown(path, owner, group)
  changing(self, path)
  local uid, err = to_id(self, owner, false)
  if owner and not uid then return nil, err, "ENOUSER" end
  local gid
  gid, err = to_id(self, group, true)
  if group and not gid then return nil, err, "ENOGROUP" end
  if not (uid and gid) then   -- SFTP sets both: the one not given stays
    local st, serr, scode = sftp.stat(self.session, path)
    if not st then return nil, serr or ("%s: %s: No such file or directory"):format(self.name, path), scode or "ENOENT" end
    uid, gid = uid or st.uid, gid or st.gid
  end
  return sftp.one(self.session, { "setstat", path, { uid = uid, gid = gid } })
end

function Remote:symlink(target, path)
  changing(self, path)
  return sftp.one(self.session, { "symlink", path, target })
end

function Remote:readlink(path)
  asked(self, path, "r")
  local e = batched(self, path)
  if e and e.l and e.l.target then return e.l.target end
  local res, errs, codes = self.session:sftp({ { "readlink", path }, { "lstat", path } })
  if not res then return nil, errs, codes end
  if res[1] then return res[1] end
  -- the server says only "failed" for a path that is no link: said as readlink(2) does
  if res[2] and res[2].type ~= "link" then
    return nil, ("%s: %s: Invalid argument"):format(self.name, path), "EINVAL"
  end
  return nil, errs[1], codes[1]
end

--- rename, replacing `to` atomically like rename(2).
function Remote:rename(from, to)
  changing(self, to)
  local ok, err, code = rename_over(self, from, to)
  if not ok then return nil, err, code end
  return true
end

--- Remove a file or link (or a tree with opts.recursive); false when
-- nothing was there. One flight looks and removes: a directory refuses
-- the remove, and then goes as a directory.
function Remote:remove(path, opts)
  changing(self, path)
  local res, errs, codes = self.session:sftp({ { "lstat", path }, { "remove", path } })
  if not res then return nil, errs, codes end
  local st = res[1]
  if not st then
    if codes[1] ~= "ENOENT" then return nil, errs[1], codes[1] end
    return false
  end
  if st.type ~= "directory" then
    if res[2] then return true end
    return nil, errs[2], codes[2]
  end
  if opts and opts.recursive then
    local r, err, code = helper(self, { "rm", "-rf", "--", path })
    if not r then return nil, err, code end
    return true
  end
  return sftp.one(self.session, { "rmdir", path })
end

local FIND_TYPES = { f = "file", d = "directory", l = "link", p = "fifo", s = "socket", c = "char", b = "block" }

--- Everything below path: { path = relative, type }, parents first, sorted.
function Remote:walk(path)
  local r, err, code = helper(self, { "find", path, "-mindepth", "1", "-printf", "%P\\t%y\\n" }, true)
  if not r then return nil, err, code end
  local entries = {}
  for rel, t in r.stdout:gmatch("([^\t\n]+)\t(%a)\n") do
    entries[#entries + 1] = { path = rel, type = FIND_TYPES[t] or "unknown" }
  end
  table.sort(entries, function(a, b) return a.path < b.path end)
  return entries
end

--- A private temp file with content on the host; its path and a cleanup.
function Remote:temp_file(content)
  changing(self)
  local path = ("/tmp/.orch-%s-%08d"):format(self.name:gsub("[^%w]", "_"), math.random(0, 99999999))
  local ok, err, code = sftp.write_new(self.session, path, content, { mode = tonumber("600", 8) })
  if not ok then return nil, err, code end
  return path, function() sftp.one(self.session, { "remove", path }) end
end

--- Facts (orch.host.facts), gathered in one round trip and cached.
Remote.facts = facts.of

--- Copy a local file or tree to the host (a file keeps its mode).
function Remote:put(src, dst)
  local st = fs.stat(src)
  if not st then return nil, ("%s: No such file or directory"):format(src), "ENOENT" end
  if st.type ~= "directory" then
    return self:write(dst, assert(fs.read(src)), { mode = st.mode })
  end
  local ok, err, code = self:mkdir(dst, st.mode)
  if ok == nil then return nil, err, code end
  for _, e in ipairs(assert(fs.walk(src))) do
    local from, to = src .. "/" .. e.path, dst .. "/" .. e.path
    local est = assert(fs.lstat(from))
    if e.type == "directory" then ok, err, code = self:mkdir(to, est.mode)
    elseif e.type == "link" then ok, err, code = self:symlink(assert(fs.readlink(from)), to)
    else ok, err, code = self:write(to, assert(fs.read(from)), { mode = est.mode }) end
    if ok == nil then return nil, err, code end
  end
  return true
end

--- Copy a file or tree from the host to the local machine.
function Remote:get(src, dst)
  local st, err, code = self:stat(src)
  if not st then return nil, err or ("%s: %s: No such file or directory"):format(self.name, src), code or "ENOENT" end
  if st.type ~= "directory" then
    local data, rerr, rcode = self:read(src)
    if not data then return nil, rerr, rcode end
    return fs.write(dst, data, { mode = st.mode })
  end
  local ok
  ok, err, code = fs.mkdir(dst, st.mode)
  if ok == nil then return nil, err, code end
  for _, e in ipairs(assert(self:walk(src))) do
    local from, to = src .. "/" .. e.path, dst .. "/" .. e.path
    if e.type == "directory" then ok, err, code = fs.mkdir(to)
    elseif e.type == "link" then ok, err, code = fs.symlink(assert(self:readlink(from)), to)
    else
      local est = assert(sftp.stat(self.session, from))
      ok, err, code = fs.write(to, assert(self:read(from)), { mode = est.mode })
    end
    if ok == nil then return nil, err, code end
  end
  return true
end

--- A play will use files here: the SFTP channel opens now, behind the
-- first command, rather than in front of the first file operation.
function Remote:prepare_files()
  self.session:sftp_start()
end

function Remote:close()
  if self.session then self.session:close() end
end

function Remote:__tostring() return "host " .. self.name end

--- A remote host over `session` for inventory entry h.
function M.new(h, session)
  return setmetatable({
    name = h.name, address = h.address or h.name, roles = h.roles or {}, vars = h.vars or {},
    connection = "ssh", session = session, become = h.become, become_user = h.become_user,
    become_password = h.become_password, reads = {}, fresh = {}, placed = {},
  }, Remote)
end

return M
