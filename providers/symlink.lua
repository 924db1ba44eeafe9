-- providers/symlink.lua: a symbolic link pointing where it should. A file
-- or directory in the way is replaced only with force = true.
return {
  symlink = {
    schema = {
      path  = { type = "string", required = true },
      to    = { type = "string", required = true },
      force = { type = "boolean", default = false },
    },
    read = function(ctx, want)
      local st = ctx.host:stat(want.path, { link = true })
      if not st then return nil end
      return { path = want.path, type = st.type, to = st.type == "link" and assert(ctx.host:readlink(want.path)) or nil }
    end,
    diff = function(ctx, want, have)
      if not have then return { { attr = "to", to = want.to } } end
      if have.type ~= "link" then
        if not want.force then
          error(("%s exists and is a %s; set force = true to replace it with a link"):format(want.path, have.type), 0)
        end
        return { { attr = "to", from = "(a " .. have.type .. ")", to = want.to } }
      end
      if have.to ~= want.to then return { { attr = "to", from = have.to, to = want.to } } end
      return {}
    end,
    -- A new link under a temp name renamed over the old: never a moment
    -- without one.
    apply = function(ctx, want, have)
      local h = ctx.host
      -- nothing there: the link made in place is as atomic as a rename,
      -- and a round trip less (if something came meanwhile, as below)
      if not have and h:symlink(want.to, want.path) then return end
      if have and have.type == "directory" then assert(h:remove(want.path, { recursive = true })) end
      local tmp = ("%s.orch-%d"):format(want.path, math.random(1, 1e9))
      assert(h:symlink(want.to, tmp))
      local ok, err = h:rename(tmp, want.path)
      if not ok then h:remove(tmp); error(err, 0) end
    end,
    delete = function(ctx, have) assert(ctx.host:remove(have.path)) end,
  },
}
