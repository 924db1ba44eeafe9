-- providers/absent.lua: nothing at this path: a file, link or whole
-- directory tree is removed (a link is removed, never followed).
return {
  absent = {
    schema = {
      path = { type = "string", required = true },
    },
    read = function(ctx, want)
      local st = ctx.host:stat(want.path, { link = true })
      return st and { path = want.path, type = st.type } or false
    end,
    diff = function(ctx, want, have)
      if not have then return {} end
      return { { attr = "state", from = have.type, to = "absent" } }
    end,
    apply = function(ctx, want)
      assert(ctx.host:remove(want.path, { recursive = true }))
    end,
  },
}
