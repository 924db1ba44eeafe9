-- host/prefetch.lua: many reads of an SSH host in one round of the network.
-- Asked one at a time over SFTP, each stat, readlink or small file costs
-- one to four round trips, and a play asks dozens; the answers don't depend
-- on each other. So the paths a host was asked for last run (state/reads)
-- go to the host as one command that prints, for all of them, what SFTP
-- would have said: lstat and a link's target, stat, a small file's content
-- (or a large one's sha256). Two finds, one base64 per small file and one
-- sha256sum: GNU tools, as on any Linux; a host without them (or with an
-- answer that doesn't parse) is read live, as before.
local proc = require("orch.proc")
local base64 = require("orch.base64")

local M = {}

-- Content up to this size comes back whole (Remote:stat reads a file this
-- small for its sha256 rather than run sha256sum); a larger one as its
-- sha256 when that was asked. find's -size counts in whole KiB.
M.content_max = 1024 * 1024
local KIB = M.content_max // 1024

-- The command travels in one SSH packet (libssh2 sends at most 35,000
-- bytes): a batch names at most this many bytes of paths (each path
-- appears up to three times); the rest come in the next batch.
M.path_bytes = 8 * 1024

-- Sections, each opened by a marker: L (path, lstat, link target), X
-- (what find said of the paths it could not lstat, a line each, in one
-- field), S (path,
-- stat), C (path, base64 content), H ("sha256  path"), then E. A stat is
-- "TYPE MODE UID GID SIZE MTIME". Every field ends with a NUL, which no
-- path holds. find exits 1 for a missing path: the E marker, not the
-- status, says the answer is whole.
local function script(all, content, hashed)
  local q = {}
  local function list(set)
    local out = {}
    for i, p in ipairs(set) do out[i] = proc.quote(p) end
    return table.concat(out, " ")
  end
  q[#q + 1] = "export LC_ALL=C"
  q[#q + 1] = "printf 'L\\0'; { x=$(find " .. list(all)
    .. " -maxdepth 0 -printf '%p\\0%y %m %U %G %s %T@\\0%l\\0' 2>&1 1>&3); } 3>&1"
  q[#q + 1] = "printf 'X\\0'; [ -z \"$x\" ] || printf '%s\\0' \"$x\""
  q[#q + 1] = "printf 'S\\0'; find -L " .. list(all) .. " -maxdepth 0 -printf '%p\\0%y %m %U %G %s %T@\\0' 2>/dev/null"
  q[#q + 1] = "printf 'C\\0'"
  if #content > 0 then
    q[#q + 1] = ("find -L %s -maxdepth 0 -type f -size -%dk -exec sh -c "
      .. "'for p; do printf \"%%s\\0\" \"$p\"; base64 -w0 < \"$p\"; printf \"\\0\"; done' sh {} + 2>/dev/null")
      :format(list(content), KIB + 1)
  end
  q[#q + 1] = "printf 'H\\0'"
  if #hashed > 0 then
    q[#q + 1] = ("find -L %s -maxdepth 0 -type f -size +%dk -exec sha256sum -z -- {} + 2>/dev/null")
      :format(list(hashed), KIB)
  end
  q[#q + 1] = "printf 'E\\0'"
  return table.concat(q, "\n")
end

--- The command that reads every path of `batch` ({ [path] = kinds }:
-- c wants the content, h the sha256).
function M.command(batch)
  local all, content, hashed = {}, {}, {}
  for path, kinds in pairs(batch) do
    all[#all + 1] = path
    if kinds:find("[ch]") then content[#content + 1] = path end
    if kinds:find("h", 1, true) then hashed[#hashed + 1] = path end
  end
  table.sort(all)
  return script(all, content, hashed)
end

local TYPES = { f = "file", d = "directory", l = "link", p = "fifo", s = "socket", c = "char", b = "block" }

-- "f 644 0 0 27 1701234567.123" as SFTP's stat table. A link that find -L
-- still reports as a link points nowhere: for stat, absent.
local function stat_of(text, follow)
  local y, m, uid, gid, size, mtime = text:match("^(%a) (%d+) (%d+) (%d+) (%d+) ([%d.]+)$")
  if not y then return nil end
  if follow and y == "l" then return false end
  return { type = TYPES[y] or "unknown", mode = tonumber(m, 8), uid = tonumber(uid), gid = tonumber(gid),
    size = tonumber(size), mtime = math.floor(tonumber(mtime)) }
end

-- What a path find could not lstat is, by its message: absent (as SFTP
-- says for ENOENT and ENOTDIR), or not known (nil: read it live, for the
-- error SFTP gives).
local ABSENT = { ["No such file or directory"] = true, ["Not a directory"] = true }

--- What the command printed, for the paths of `batch`: { [path] = { l =
-- lstat|false, s = stat|false, content, sha256 } } (an lstat of a link
-- has its target; a stat find could not take is nil); a path it could
-- not lstat for another reason than absence is left out; nil when the
-- answer is not whole.
function M.parse(out, batch)
  local f = {}
  for field in out:gmatch("([^%z]*)%z") do f[#f + 1] = field end
  if f[1] ~= "L" or f[#f] ~= "E" then return nil end
  local got = {}
  local i, section = 2, nil
  while i < #f do
    local v = f[i]
    if v == "X" or v == "S" or v == "C" or v == "H" then
      section, i = v, i + 1
    elseif section == nil then   -- L: path, lstat, target
      local st = stat_of(f[i + 1] or "")
      if not batch[v] or not st then return nil end
      if st.type == "link" then st.target = f[i + 2] end
      got[v], i = { l = st }, i + 3
    elseif section == "X" then   -- find: 'PATH': reason, a line each
      for line in v:gmatch("[^\n]+") do
        local path, why = line:match("^find: '(.*)': ([^:]*)$")
        if not path then return nil end
        if batch[path] and ABSENT[why] then got[path] = { l = false, s = false } end
      end
      i = i + 1
    elseif section == "S" then
      local e, st = got[v], stat_of(f[i + 1] or "", true)
      if not batch[v] or st == nil then return nil end
      if e then e.s = st end
      i = i + 2
    elseif section == "C" then
      local e, content = got[v], base64.decode(f[i + 1] or "")
      if not batch[v] or not content then return nil end
      if e then e.content = content end
      i = i + 2
    else   -- H: "sha256  path"
      local sha, path = v:match("^(%x+)  (.*)$")
      if not sha or not batch[path] or #sha ~= 64 then return nil end
      if got[path] then got[path].sha256 = sha end
      i = i + 1
    end
  end
  return got
end

return M
