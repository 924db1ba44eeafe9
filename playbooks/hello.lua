-- hello.lua: a first playbook. It reads its settings from YAML, declares a
-- directory tree and files (rendered from a template, validated before
-- they are installed), runs commands concurrently (a bounded number at a
-- time), and records the run and every file version in the state store.
-- Run it twice: the second run changes nothing.
--
--   orch play playbooks/hello.lua [-e dest=/some/dir] [--check] [--diff]

local settings = yaml.load_file(playbook.dir .. "/hello.yaml")
local dest = vars.dest or ((os.getenv("TMPDIR") or "/tmp") .. "/orch-hello")

for _, sub in ipairs({ "", "/conf", "/data", "/logs" }) do
  directory { dest .. sub, mode = "0755" }
end

config "hello" { function()
  template { dest .. "/conf/greeting.txt", src = "greeting.txt.tmpl", mode = "0644",
    vars = { app = settings.app, upstreams = settings.upstreams, hostname = sh("uname -n").stdout:gsub("%s+$", "") } }
  file { dest .. "/conf/app.json", mode = "0644", validate = "json",
    content = json.encode({ name = settings.app.name, port = settings.app.port }) .. "\n",
    notify = "announce" }
  env_file { dest .. "/conf/app.env", vars = { APP_NAME = settings.app.name, PORT = settings.app.port } }
end }

-- Commands run concurrently, `limit` at a time, from as many tasks.
local probes = settings.probes
local results = task.map(probes.commands, probes.limit, function(cmd) return sh(cmd).stdout end)
local lines = {}
for i, cmd in ipairs(probes.commands) do
  assert(results[i].ok, results[i].err)
  lines[i] = ("%-20s %s"):format(cmd, results[i].value:gsub("%s+$", ""))
end
file { dest .. "/data/facts.txt", content = table.concat(lines, "\n") .. "\n" }

handler "announce" (function()
  log(("%s is configured in %s"):format(settings.app.name, dest))
end)
