-- release.lua: uses the example provider in providers/archive.lua (found
-- there because it sits beside this playbook) to unpack a release and
-- point a `current` link at it.
--
--   orch play playbooks/release.lua [-e dest=/some/dir] [-e version=1.0.1]

local dest = vars.dest or ((os.getenv("TMPDIR") or "/tmp") .. "/orch-release")
local version = vars.version or "1.0.0"

-- Build the release archive the way a CI stage would (on this machine).
local build = dest .. "/build"
directory { build .. "/app-" .. version }
file { build .. "/app-" .. version .. "/VERSION", content = version .. "\n" }
command { ("tar -czf app-%s.tar.gz app-%s"):format(version, version), cwd = build,
  creates = ("%s/app-%s.tar.gz"):format(build, version) }

archive { dest .. "/releases/" .. version, src = ("%s/app-%s.tar.gz"):format(build, version) }
symlink { dest .. "/current", to = ("%s/releases/%s/app-%s"):format(dest, version, version) }
