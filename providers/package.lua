-- providers/package.lua: a Debian/Ubuntu package: installed (any version,
-- an exact one, or apt's candidate with state = "latest") or removed.
-- dpkg-query reads, apt-get changes; nothing prompts.
local NO_APT = "package: this host has no apt-get (Debian/Ubuntu only for now)"

local APT_ENV = { DEBIAN_FRONTEND = "noninteractive" }

-- Keep changed config files, take new ones where untouched (as Ansible),
-- and wait for another apt/dpkg instead of failing on its lock.
local APT_OPTIONS = { "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
  "-o", "DPkg::Lock::Timeout=300" }

local function check_name(name)
  -- Debian policy: [a-z0-9][a-z0-9+.-]+, and an optional :arch
  if not name:match("^[%w][%w+.%-]*$") and not name:match("^[%w][%w+.%-]*:[%w%-]+$") then
    error(("package: bad package name %q"):format(name), 0)
  end
end

local function check_version(name, version)
  if not version:match("^[%w][%w.+~:%-]*$") then
    error(("package %s: bad version %q"):format(name, version), 0)
  end
end

-- Run an apt/dpkg tool; a host without it gets NO_APT.
local function run(h, argv, opts)
  opts = opts or {}
  opts.check = false
  local r = h:exec(argv, opts)
  if not r or r.code == 127 then error(NO_APT, 0) end
  return r
end

-- apt's candidate version: nil when apt knows no such package, "(none)"
-- when it knows the name but has nothing to install (a virtual package).
local function candidate(h, name)
  local r = run(h, { "apt-cache", "policy", "--", name })
  if r.code ~= 0 then
    error(("package %s: apt-cache policy failed (exit code %d): %s"):format(name, r.code, r.stderr), 0)
  end
  return r.stdout:match("\n%s*Candidate:%s*(%S+)")
end

local function unknown(name)
  return ("package %s: apt knows no such package; check the name, or run `apt-get update` "
    .. "if the package lists are stale or empty"):format(name)
end

-- apt-get with the options every call shares; its failures in words.
local function apt_get(h, name, args)
  local argv = { "apt-get" }
  for _, a in ipairs(APT_OPTIONS) do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = run(h, argv, { env = APT_ENV })
  if r.code == 0 then return r end
  local err = r.stderr
  local located = err:match("E: Unable to locate package[^\n]*")
  if located then error(("%s (apt-get: %s)"):format(unknown(name), located), 0) end
  local version = err:match("E: Version '([^']*)' for '[^']*' was not found")
  if version then
    error(("package %s: version %s is not available (`apt-cache policy %s` lists those that are; "
      .. "run `apt-get update` if the lists are stale)"):format(name, version, name), 0)
  end
  local tail = err:gsub("%s+$", ""):sub(-600)
  error(("package %s: apt-get %s failed (exit code %d)%s"):format(name, args[1], r.code,
    tail ~= "" and ("\n" .. tail) or ""), 0)
end

return {
  package = {
    schema = {
      name    = { type = "string", required = true, positional = true },
      state   = { type = "string", enum = { "present", "absent", "latest" }, default = "present" },
      version = { type = "string" },   -- exactly this version (implies present)
    },
    -- One round trip, changes nothing; nil means not installed (a removed
    -- package whose config files remain counts as not installed).
    read = function(ctx, want)
      check_name(want.name)
      if want.version then check_version(want.name, want.version) end
      local r = run(ctx.host, { "dpkg-query", "-W", "-f=${Status}\t${Version}\n", "--", want.name })
      if r.code ~= 0 then
        if r.stderr:find("no packages found", 1, true) then return nil end
        error(("package %s: dpkg-query failed (exit code %d): %s"):format(want.name, r.code, r.stderr), 0)
      end
      -- one line per architecture of a multi-arch package
      for status, version in r.stdout:gmatch("([^\t\n]*)\t([^\n]*)") do
        if status:match("^%S+ ok installed$") then return { name = want.name, version = version } end
      end
      return nil
    end,
    diff = function(ctx, want, have)
      local h, name = ctx.host, want.name
      if want.version and want.state == "latest" then
        error(("package %s: give version or state = \"latest\", not both"):format(name), 0)
      end
      if want.version then
        if have and have.version == want.version then return {} end
        if not have and candidate(h, name) == nil then error(unknown(name), 0) end
        return { { attr = "version", from = have and have.version or "(not installed)", to = want.version } }
      end
      if have and want.state == "present" then return {} end
      local cand = candidate(h, name)
      if cand == nil and not have then error(unknown(name), 0) end
      if not have then
        return { { attr = "state", from = "absent", to = want.state == "latest" and cand ~= "(none)"
          and ("latest (" .. cand .. ")") or "present" } }
      end
      -- latest: nothing to do when apt has no candidate (installed from a .deb)
      if cand == nil or cand == "(none)" or cand == have.version then return {} end
      return { { attr = "version", from = have.version, to = cand } }
    end,
    -- Installing an installed package moves it to the candidate (latest),
    -- or to the version asked for, up or down.
    apply = function(ctx, want)
      local args = { "install", "-y", "--no-install-recommends" }
      if want.version then args[#args + 1] = "--allow-downgrades" end
      args[#args + 1] = "--"
      args[#args + 1] = want.version and (want.name .. "=" .. want.version) or want.name
      apt_get(ctx.host, want.name, args)
    end,
    delete = function(ctx, have)
      apt_get(ctx.host, have.name, { "remove", "-y", "--", have.name })
    end,
  },
}
