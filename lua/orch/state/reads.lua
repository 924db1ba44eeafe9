-- state/reads.lua: what a run read on each SSH host (host/prefetch.lua
-- fetches it in one batch on the next run). Hints only: a path missing
-- here is read live, and one that changed is read as it is now.
local M = {}

-- At most this many paths per host: a play that reads more fetches the
-- rest live rather than in one enormous batch.
M.limit = 4000

--- host -> { [path] = kinds } as the last run on host left it.
function M.of(store, host)
  local rows = store.db:rows("SELECT path, kinds FROM host_reads WHERE host = ?", host) or {}
  local reads = {}
  for _, r in ipairs(rows) do reads[r.path] = r.kinds end
  return reads
end

--- Replace what host was read with `reads` ({ [path] = kinds }).
function M.save(store, host, reads)
  return store:transaction(function()
    store.db:exec("DELETE FROM host_reads WHERE host = ?", host)
    local n = 0
    for path, kinds in pairs(reads) do
      n = n + 1
      if n > M.limit then break end
      store.db:exec("INSERT INTO host_reads (host, path, kinds) VALUES (?, ?, ?)", host, path, kinds)
    end
  end)
end

return M
