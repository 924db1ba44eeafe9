-- host/sftp.lua: the file operations of a host over SSH, each in as few
-- round trips as SFTP allows. A session's sftp{...} sends a flight of
-- requests at once and has every answer back in one round trip (the
-- server runs them in order); what needs an earlier answer (a handle)
-- waits for the next flight. A read is two flights, a write three, a
-- mkdir -p one. Failures are nil, "host: path: why", CODE.
local M = {}

-- Reads and writes go in pieces of this size (OpenSSH's limit is 255 KiB);
-- a read asks for READ_AHEAD pieces at once.
local PIECE = 64 * 1024
local READ_AHEAD = 16

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

--- One request: its answer, or nil, err, code.
function M.one(sess, req)
  local res, errs, codes = sess:sftp({ req })
  if not res then return nil, errs, codes end
  if res[1] == false and errs[1] then return nil, errs[1], codes[1] end
  return res[1]
end

--- stat: the attributes, nil when absent, or nil, err, code.
function M.stat(sess, path)
  local st, err, code = M.one(sess, { "stat", path })
  if not st and code == "ENOENT" then return nil end
  return st, err, code
end

-- A file read from its open handle r.h, READ_AHEAD pieces a flight.
local function asks(r, reqs)
  for i = 1, READ_AHEAD do
    reqs[#reqs + 1] = { "read", r.h, r.off + (i - 1) * PIECE, PIECE, what = r.path }
  end
end

-- Takes the answers to asks(r), from index `first` of a flight's: true
-- once the file is whole (r.data) or failed (r.err, r.code). A piece that
-- comes back short ends the file unless the next one has bytes (a short
-- read mid-file): then the rest is asked for from where it stopped.
local function took(r, res, errs, codes, first)
  for i = first, first + READ_AHEAD - 1 do
    local data = res[i]
    if data == false then
      r.err, r.code = errs[i], codes[i]
      return true
    end
    if data == "" then
      r.data = table.concat(r.parts)
      return true
    end
    r.parts[#r.parts + 1] = data
    r.off = r.off + #data
    if #data < PIECE then
      if res[i + 1] == "" and i < first + READ_AHEAD - 1 then
        r.data = table.concat(r.parts)
        return true
      end
      return false   -- short mid-file, or the flight's last piece: on from off
    end
  end
  return false
end

--- Whole files, read side by side: every open in one flight, then their
-- pieces together. Returns, per file, its content or false, with errs
-- and codes for the false ones; nil, err, code when the session failed.
function M.read_many(sess, paths)
  local opens = {}
  for i, p in ipairs(paths) do opens[i] = { "open", p, "r" } end
  local handles, errs, codes = sess:sftp(opens)
  if not handles then return nil, errs, codes end
  local out, out_errs, out_codes, reading, closes = {}, {}, {}, {}, {}
  for i, p in ipairs(paths) do
    if handles[i] then
      reading[#reading + 1] = { i = i, h = handles[i], path = p, parts = {}, off = 0 }
      closes[#closes + 1] = { "close", handles[i] }
    else
      out[i], out_errs[i], out_codes[i] = false, errs[i], codes[i]
    end
  end
  local failed, ferr, fcode = false, nil, nil
  while #reading > 0 do
    local reqs = {}
    for _, r in ipairs(reading) do asks(r, reqs) end
    local res, rerrs, rcodes = sess:sftp(reqs)
    if not res then
      failed, ferr, fcode = true, rerrs, rcodes
      break
    end
    local still = {}
    for k, r in ipairs(reading) do
      if took(r, res, rerrs, rcodes, (k - 1) * READ_AHEAD + 1) then
        out[r.i], out_errs[r.i], out_codes[r.i] = r.data or false, r.err, r.code
      else
        still[#still + 1] = r
      end
    end
    reading = still
  end
  if #closes > 0 then sess:sftp(closes, true) end
  if failed then return nil, ferr, fcode end
  return out, out_errs, out_codes
end

--- The whole file at path, or nil, err, code.
function M.read(sess, path)
  local res, errs, codes = M.read_many(sess, { path })
  if not res then return nil, errs, codes end
  if res[1] == false then return nil, errs[1], codes[1] end
  return res[1]
end

--- Writes content to a new file tmp (failing if one is there), closed
-- with the attributes that attrs ({ mode, uid, gid }: set exactly, past
-- the server's umask) gives. Extra requests (a look at the file tmp will
-- replace) go in the first flight, with the open; attrs may be a function
-- of their answers, returning the attributes or nil, err, code. Until
-- then tmp is its owner's only. On a failure tmp is removed.
function M.write_new(sess, tmp, content, attrs, extra)
  local reqs = { { "open", tmp, "wx", type(attrs) == "table" and attrs.mode or tonumber("600", 8) } }
  for i, r in ipairs(extra or {}) do reqs[i + 1] = r end
  local res, errs, codes = sess:sftp(reqs)
  if not res then return nil, errs, codes end
  if not res[1] then return nil, errs[1], codes[1] end
  local h = res[1]
  local function give_up(err, code)
    sess:sftp({ { "close", h }, { "remove", tmp } })
    return nil, err, code
  end
  if type(attrs) == "function" then
    local err, code
    attrs, err, code = attrs(table.unpack(res, 2, #reqs))
    if not attrs then return give_up(err, code) end
  end
  reqs = {}
  for off = 0, #content - 1, PIECE do
    reqs[#reqs + 1] = { "write", h, off, content:sub(off + 1, off + PIECE), what = tmp }
  end
  reqs[#reqs + 1] = { "fsetstat", h, attrs, what = tmp }
  reqs[#reqs + 1] = { "close", h, what = tmp }
  local wres, werrs, wcodes = sess:sftp(reqs)
  if not wres then return nil, werrs, wcodes end
  for i = 1, #reqs do
    if wres[i] == false then
      sess:sftp({ { "remove", tmp } })
      return nil, werrs[i], wcodes[i]
    end
  end
  return true
end

--- mkdir -p in one flight: every missing directory down to path is made
-- with mode (set exactly: where the umask stripped bits, one more flight).
-- true when path was made, false when it was a directory already; the
-- second value lists the directories it made.
function M.mkdir_p(sess, path, mode)
  local chain, p = {}, path
  while p ~= "" and p ~= "/" and p ~= "." do
    table.insert(chain, 1, p)
    p = dirname(p)
  end
  local reqs, n = {}, #chain
  for i, dir in ipairs(chain) do
    reqs[i] = { "mkdir", dir, mode }
    reqs[n + i] = { "stat", dir }
  end
  local res, errs, codes = sess:sftp(reqs)
  if not res then return nil, errs, codes end
  local fix, made = {}, {}
  for i, dir in ipairs(chain) do
    local st = res[n + i]
    if st and st.type ~= "directory" then
      return nil, ("%s: %s: File exists"):format(sess:label(), dir), "EEXIST"
    elseif not st then   -- not made, and not there: why the mkdir failed
      return nil, errs[i] or errs[n + i], codes[i] or codes[n + i]
    end
    if res[i] then
      made[#made + 1] = dir
      if st.mode ~= mode then fix[#fix + 1] = { "setstat", dir, { mode = mode } } end
    end
  end
  if #fix > 0 then
    local fres, ferrs, fcodes = sess:sftp(fix)
    if not fres then return nil, ferrs, fcodes end
    for i = 1, #fix do
      if not fres[i] then return nil, ferrs[i], fcodes[i] end
    end
  end
  return res[n] == true, made
end

--- The entries of a directory: { { name, type }.. } (unsorted, without . and ..).
function M.list(sess, dir)
  local h, err, code = M.one(sess, { "opendir", dir })
  if not h then return nil, err, code end
  local entries = {}
  while true do
    local res, errs, codes = sess:sftp({ { "readdir", h, what = dir }, { "readdir", h, what = dir } })
    if not res then return nil, errs, codes end
    local done = false
    for i = 1, 2 do
      if res[i] == false then
        if errs[i] then sess:sftp({ { "close", h } }, true); return nil, errs[i], codes[i] end
        done = true
        break
      end
      for _, e in ipairs(res[i]) do entries[#entries + 1] = e end
    end
    if done then break end
  end
  sess:sftp({ { "close", h } }, true)
  return entries
end

return M
