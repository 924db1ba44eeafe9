-- fileattrs.lua: mode, owner and group of a path: compare what is there
-- with what is wanted, and set the difference. Shared by the engine's
-- file types and the directory and symlink types.
local M = {}

function M.octal(mode) return mode and ("%04o"):format(mode) end

--- Does a path owned by (name, id) satisfy `want`, a name or a numeric id?
function M.owner_matches(name, id, want)
  want = tostring(want)
  if want:match("^%d+$") then return id == tonumber(want) end
  return name == want
end

--- Changes { attr, from, to } between stat `st` (nil: absent) and want's
-- mode, owner and group; appended to `changes`.
function M.diff(st, want, changes)
  changes = changes or {}
  if want.mode and (not st or st.mode ~= want.mode) then
    changes[#changes + 1] = { attr = "mode", from = st and M.octal(st.mode), to = M.octal(want.mode) }
  end
  if want.owner and (not st or not M.owner_matches(st.user, st.uid, want.owner)) then
    changes[#changes + 1] = { attr = "owner", from = st and (st.user or st.uid), to = want.owner }
  end
  if want.group and (not st or not M.owner_matches(st.group, st.gid, want.group)) then
    changes[#changes + 1] = { attr = "group", from = st and (st.group or st.gid), to = want.group }
  end
  return changes
end

--- Set want's mode, owner and group on path through host h.
function M.apply(h, path, want)
  if want.mode then assert(h:chmod(path, want.mode)) end
  if want.owner or want.group then assert(h:chown(path, want.owner, want.group)) end
end

return M
