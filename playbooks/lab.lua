-- lab.lua: the whole story on one machine: three hosts (network
-- namespaces with their own sshd), a PostgreSQL database and an HAProxy
-- load balancer, made by `orch apply`; then a play configures the hosts over
-- SSH: a small web app on port 80 that answers with its host name and
-- whether it reaches the database, whose URL it reads from an env_file.
-- Needs root.
--
--   orch apply playbooks/lab.lua --auto-approve
--   curl -s http://127.0.0.1:8080/      # again and again: web1, web2, web3
--   orch destroy playbooks/lab.lua --auto-approve

local dir = fs.realpath(playbook.dir) .. "/.orch/lab"

-- A throwaway key for the lab's hosts, made once.
local key = dir .. "/id_ed25519"
if not fs.stat(key) then
  assert(fs.mkdir(dir, "0700") ~= nil)
  sh({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-lab", "-f", key })
end
local pubkey = assert(fs.read(key .. ".pub"))

variable "hosts" { type = "number", default = 3 }
variable "port" { type = "number", default = 8080 }   -- where the load balancer listens
variable "db_password" { default = "lab-demo-password", sensitive = true }

local web, targets, known = {}, {}, ""
for i = 1, var.hosts do
  local name = "web" .. i
  web[i] = resource "lab.host" (name) { name = name, authorized_key = pubkey }
  targets[i] = web[i].address .. ":80"
  known = known .. web[i].address .. " " .. web[i].host_key .. "\n"
end

local db = resource "lab.database" "app" { name = "app", user = "app", password = var.db_password }

local lb = resource "lab.load_balancer" "front" { name = "front", listen = var.port, targets = targets,
  health_check = "/" }

-- The hosts' keys, as apply learns them: SSH checks each host against it.
local known_hosts = dir .. "/known_hosts"
resource "file" "known_hosts" { path = known_hosts, content = known, mode = "0600" }

for i = 1, var.hosts do
  host ("web" .. i) { address = web[i].address, user = "root", key_file = key, known_hosts = known_hosts,
    roles = { "web" }, vars = { db_url = db.lab_url, dir = web[i].dir } }
end

-- The app: in each host's own folder (lab.host's `dir`, so it goes when
-- the host does), started in the host's namespace, on its own address.
local APP = [[
import http.server, subprocess, sys
name, env_path = sys.argv[1], sys.argv[2]
env = dict(line.rstrip("\n").split("=", 1) for line in open(env_path) if "=" in line)
url = env.get("DATABASE_URL", "").strip('"')
db = url.rsplit("@", 1)[-1]   # host:port/name, never the password
def database():   # a query over the lab network, logged in with the URL's password
    try:
        r = subprocess.run(["psql", "-X", "-At", "-w", url, "-c", "select 'connected'"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else "unreachable"
    except Exception:
        return "unreachable"
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s (database %s: %s)\n" % (name, db, database())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Hello).serve_forever()
]]

play "web app" { on = "role:web", function(h)
  local home = h.vars.dir .. "/www"
  directory { home }
  file { home .. "/app.py", content = APP }
  env_file { home .. "/app.env", vars = { APP_HOST = h.name, DATABASE_URL = h.vars.db_url } }
  command { ("setsid python3 %s/app.py %s %s/app.env </dev/null >%s/app.log 2>&1 &"):format(home, h.name, home, home),
    unless = "curl -sf -o /dev/null http://127.0.0.1:80/" }
end }

output "url" { value = lb.url }
output "hosts" { value = targets }
output "database" { value = db.url, sensitive = true }
