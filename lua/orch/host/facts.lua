-- host/facts.lua: what a host is (OS, kernel, CPUs, memory, uptime), gathered
-- in one round trip by the same script on the local machine and over SSH.
local M = {}

--- What h:facts() runs, on any host: one round trip. Files are read by
-- the shell itself (r, with `read`), not by a cat, a grep and three
-- unames: on a host each process costs a few milliseconds, which is what
-- a run with nothing to change is mostly made of. uname and nproc are
-- asked only for what /proc doesn't say (nproc counts the CPUs this
-- process may use, as the cgroup or affinity allows).
M.SCRIPT = "r() { while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$1\"; } 2>/dev/null; "
  .. "r /etc/os-release; echo '--orch--'; r /proc/sys/kernel/hostname || uname -n; "
  .. "r /proc/sys/kernel/osrelease || uname -r; r /proc/sys/kernel/arch || uname -m; "
  .. "nproc 2>/dev/null || echo 1; "
  .. "while read -r k v u; do [ \"$k\" = MemTotal: ] && { echo \"$k $v $u\"; break; }; done 2>/dev/null < /proc/meminfo; "
  .. "r /proc/uptime; r /proc/loadavg"

--- Facts from SCRIPT's output: os (os-release fields, lower-case
-- keys), hostname, kernel, arch, cpus, memory_mb, uptime (seconds), load
-- ("1m 5m 15m").
function M.parse(out)
  local release, rest = out:match("^(.-)%-%-orch%-%-\n(.*)$")
  local os_info = {}
  for k, v in (release or ""):gmatch("([%w_]+)=\"?([^\"\n]*)\"?") do os_info[k:lower()] = v end
  local lines = {}
  for l in (rest or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  return {
    os = os_info, hostname = lines[1], kernel = lines[2], arch = lines[3], cpus = tonumber(lines[4]),
    memory_mb = lines[5] and math.floor((tonumber(lines[5]:match("%d+")) or 0) / 1024),
    uptime = lines[6] and tonumber(lines[6]:match("^[%d.]+")),
    load = lines[7] and lines[7]:match("^([%d.]+ [%d.]+ [%d.]+)"),
  }
end

--- h:facts() of any host: gathered in one round trip, then cached on h.
function M.of(h)
  if not h.cached_facts then h.cached_facts = M.parse(h:exec(M.SCRIPT).stdout) end
  return h.cached_facts
end

return M
