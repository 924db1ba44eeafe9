-- providers/command.lua: run a command, unless it has already done its
-- job: `creates` exists, `removes` is gone, `unless` succeeds, or `onlyif`
-- fails. Without a guard it runs (and counts as changed) every time. The
-- guards run in check mode too, so they must only look.
local function guard_says_skip(h, want)
  if want.creates and h:stat(want.creates) then return "creates " .. want.creates .. " exists" end
  if want.removes and not h:stat(want.removes) then return "removes " .. want.removes .. " is absent" end
  local opts = { check = false, env = want.env, cwd = want.cwd, timeout = want.timeout }
  if want.unless then
    local r = h:exec(want.unless, opts)
    if r and r.code == 0 then return "unless succeeded" end
  end
  if want.onlyif then
    local r = h:exec(want.onlyif, opts)
    if not r or r.code ~= 0 then return "onlyif failed" end
  end
end

return {
  command = {
    schema = {
      cmd     = { type = { "string", "list" }, required = true, positional = true },
      creates = { type = "string" },
      removes = { type = "string" },
      unless  = { type = { "string", "list" } },
      onlyif  = { type = { "string", "list" } },
      env     = { type = "map" },
      cwd     = { type = "string" },
      timeout = { type = "number" },
      stdin   = { type = "string" },
    },
    read = function(ctx, want)
      return { skip = guard_says_skip(ctx.host, want) }
    end,
    diff = function(ctx, want, have)
      if have.skip then return {} end
      return { { attr = "cmd", to = type(want.cmd) == "string" and want.cmd or table.concat(want.cmd, " ") } }
    end,
    -- Its output is the resource's result: r = command { ... }; r.stdout
    apply = function(ctx, want)
      local r = ctx.host:exec(want.cmd, { env = want.env, cwd = want.cwd, timeout = want.timeout, stdin = want.stdin })
      return { code = r.code, stdout = r.stdout, stderr = r.stderr }
    end,
  },
}
