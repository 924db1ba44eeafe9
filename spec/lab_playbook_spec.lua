local support = require("spec.helpers.support")
local lab_state = require("spec.helpers.lab")
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local ports = require("spec.helpers.ports")

-- playbooks/lab.lua end to end through plan / apply / destroy: real
-- namespaces with sshd, PostgreSQL, HAProxy, a play over SSH (#6). Another
-- project's lab may share this machine: the spec asserts about the names it made.
describe("playbooks/lab.lua #machine", function()
  local why = lab_state.unmet({ "ip", "ssh-keygen", "sshd", "psql", "haproxy", "python3", "curl" })
  if why then pending(why) return end
  local dir, port
  before_each(function()
    dir = support.tmpdir()
    port = ports.free(1)[1]   -- another checkout's lab may hold 8080
    assert(fs.chmod(dir, "0755"))
    support.write(dir .. "/lab.lua", support.read(support.root .. "/playbooks/lab.lua"))
  end)
  after_each(function()
    support.orch("destroy", dir .. "/lab.lua", "--auto-approve", "-var", "hosts=2", "-var", "port=" .. port)
    support.remove_tree(dir)
  end)

  local function orch(cmd, ...)
    return support.orch(cmd, dir .. "/lab.lua", "-var", "hosts=2", "-var", "port=" .. port, ...)
  end

  -- what the lab calls host `name` of this checkout's state
  local function ns(name) return lab_state.netns(lab_state.state_id(dir .. "/.orch/state.db", "default"), name) end

  -- curl on the load balancer until both hosts have answered
  local function answers()
    local seen = {}
    support.eventually(function()
      local res = proc.run({ "curl", "-s", "-m", "2", ("http://127.0.0.1:%d/"):format(port) })
      -- each app logs in to the database over the lab network
      local who = res.stdout:match("^hello from (web%d) %(database 10%.77%.0%.1:%d+/app: connected%)")
      if who then seen[who] = true end
      return seen.web1 and seen.web2
    end, "answered by web1 and web2")
    return seen
  end

  it("applies, serves through the load balancer, repairs drift, and destroys without a trace", function()
    local res = orch("apply", "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.matches("Apply complete: 5 added", res.stdout, 1, true)
    assert.matches("web1 +ok=%d+  changed=%d+  failed=0", res.stdout)
    assert.not_matches("lab-demo-password", res.stdout, 1, true)
    answers()

    -- the hosts' keys came from apply, and SSH checks them
    local known = support.read(dir .. "/.orch/lab/known_hosts")
    assert.matches("^10%.77%.0%.%d+ ssh%-ed25519 %S+\n10%.77%.0%.%d+ ssh%-ed25519 %S+\n$", known)

    -- state shows the namespace's real name
    res = support.orch("state", "show", "lab.host.web2", "-f", dir .. "/lab.lua")
    assert.matches('netns%s+= "' .. ns("web2"):gsub("%-", "%%-") .. '"', res.stdout)

    -- a namespace deleted by hand: plan sees it, apply brings it back
    assert(proc.run({ "ip", "netns", "pids", ns("web2") }).ok)
    for pid in proc.run({ "ip", "netns", "pids", ns("web2") }).stdout:gmatch("%d+") do
      proc.run({ "kill", "-9", pid })
    end
    assert(proc.run({ "ip", "netns", "del", ns("web2") }).ok)
    res = orch("plan", "--detailed-exitcode")
    assert.equals(2, res.code, res.stdout .. res.stderr)
    assert.matches("! lab.host.web2 was deleted outside orch", res.stdout, 1, true)
    assert.matches("+ lab.host.web2  will be created", res.stdout, 1, true)
    res = orch("apply", "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    assert.is_true(lab_state.namespaces()[ns("web2")])
    answers()

    -- the database's cluster, named after the playbook's lab folder
    local db_root = lab_state.db_root(fs.realpath(dir) .. "/.orch/lab", lab_state.state_id(dir .. "/.orch/state.db", "default"))
    assert.truthy(fs.stat(db_root))

    res = orch("destroy", "--auto-approve")
    assert.equals(0, res.code, res.stdout .. res.stderr)
    local namespaces, links = lab_state.namespaces(), lab_state.links()
    local id = lab_state.state_id(dir .. "/.orch/state.db", "default")
    for _, name in ipairs({ "web1", "web2" }) do
      assert.is_nil(namespaces[ns(name)])
      assert.is_nil(links[lab_state.link(id, name)])
      assert.is_nil(fs.stat(lab_state.CLAIMS .. "/" .. ns(name)))
    end
    assert.equals(lab_state.bridge_held(), lab_state.has_bridge())   -- unless another lab holds it
    assert.is_nil(fs.stat(db_root))
    assert.same({}, support.processes_with(dir))
    assert.equals("", support.orch("state", "list", "-f", dir .. "/lab.lua").stdout)
  end)
end)
