-- providers/directory.lua: a directory (mkdir -p), its mode and ownership;
-- with recurse, ownership of everything below and the mode of every
-- directory below (files keep theirs: a directory mode would make them
-- executable).
local fileattrs = require("orch.fileattrs")

-- Entries below path whose ownership (or, for directories, mode) differs.
local function drifted(h, path, want)
  local n = 0
  for _, e in ipairs(assert(h:walk(path))) do
    local st = e.type ~= "link" and h:stat(path .. "/" .. e.path)
    if st then
      local wanted = { owner = want.owner, group = want.group, mode = e.type == "directory" and want.mode or nil }
      if #fileattrs.diff(st, wanted) > 0 then n = n + 1 end
    end
  end
  return n
end

return {
  directory = {
    schema = {
      path    = { type = "string", required = true },
      mode    = { type = "mode" },
      owner   = { type = "string" },
      group   = { type = "string" },
      recurse = { type = "boolean", default = false },
    },
    read = function(ctx, want)
      -- a link to a directory is followed, as Ansible does, but never
      -- recursed through: that would change a tree the path only points at
      local lst = want.recurse and ctx.host:stat(want.path, { link = true })
      if lst and lst.type == "link" then
        error(("%s is a symbolic link (to %s): orch does not recurse through a link; name the directory itself"):format(
          want.path, tostring(ctx.host:readlink(want.path))), 0)
      end
      local st = ctx.host:stat(want.path)
      if not st then return nil end
      if st.type ~= "directory" then
        error(("%s exists and is a %s, not a directory"):format(want.path, st.type), 0)
      end
      st.path = want.path
      st.drift = want.recurse and drifted(ctx.host, want.path, want) or 0
      return st
    end,
    diff = function(ctx, want, have)
      if not have then return { { attr = "state", from = "absent", to = "directory" } } end
      local changes = fileattrs.diff(have, want)
      if have.drift > 0 then
        changes[#changes + 1] = { attr = "recurse", from = ("%d entries differ"):format(have.drift), to = "fixed" }
      end
      return changes
    end,
    apply = function(ctx, want, have)
      local h = ctx.host
      local made
      if not have then
        local err
        made, err = h:mkdir(want.path, want.mode)
        if made == nil then error(err, 0) end
      end
      -- a directory just made has its mode already
      fileattrs.apply(h, want.path, made and { owner = want.owner, group = want.group } or want)
      if want.recurse then
        for _, e in ipairs(assert(h:walk(want.path))) do
          if e.type ~= "link" then
            fileattrs.apply(h, want.path .. "/" .. e.path, { owner = want.owner, group = want.group,
              mode = e.type == "directory" and want.mode or nil })
          end
        end
      end
    end,
    delete = function(ctx, have) assert(ctx.host:remove(have.path, { recursive = true })) end,
  },
}
