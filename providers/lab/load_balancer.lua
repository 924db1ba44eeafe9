-- lab/load_balancer.lua: lab.load_balancer, an HAProxy process (Debian's)
-- on 127.0.0.1:listen, round-robin over targets, health-checked over HTTP.
-- A change reloads it in place (-sf): the new process takes the port
-- before the old one lets go, so the port never stops answering.
local common = ...

local HAPROXY = "haproxy"

local function paths(ctx, name)
  local dir = common.dir(ctx) .. "/lb/" .. common.scope(ctx) .. "-" .. name
  return { dir = dir, config = dir .. "/haproxy.cfg", new = dir .. "/haproxy.cfg.new",
    old = dir .. "/haproxy.cfg.old", pid = dir .. "/haproxy.pid", retired = dir .. "/retired.pids",
    -- a unix socket's path is at most 107 bytes; without it reloads still
    -- work, only without handing the listening socket over
    socket = #(dir .. "/admin.sock") <= 107 and (dir .. "/admin.sock") or nil }
end

-- Words that go into haproxy.cfg: one token each, or a target could add
-- lines of its own to the configuration. What the token means (an address,
-- a port) is haproxy's to judge, and its message says what is wrong.
local function check_word(name, what, v)
  if type(v) ~= "string" or v == "" or v:find("[%s%c#\\\"']") then
    error(("lab.load_balancer %s: %s %q must be one word (no spaces, quotes, '#' or '\\')"):format(
      name, what, tostring(v)), 0)
  end
end

local function check_want(want)
  if math.type(want.listen) ~= "integer" or want.listen < 1 or want.listen > 65535 then
    error(("lab.load_balancer %s: listen must be a port (1 to 65535)"):format(want.name), 0)
  end
  if #want.targets == 0 then error(("lab.load_balancer %s: targets is empty"):format(want.name), 0) end
  for i, t in ipairs(want.targets) do check_word(want.name, "targets[" .. i .. "]", t) end
  local hc = want.health_check
  if hc and hc ~= "" then
    check_word(want.name, "health_check", hc)
    if hc:sub(1, 1) ~= "/" then
      error(("lab.load_balancer %s: health_check must be a path starting with '/'"):format(want.name), 0)
    end
  end
end

local function config(want, p)
  local check = want.health_check and want.health_check ~= ""
  local out = {
    "# lab.load_balancer " .. want.name .. ": written by orch",
    "global",
    "  user haproxy",
    "  group haproxy",
  }
  -- the next process takes the listening socket from this one (-x): no
  -- connection is refused while the old one closes its own
  if p.socket then out[#out + 1] = "  stats socket " .. p.socket .. " mode 600 level admin expose-fd listeners" end
  for _, l in ipairs({
    "defaults",
    "  mode http",
    "  timeout connect 5s",
    "  timeout client 30s",
    "  timeout server 30s",
    "frontend lb",
    "  bind 127.0.0.1:" .. want.listen,
    "  default_backend targets",
    "backend targets",
    "  balance roundrobin",
  }) do out[#out + 1] = l end
  if check then out[#out + 1] = "  option httpchk GET " .. want.health_check end
  for i, t in ipairs(want.targets) do
    out[#out + 1] = ("  server t%d %s%s"):format(i, t, check and " check inter 2s" or "")
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

-- The attributes a configuration file says (ours only: the lines we write).
local function parse(text)
  local targets = {}
  for t in text:gmatch("\n  server t%d+ (%S+)") do targets[#targets + 1] = t end
  return {
    listen = math.tointeger(tonumber(text:match("\n  bind 127%.0%.0%.1:(%d+)"))),
    targets = targets,
    health_check = text:match("\n  option httpchk GET (%S+)") or "",
  }
end

local function running(ctx, p) return common.owned(ctx, p.pid, "haproxy", p.config) end

-- haproxy -c on the new file; its alerts as the error, the running one untouched.
local function validate(ctx, name, p, text)
  assert(ctx.host:write(p.new, text, { mode = "0644" }))
  local r = ctx.host:exec({ HAPROXY, "-c", "-f", p.new }, { check = false })
  if r and r.ok then return end
  ctx.host:remove(p.new)
  local alerts = {}
  for l in ((r and r.stderr or "") .. (r and r.stdout or "")):gmatch("[^\n]+") do
    if not l:find("%[NOTICE%]") then alerts[#alerts + 1] = l:gsub("^%[(%u+)%]%s+%(%d+%)%s*:%s*", "[%1] ") end
  end
  error(("lab.load_balancer %s: haproxy rejects the configuration:\n%s"):format(name,
    table.concat(alerts, "\n")), 0)
end

-- Start haproxy on p.config (-D: it binds, forks and returns), replacing
-- old_pid if given (-sf: the old one stops listening, finishes its
-- connections and exits). Returns the new pid.
local function start(ctx, name, p, old_pid)
  ctx.host:remove(p.pid)
  local argv = { HAPROXY, "-D", "-f", p.config, "-p", p.pid }
  if old_pid then
    if p.socket and ctx.host:stat(p.socket) then
      argv[#argv + 1] = "-x"
      argv[#argv + 1] = p.socket
    end
    argv[#argv + 1] = "-sf"
    argv[#argv + 1] = tostring(old_pid)
  end
  local r = ctx.host:exec(argv, { check = false })
  local up = r and r.ok and common.wait_for(function() return running(ctx, p) end, 5)
  if not up then
    error(("lab.load_balancer %s: haproxy did not start: %s"):format(name, r and common.why(r) or ""), 0)
  end
  return up.pid
end

-- Everything of ours: the current process, those retired by reloads that
-- still finish their connections, the folder.
local function teardown(ctx, name)
  local p = paths(ctx, name)
  local pids = {}
  local cur = running(ctx, p)
  if cur then pids[1] = cur.pid end
  for pid in (ctx.host:read(p.retired) or ""):gmatch("%d+") do
    local old = common.process(ctx, pid)
    if old and old.comm == "haproxy" and old.cmdline:find(p.config, 1, true) then pids[#pids + 1] = pid end
  end
  common.stop(ctx, pids)
  common.remove_tree(ctx, p.dir)
end

local function attrs_of(want, pid)
  return { name = want.name, listen = want.listen, targets = want.targets,
    health_check = want.health_check or "", pid = pid, url = ("http://127.0.0.1:%d/"):format(want.listen) }
end

return {
  schema = {
    name         = { type = "string", required = true, force_new = true },
    listen       = { type = "integer", required = true },
    targets      = { type = "list", required = true },        -- "ip:port" each
    health_check = { type = "string", default = "/" },         -- "" for none
    pid          = { type = "integer", computed = true },
    url          = { type = "string", computed = true },
  },

  -- nil unless our haproxy runs; the rest from the configuration it runs.
  read = function(ctx, state)
    common.check_root(ctx)
    common.check_name("lab.load_balancer", state.name)
    local p = paths(ctx, state.name)
    local proc = running(ctx, p)
    local text = proc and ctx.host:read(p.config)
    if not text then return nil end
    local have = parse(text)
    have.name, have.pid = state.name, proc.pid
    have.url = have.listen and ("http://127.0.0.1:%d/"):format(have.listen)
    return have
  end,

  -- Validate first, always: a configuration haproxy refuses raises with
  -- its message and changes nothing. Then start it, or reload in place.
  apply = function(ctx, want, have)
    common.check_root(ctx)
    common.check_name("lab.load_balancer", want.name)
    check_want(want)
    local p = paths(ctx, want.name)
    local text = config(want, p)
    local cur = have and running(ctx, p)
    if not cur then
      local ok, pid = pcall(function()
        teardown(ctx, want.name)
        common.make_dir(ctx)
        assert(ctx.host:mkdir(p.dir, "0755"))
        validate(ctx, want.name, p, text)
        assert(ctx.host:rename(p.new, p.config))
        return start(ctx, want.name, p)
      end)
      if not ok then
        -- leave nothing half-made behind: no state will point at it
        pcall(teardown, ctx, want.name)
        ctx.host:remove(common.dir(ctx) .. "/lb")   -- only if empty
        error(pid, 0)
      end
      return attrs_of(want, pid)
    end
    validate(ctx, want.name, p, text)
    assert(ctx.host:rename(p.config, p.old))
    assert(ctx.host:rename(p.new, p.config))
    local ok, pid = pcall(start, ctx, want.name, p, cur.pid)
    if not ok then
      -- the old process still serves: put its configuration back
      assert(ctx.host:rename(p.old, p.config))
      assert(ctx.host:write(p.pid, cur.pid .. "\n", { mode = "0644" }))
      error(pid, 0)
    end
    -- the ones still finishing their connections, for delete to find
    local retired = { cur.pid }
    for pid in (ctx.host:read(p.retired) or ""):gmatch("%d+") do
      if common.process(ctx, pid) then retired[#retired + 1] = pid end
    end
    assert(ctx.host:write(p.retired, table.concat(retired, "\n") .. "\n", { mode = "0644" }))
    ctx.host:remove(p.old)
    return attrs_of(want, pid)
  end,

  delete = function(ctx, have)
    common.check_root(ctx)
    common.check_name("lab.load_balancer", have.name)
    teardown(ctx, have.name)
    ctx.host:remove(common.dir(ctx) .. "/lb")   -- only if empty
  end,
}
