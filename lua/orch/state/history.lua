-- state/history.lua: versions of the files orch manages, in the state store:
-- record them (content deduplicated by hash), read them back, restore one
-- byte for byte; and versions of named configurations.
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local secret = require("orch.secret")

local M = {}

-- Content larger than this is kept in a file of its own beside the store
-- (STORE.blobs/ab/<sha256>, 0600) instead of a row: a row is bound and
-- read whole by SQLite (one more copy in memory, and SQLITE_TOOBIG past
-- 1 GB), a file is written once from the string orch already holds.
M.inline_max = 4 * 1024 * 1024

-- stored: 1 in the blobs table, 2 in the blob folder, 0 not at all (a secret)
local IN_TABLE, IN_FOLDER, NOT_STORED = 1, 2, 0

local function blob_file(store, sha)
  return ("%s.blobs/%s/%s"):format(store.path, sha:sub(1, 2), sha)
end

local function must(ok, err, code)
  if ok == nil then error(("%s (%s)"):format(err, code), 0) end
  return ok
end

--- The newest version row of host:path, or nil.
function M.latest(store, host, path)
  return store.db:row("SELECT * FROM file_versions WHERE host = ? AND path = ?"
    .. " ORDER BY version DESC LIMIT 1", host, path)
end

--- What path is on the host now: { content, mode, uid, gid, owner, group },
-- or false when absent; raises when it is something other than a file.
function M.snapshot(h, path)
  local st, err, code = h:stat(path)
  if not st then
    if err then error(err .. " (" .. code .. ")", 0) end
    return false
  end
  if st.type ~= "file" then error(("%s: %s is a %s, not a file"):format(h.name, path, st.type), 0) end
  return { content = must(h:read(path)), mode = st.mode, uid = st.uid, gid = st.gid,
    owner = st.user, group = st.group }
end

-- Keep content under its hash: in the table, or (large) in the folder,
-- written before the row that names it so a row never names nothing.
local function keep_blob(store, sha, content)
  if secret.contains(content) then return NOT_STORED end
  if #content <= M.inline_max or store.path == ":memory:" then
    must(store.db:exec("INSERT OR IGNORE INTO blobs (sha256, content) VALUES (?, ?)", sha, content))
    return IN_TABLE
  end
  local file = blob_file(store, sha)
  if not fs.stat(file) then
    must(fs.mkdir(file:match("^(.*)/"), "0700"))
    must(fs.write(file, content, { mode = "0600" }))
  end
  return IN_FOLDER
end

--- What orch just wrote at path, as a snapshot: the content it holds
-- (and its sha256) with the file's attributes from one stat. Nothing is
-- read back: a large file costs no second copy.
function M.written(h, path, content, sha256)
  local st = assert(h:stat(path))
  return { content = content, sha256 = sha256, mode = st.mode, uid = st.uid, gid = st.gid,
    owner = st.user, group = st.group }
end

--- Record a version of host:path; returns its number. v: { host, path,
-- snapshot (false: absent; its sha256 is computed when not given), run_id,
-- action, resource }. A content that holds a secret is not stored (only
-- its hash): it can't be rolled back to.
function M.record(store, v)
  local db = store.db
  return assert(store:transaction(function()
    local last = db:value("SELECT MAX(version) FROM file_versions WHERE host = ? AND path = ?", v.host, v.path)
    local version = last and last + 1 or 0
    local snap = v.snapshot or {}  -- {} for absent: every column NULL
    local sha, stored = nil, IN_TABLE
    if v.snapshot then
      sha = snap.sha256 or fs.sha256_data(snap.content)
      stored = keep_blob(store, sha, snap.content)
    end
    must(db:exec("INSERT INTO file_versions (host, path, version, state, sha256, stored, size, mode,"
      .. " uid, gid, owner, grp, run_id, time, action, resource)"
      .. " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      v.host, v.path, version, v.snapshot and "file" or "absent", sha, stored, snap.content and #snap.content,
      snap.mode, snap.uid, snap.gid, snap.owner, snap.group, v.run_id, loop.time(), v.action, v.resource))
    return version
  end))
end

--- Before orch first changes host:path, record what was there (or that
-- nothing was) as version 0, so it can always be put back.
function M.ensure_original(store, h, path, run_id, resource)
  if M.latest(store, h.name, path) then return end
  M.record(store, { host = h.name, path = path, snapshot = M.snapshot(h, path), run_id = run_id,
    action = "original", resource = resource })
end

--- Every version of host:path, oldest first.
function M.list(store, host, path)
  return must(store.db:rows("SELECT * FROM file_versions WHERE host = ? AND path = ? ORDER BY version",
    host, path))
end

--- One version with its content, or nil.
function M.get(store, host, path, version)
  local row = store.db:row("SELECT * FROM file_versions WHERE host = ? AND path = ? AND version = ?",
    host, path, version)
  if row and row.sha256 and row.stored == IN_TABLE then
    row.content = store.db:value("SELECT content FROM blobs WHERE sha256 = ?", row.sha256)
  elseif row and row.stored == IN_FOLDER then
    local file = blob_file(store, row.sha256)
    local content, err = fs.read(file)
    if not content then
      return nil, ("%s:%s version %d: its content is missing from %s (%s)"):format(host, path, version, file, err)
    end
    row.content = content
  end
  return row
end

local function same(snap, row)
  if not snap then return row.state == "absent" end
  return row.state == "file" and (snap.sha256 or fs.sha256_data(snap.content)) == row.sha256
    and snap.mode == row.mode and snap.uid == row.uid and snap.gid == row.gid
end

--- Keep what is at host:path before orch changes it, in one look at its
-- history: the first time, as the original (version 0); after that, when
-- it is not as the latest version recorded it (edited by hand, or
-- installed by a run killed before it could record it), as a version of
-- its own, action "drift", so no content is ever lost to orch's next
-- write. now: { sha256, mode, uid, gid }, or false when absent;
-- snapshot(): the full snapshot, asked only when it is recorded. Returns
-- the drift version's number, or nil.
function M.keep_current(store, h, path, run_id, resource, now, snapshot)
  local latest = M.latest(store, h.name, path)
  if not latest then
    M.record(store, { host = h.name, path = path, snapshot = snapshot(), run_id = run_id,
      action = "original", resource = resource })
    return nil
  end
  if now then
    if latest.state == "file" and latest.sha256 == now.sha256 and latest.mode == now.mode
        and latest.uid == now.uid and latest.gid == now.gid then return nil end
  elseif latest.state == "absent" then
    return nil
  end
  return M.record(store, { host = h.name, path = path, snapshot = snapshot(), run_id = run_id,
    action = "drift", resource = "changed outside orch" })
end

--- Put version `version` of path back on host h, byte for byte with its
-- mode and ownership, and record that as a new version. What is there
-- first, if orch did not put it there, is recorded as a drift version.
-- Returns the new version number (or false when the file already was that
-- version) and the drift version's, if any; nil, err when it can't be done.
function M.restore(store, h, path, version, run_id)
  local row, gerr = M.get(store, h.name, path, version)
  if gerr then return nil, gerr end
  if not row then
    return nil, ("%s:%s has no version %d (see: orch history %s:%s)"):format(h.name, path, version, h.name, path)
  end
  if row.state == "file" and not row.content then
    return nil, ("%s:%s version %d held a secret, so its content was not stored"):format(h.name, path, version)
  end
  local now = M.snapshot(h, path)
  if now then now.sha256 = fs.sha256_data(now.content) end
  local drift = M.keep_current(store, h, path, run_id, nil, now, function() return now end)
  if same(now, row) then return false, drift end
  if row.state == "absent" then
    must(h:remove(path))
  else
    must(h:write(path, row.content, { mode = row.mode, owner = row.uid, group = row.gid }))
  end
  return M.record(store, { host = h.name, path = path, run_id = run_id, action = "rollback",
    resource = ("rollback to version %d"):format(version),
    snapshot = row.state == "file" and M.written(h, path, row.content, row.sha256) }), drift
end

--- The files a run changed: { host, path, first } (the first version it
-- made), the most recently changed first.
function M.run_changes(store, run_id)
  return must(store.db:rows("SELECT host, path, MIN(version) AS first, MAX(id) AS last"
    .. " FROM file_versions WHERE run_id = ? AND action != 'original'"
    .. " GROUP BY host, path ORDER BY last DESC", run_id))
end

-- ---- named configurations ----

--- Record a new version of configuration `name`: files = { {host, path,
-- version}, ... } as they stand now. Returns the version number.
function M.config_record(store, name, files, run_id, action)
  local db = store.db
  return assert(store:transaction(function()
    local last = db:value("SELECT MAX(version) FROM configs WHERE name = ?", name)
    local version = (last or 0) + 1
    must(db:exec("INSERT INTO configs (name, version, run_id, time, action) VALUES (?, ?, ?, ?, ?)",
      name, version, run_id, loop.time(), action))
    local id = db:last_id()
    for _, f in ipairs(files) do
      must(db:exec("INSERT OR REPLACE INTO config_files (config_id, host, path, version) VALUES (?, ?, ?, ?)",
        id, f.host, f.path, f.version))
    end
    return version
  end))
end

--- Every configuration: { name, version (latest), time, run_id, files }.
function M.config_list(store)
  return must(store.db:rows("SELECT c.name, c.version, c.time, c.run_id, c.action,"
    .. " (SELECT COUNT(*) FROM config_files f WHERE f.config_id = c.id) AS files"
    .. " FROM configs c WHERE c.version = (SELECT MAX(version) FROM configs WHERE name = c.name)"
    .. " ORDER BY c.name"))
end

--- Versions of configuration `name`, oldest first, each with its files.
function M.config_history(store, name)
  local versions = must(store.db:rows("SELECT * FROM configs WHERE name = ? ORDER BY version", name))
  for _, v in ipairs(versions) do
    v.files = must(store.db:rows("SELECT host, path, version FROM config_files WHERE config_id = ?"
      .. " ORDER BY host, path", v.id))
  end
  return versions
end

return M
