-- providers/template.lua: a file rendered from a template on the control
-- machine ({{ expr }}, {% lua %}, {# comment #}), with the given vars and
-- `host` (the target: name, address, vars).
local template = require("orch.template")

return {
  template = {
    file = true,
    schema = {
      src      = { type = "string", required = true },   -- beside the playbook, or in templates/
      vars     = { type = "map", default = {} },
    },
    content = function(ctx, want)
      local env = {}
      for k, v in pairs(want.vars) do env[k] = v end
      if env.host == nil then
        env.host = { name = ctx.host.name, address = ctx.host.address, vars = ctx.host.vars }
      end
      return assert(template.render_file(ctx.source(want.src, "templates"), env))
    end,
  },
}
