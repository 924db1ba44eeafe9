-- site.lua: the fan-out benchmark's 12 tasks per host, as an orch play.
-- The same work as workload/site.yml (Ansible) and run-baseline.sh (one ssh
-- per task); keep the three in step. Each host works under its inventory
-- var `root` (/tmp/orch-bench/<host>). Run 1 makes 7 changes per host; run 2
-- must change nothing. The read-only tasks are steps, so that the recap
-- counts 12 tasks per host, as Ansible's does.
inventory(os.getenv("ORCH_INVENTORY") or "/tmp/orch-testbed/hosts.yaml")

local upstreams = {
  { host = "backend-1.bench.invalid", port = 8080, weight = 5 },
  { host = "backend-2.bench.invalid", port = 8080, weight = 5 },
  { host = "backend-3.bench.invalid", port = 8081, weight = 3 },
  { host = "backend-4.bench.invalid", port = 8081, weight = 3 },
  { host = "backend-5.bench.invalid", port = 9090, weight = 1 },
}

play "fanout" { on = "all", function(h)
  local root = assert(h.vars.root, "inventory var `root` is missing")
  -- app.conf.j2 computes ansible_port - 14000; the testbed writes that
  -- number into the inventory as listen_port (orch keeps ansible_port out
  -- of h.vars: it is the connection's port, not a variable).
  local listen_port = assert(math.tointeger(tonumber(h.vars.listen_port)), "inventory var `listen_port` is missing")

  step("01 read facts", function() h:facts() end)
  step("02 uname", function() h:exec("uname -a") end)
  directory { root .. "/app", mode = "0755" }
  directory { root .. "/app/conf", mode = "0750" }
  file { root .. "/app/blob.bin", src = "workload/files/blob.bin", mode = "0644" }
  template { root .. "/app/conf/app.conf", src = "app.conf.tmpl", mode = "0640",
             vars = { root = root, listen_port = listen_port, workers = 4,
                      log_level = "info", upstreams = upstreams } }
  line { root .. "/app/conf/limits.conf", line = "max_conn = 512", match = "^max_conn%s*=",
         create = true, mode = "0640" }
  symlink { root .. "/current", to = root .. "/app" }
  command { "touch " .. root .. "/app/.initialized", creates = root .. "/app/.initialized" }
  step("10 blob checksum", function()
    assert(h:stat(root .. "/app/blob.bin", { sha256 = true }).sha256)
  end)
  absent { root .. "/app/tmp.lock" }
  -- a file to read: over SFTP, as an orch user would, not a remote `cat`
  step("12 loadavg", function() assert(h:read("/proc/loadavg")) end)
end }
