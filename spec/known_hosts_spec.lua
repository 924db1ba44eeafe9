local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local proc = require("orch.proc")

-- Issue 11: orch trusts a host key exactly when OpenSSH's ssh, given the
-- same known_hosts, does: plain and hashed names, patterns and negation,
-- @revoked keys, @cert-authority lines (refused, saying why).
describe("known_hosts as OpenSSH reads it (#11)", function()
  if not sshd.available() then pending("needs sshd") return end
  local lab, dir, key, other, port
  lazy_setup(function()
    lab = sshd.start(1)
    port = lab.hosts[1].port
    key = support.read(lab.known_hosts):match("%[127%.0%.0%.1%]:" .. port .. " (%S+ %S+)")
    other = support.read(lab.wrong_key .. ".pub"):match("^(%S+ %S+)")
  end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.remove_tree(dir) end)

  local function ssh_accepts(file, checking)
    local res = proc.run({ "ssh", "-F", "/dev/null", "-p", tostring(port), "-l", lab.user,
      "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=" .. (checking or "yes"),
      "-o", "UserKnownHostsFile=" .. file, "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "ControlPath=none", "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-i", lab.key,
      "-o", "LogLevel=ERROR", "127.0.0.1", "true" })
    return res.code == 0, res.stderr
  end

  local function orch_accepts(file, checking)
    support.write(dir .. "/inv.lua", ([[host "h1" { address = "127.0.0.1", port = %d, user = %q,
      key_file = %q, known_hosts = %q, host_key_checking = %q }]]):format(port, lab.user, lab.key, file,
      checking or "yes"))
    local res = support.orch("run", "h1", "-i", dir .. "/inv.lua", "--", "true",
      { env = { HOME = dir, SSH_AUTH_SOCK = false } })
    return res.code == 0, res.stdout .. res.stderr
  end

  -- known_hosts holding text ($K: the server's key, $O: another key, $P: its port)
  local function known(text)
    local file = dir .. "/known_hosts"
    support.write(file, (text:gsub("%$K", key):gsub("%$O", other):gsub("%$P", port)))
    return file
  end

  local function agree(text, expected)
    local file = known(text)
    local by_ssh, ssh_said = ssh_accepts(file)
    local by_orch, orch_said = orch_accepts(file)
    assert.equals(expected, by_ssh, "ssh: " .. ssh_said)
    assert.equals(by_ssh, by_orch, "orch: " .. orch_said)
    return orch_said
  end

  it("trusts a plain entry, a pattern, and a name hashed by ssh-keygen -H", function()
    agree("[127.0.0.1]:$P $K\n", true)
    agree("# a comment\n[127.0.0.*]:$P $K\n", true)
    agree("example.org,[127.0.0.?]:$P $K\n", true)
    local file = known("[127.0.0.1]:$P $K\n")
    assert.equals(0, proc.run({ "ssh-keygen", "-H", "-f", file }).code)
    assert.matches("^|1|", support.read(file))
    assert.is_true((ssh_accepts(file)))
    assert.is_true((orch_accepts(file)))
  end)

  it("refuses a host its pattern negates, and a key that changed", function()
    agree("[127.0.0.*]:$P,![127.0.0.1]:$P $K\n", false)
    local said = agree("[127.0.0.1]:$P $O\n", false)
    assert.matches("HOST KEY CHANGED", said, 1, true)
    assert.matches("known_hosts:1", said, 1, true)
  end)

  it("refuses a revoked key even where another line trusts it, and never records one", function()
    local said = agree("[127.0.0.1]:$P $K\n@revoked * $K\n", false)
    assert.matches("@revoked in " .. dir .. "/known_hosts:2", said, 1, true)
    local file = known("@revoked * $K\n")
    local before = support.read(file)
    assert.is_false((orch_accepts(file, "accept-new")))
    assert.equals(before, support.read(file))
    assert.is_false((ssh_accepts(file, "accept-new")))
  end)

  it("refuses a host only a @cert-authority line covers, saying why", function()
    local said = agree("@cert-authority [127.0.0.1]:$P $O\n", false)
    assert.matches("@cert-authority", said, 1, true)
    assert.matches("can't check host certificates", said, 1, true)
  end)

  it("records an unknown key with accept-new, which then matches", function()
    local file = known("")
    assert.is_true((orch_accepts(file, "accept-new")))
    assert.equals(("[127.0.0.1]:%d %s\n"):format(port, key), support.read(file))
    assert.is_true((ssh_accepts(file)))    -- OpenSSH reads what orch wrote
    assert.is_true((orch_accepts(file)))
  end)
end)
