-- ci.lua: orch's own pipeline: lint, build, test, package. The package is
-- an artifact: a tarball of an installed orch.
--
--   orch pipeline run ci -f playbooks/ci.lua [--jobs 2] [--junit report.xml]
--   orch pipeline show RUN_ID -f playbooks/ci.lua

local build = "$ORCH_WORKSPACE/build"   -- a fresh build per run, beside its logs

pipeline "ci" {
  triggers = { "manual", commit = { repo = "..", branch = "main", every = 60 } },
  keep = 5,

  -- syntax of every Lua file and shell script; no build needed
  stage "lint" { cwd = "..", timeout = 60, sh = {
    -- one file at a time: Debian's luac5.4 -p crashes on long lists
    "for f in lua/orch/*.lua providers/*.lua playbooks/*.lua playbooks/providers/*.lua spec/*.lua bench/*.lua;"
      .. " do luac5.4 -p \"$f\" || exit 1; done",
    "for f in scripts/*.sh bench/*.sh .ci/run; do sh -n \"$f\" || exit 1; done",
  } },

  stage "build" { needs = "lint", cwd = "..", timeout = 600, sh = {
    "cmake -S . -B " .. build .. " -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr/local >/dev/null",
    "cmake --build " .. build .. " -j2",
  } },

  -- the specs that need no sshd, apt or root-only setup: quick, and enough
  -- to know the fresh binary works
  stage "test" { needs = "build", cwd = "..", timeout = 600, retry = 1,
    env = { NO_COLOR = "1" },
    sh = "ORCH_BIN=" .. build .. "/orch " .. build .. "/orch lua /usr/bin/busted"
      .. " spec/yaml_spec.lua spec/json_spec.lua spec/cron_spec.lua spec/template_spec.lua"
      .. " spec/textdiff_spec.lua spec/selector_spec.lua spec/validate_spec.lua spec/archive_spec.lua" },

  stage "package" { needs = { "build", "test" }, cwd = "..", timeout = 120, artifacts = "dist/orch-*.tar.gz", sh = {
    "rm -rf dist && mkdir -p dist",
    "DESTDIR=$ORCH_WORKSPACE/pkg cmake --install " .. build .. " >/dev/null",
    "tar -czf dist/orch-$(" .. build .. "/orch version | cut -d' ' -f2)-$(uname -m).tar.gz -C $ORCH_WORKSPACE/pkg .",
  } },
}
