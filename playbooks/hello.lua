-- hello.lua: a first playbook. It reads its settings from YAML, creates a
-- directory tree, renders a file, runs commands concurrently (a bounded
-- number at a time) and records the run in the state store. Run it twice:
-- the second run changes nothing.
--
--   orch play playbooks/hello.lua [-e dest=/some/dir]

local settings = yaml.load_file(playbook.dir .. "/hello.yaml")
local app = settings.app
local dest = vars.dest or ((os.getenv("TMPDIR") or "/tmp") .. "/orch-hello")

-- Writes content only when it differs: the step reports what it changed.
local function converge_file(path, content)
  if fs.read(path) == content then return false end
  assert(fs.write(path, content, { mode = "0644" }))
  return true
end

step("create the directory tree", function()
  local changed = false
  for _, sub in ipairs({ "", "/conf", "/data", "/logs" }) do
    local created, err = fs.mkdir(dest .. sub, "0755")  -- false: it was there
    if created == nil then error(err) end
    changed = changed or created
  end
  return changed
end)

step("render the greeting", function()
  local values = { name = app.name, port = app.port, host = sh("uname -n").stdout:gsub("%s+$", "") }
  local text = settings.greeting:gsub("{{(%w+)}}", function(k) return tostring(values[k]) end)
  return converge_file(dest .. "/conf/greeting.txt", text)
end)

step(("probe the machine (%d commands, %d at a time)"):format(#settings.probes.commands, settings.probes.limit), function()
  local results = task.map(settings.probes.commands, settings.probes.limit, function(cmd)
    return sh(cmd).stdout
  end)
  local lines = {}
  for i, cmd in ipairs(settings.probes.commands) do
    assert(results[i].ok, results[i].err)
    lines[i] = ("%-20s %s"):format(cmd, results[i].value:gsub("%s+$", ""))
  end
  return converge_file(dest .. "/data/facts.txt", table.concat(lines, "\n") .. "\n")
end)

step("check what was written", function()
  local st = assert(fs.stat(dest .. "/conf/greeting.txt"))
  log(("%s: %d bytes, mode %o, sha256 %s"):format(dest .. "/conf/greeting.txt", st.size, st.mode,
    fs.sha256(dest .. "/conf/greeting.txt"):sub(1, 12)))
end)
