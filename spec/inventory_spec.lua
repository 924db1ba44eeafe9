local inventory = require("orch.inventory")
local secret = require("orch.secret")
local yaml = require("orch.core.yaml")
local support = require("spec.helpers.support")

local HOME = os.getenv("HOME")

-- A production-like inventory: vars at every level, nested children, a
-- host in two groups, a null host, a host range, a group without hosts.
local HOSTS_YAML = [[
# site inventory
all:
  vars:
    ntp: 10.0.0.1
    ansible_user: admin
    region: global
    port: 80
  hosts:
    bastion:
      ansible_host: 10.0.0.2
      ansible_port: "2200"
      known_hosts: ~/.ssh/known_hosts_site
      host_key_checking: accept-new
  children:
    web:
      vars:
        port: 8080          # the app's port: a variable, not SSH's
        tier: frontend
      hosts:
        web01: { ansible_host: 10.0.0.11, ansible_user: deploy, ansible_port: 2222 }
        web02:
      children:
        web_eu:
          vars: { region: eu, port: 8443 }
          hosts:
            web03:
              ansible_ssh_private_key_file: ~/.ssh/web_eu
              max_conn: 512
              port: 2201     # orch's own key in a host's mapping: SSH's port
    db:
      vars:
        ansible_ssh_private_key_file: ~/.ssh/db
        tier: backend
      hosts:
        db01:
          ansible_become: yes
          ansible_become_password: s3cret
          roles: [primary]
        web02:               # also a db replica: in two groups
          replica: true
    monitoring:
      hosts:
        mon[1:2].example.com:
          ansible_connection: local
    staging:
]]

-- name -> what the host must be (fields not listed keep their defaults)
local expected = {
  { name = "bastion", address = "10.0.0.2", port = 2200, user = "admin", connection = "ssh",
    known_hosts = HOME .. "/.ssh/known_hosts_site", host_key_checking = "accept-new",
    roles = {}, vars = { ntp = "10.0.0.1", region = "global", port = 80 } },
  { name = "web01", address = "10.0.0.11", port = 2222, user = "deploy", connection = "ssh",
    roles = { "web" }, vars = { ntp = "10.0.0.1", region = "global", port = 8080, tier = "frontend" } },
  -- web and db are both depth 1: the later in ASCII order (web) wins, as Ansible
  { name = "web02", address = "web02", port = 22, user = "admin", connection = "ssh",
    key_file = HOME .. "/.ssh/db", roles = { "db", "web" },
    vars = { ntp = "10.0.0.1", region = "global", port = 8080, tier = "frontend", replica = true } },
  { name = "web03", address = "web03", port = 2201, user = "admin", connection = "ssh",
    key_file = HOME .. "/.ssh/web_eu", roles = { "web", "web_eu" },
    vars = { ntp = "10.0.0.1", region = "eu", port = 8443, tier = "frontend", max_conn = 512 } },
  { name = "db01", address = "db01", port = 22, user = "admin", connection = "ssh", become = true,
    key_file = HOME .. "/.ssh/db", roles = { "db", "primary" },
    vars = { ntp = "10.0.0.1", region = "global", port = 80, tier = "backend" } },
  { name = "mon1.example.com", address = "mon1.example.com", port = 22, user = "admin",
    connection = "local", roles = { "monitoring" },
    vars = { ntp = "10.0.0.1", region = "global", port = 80 } },
  { name = "mon2.example.com", address = "mon2.example.com", port = 22, user = "admin",
    connection = "local", roles = { "monitoring" },
    vars = { ntp = "10.0.0.1", region = "global", port = 80 } },
}

local FIELDS = { "name", "address", "port", "user", "connection", "key_file", "known_hosts",
  "host_key_checking", "become", "roles", "vars" }

-- The fields of h that a case compares (become: false unless listed).
local function project(h)
  local out = {}
  for _, f in ipairs(FIELDS) do out[f] = h[f] end
  if out.become == false then out.become = nil end
  return out
end

local function names(hosts)
  local out = {}
  for i, h in ipairs(hosts) do out[i] = h.name end
  return out
end

-- Write `text` as dir/name: a new inventory and the path, to load.
local function load_text(dir, name, text)
  local path = dir .. "/" .. name
  support.write(path, text)
  local inv = inventory.new()
  return inv, path
end

-- The error a function raises.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- The message of a load that fails, as every fault of the file does
-- (#10: one contract, no raising for a bad file).
local function refused(inv, path)
  local ok, err, code = inv:load(path)
  assert.is_nil(ok, "expected the load to fail")
  assert.equals("EINVAL", code)
  return err
end

describe("orch.inventory", function()
  describe("an Ansible YAML inventory", function()
    local dir, inv, path
    lazy_setup(function()
      dir = support.tmpdir()
      inv, path = load_text(dir, "hosts.yaml", HOSTS_YAML)
      assert.equals(inv, inv:load(path))
    end)
    lazy_teardown(function() support.remove_tree(dir) end)

    it("keeps hosts in the order they are written", function()
      assert.same({ "bastion", "web01", "web02", "web03", "db01",
        "mon1.example.com", "mon2.example.com" }, names(inv:hosts()))
    end)

    for _, want in ipairs(expected) do
      it("resolves " .. want.name .. ": address, port, user, keys, roles, vars", function()
        local h = inv:get(want.name)
        assert.is_table(h)
        assert.same(want, project(h))
      end)
    end

    it("makes every group a role, even one without hosts; never all or ungrouped", function()
      assert.same({ "db", "monitoring", "primary", "staging", "web", "web_eu" }, inv:roles())
    end)

    it("keeps passwords as secrets", function()
      local h = inv:get("db01")
      assert.is_true(secret.is(h.become_password))
      assert.equals("s3cret", secret.reveal(h.become_password))
      assert.equals("(sensitive)", tostring(h.become_password))
      assert.is_nil(h.password)
      assert.is_nil(h.vars.ansible_become_password)
    end)

    it("gives a fresh list from hosts() and nil for an unknown name", function()
      local list = inv:hosts()
      list[1] = nil
      assert.equals(7, #inv:hosts())
      assert.is_nil(inv:get("web04"))
    end)
  end)

  -- What decides a variable's value: name -> yaml, host, { var = value }
  local precedence = {
    { "the host over its groups and all",
      "all: {vars: {v: all}, children: {g: {vars: {v: g}, hosts: {h: {v: host}}}}}\n",
      "h", { v = "host" } },
    { "a child group over its parent",
      "all: {vars: {v: all}, children: {p: {vars: {v: p}, children: {c: {vars: {v: c}, hosts: {h: }}}}}}\n",
      "h", { v = "c" } },
    { "a group over all",
      "all: {vars: {v: all, w: all}, children: {g: {vars: {v: g}, hosts: {h: }}}}\n",
      "h", { v = "g", w = "all" } },
    { "the deeper of two unrelated groups",
      "all:\n  children:\n    a: {vars: {v: a}, children: {a2: {vars: {v: a2}}}}\n"
        .. "    z: {vars: {v: z}, hosts: {h: }}\n    b: {children: {a2: {hosts: {h: }}}}\n",
      "h", { v = "a2" } },
    { "at one depth, the later name in ASCII order",
      "zz: {vars: {v: zz}, hosts: {h: }}\naa: {vars: {v: aa}, hosts: {h: }}\n",
      "h", { v = "zz" } },
    { "ansible_group_priority over the name",
      "zz: {vars: {v: zz}, hosts: {h: }}\naa: {vars: {v: aa, ansible_group_priority: 10}, hosts: {h: }}\n",
      "h", { v = "aa", ansible_group_priority = 10 } },
    { "top-level groups without all:, and a null group",
      "web: {hosts: {h: {v: 1}}}\nempty:\n", "h", { v = 1 } },
    { "nulls as yaml.null", "g: {hosts: {h: {v: }}}\n", "h", { v = yaml.null } },
  }

  describe("variable precedence", function()
    for _, case in ipairs(precedence) do
      it(case[1], function()
        local dir = support.tmpdir()
        finally(function() support.remove_tree(dir) end)
        local inv, path = load_text(dir, "inv.yaml", case[2])
        assert(inv:load(path))
        assert.same(case[4], inv:get(case[3]).vars)
      end)
    end
  end)

  -- Host attributes from keys: yaml host mapping -> expected fields
  local attributes = {
    { "old ansible_ssh_* aliases", "{ansible_ssh_host: a.example, ansible_ssh_user: u, ansible_ssh_port: 2022, ansible_ssh_pass: pw}",
      { address = "a.example", user = "u", port = 2022 } },
    { "ansible_private_key_file", "{ansible_private_key_file: ~/k}", { key_file = HOME .. "/k" } },
    { "ssh over the generic key file", "{ansible_private_key_file: /a, ansible_ssh_private_key_file: /b}",
      { key_file = "/b" } },
    { "orch's own keys over ansible_*", "{ansible_host: 10.0.0.1, address: 10.0.0.9, user: me, connection: local}",
      { address = "10.0.0.9", user = "me", connection = "local" } },
    { "smart connection is ssh", "{ansible_connection: smart}", { connection = "ssh" } },
    { "become forms", "{ansible_become: 'True'}", { become = true } },
    { "host_key_checking: false", "{ansible_host_key_checking: false}", { host_key_checking = "no" } },
    { "~user is left alone", "{key_file: ~bob/k}", { key_file = "~bob/k" } },
  }

  describe("host keys", function()
    for _, case in ipairs(attributes) do
      it("reads " .. case[1], function()
        local dir = support.tmpdir()
        finally(function() support.remove_tree(dir) end)
        local inv, path = load_text(dir, "inv.yaml", "all:\n  hosts:\n    h: " .. case[2] .. "\n")
        assert(inv:load(path))
        local h = inv:get("h")
        for k, v in pairs(case[3]) do assert.same(v, h[k], k) end
        assert.same({}, h.vars)
      end)
    end

    it("reads ansible_ssh_pass as a secret", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local inv, path = load_text(dir, "inv.yaml", "all: {hosts: {h: {ansible_ssh_pass: pw}}}\n")
      assert(inv:load(path))
      assert.equals("pw", secret.reveal(inv:get("h").password))
    end)

    it("defaults: address is the name, port 22, ssh, no become, no user", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local inv, path = load_text(dir, "inv.yaml", "all: {hosts: {h: }}\n")
      assert(inv:load(path))
      assert.same({ name = "h", address = "h", port = 22, connection = "ssh", become = false,
        roles = {}, vars = {} }, inv:get("h"))
    end)
  end)

  -- Written order survives what could look like keys: yaml -> host names
  local orders = {
    { "block scalars, quotes and comments", [[
all:
  vars:
    motd: |
      zeta: not a host
      alpha: not a host
    note: "beta: not a host"   # gamma: not a host either
    quoted: 'it''s: fine'
  children:
    g:
      hosts:
        gamma:
        'beta':
        "alpha": { x: 1 }
        zeta:
]], { "gamma", "beta", "alpha", "zeta" } },
    { "flow mappings, keys with and without values", [[
g: { hosts: { c: , b: {v: [1, 2]}, a: null } }
h:
  hosts: {z, y, "x"}
]], { "c", "b", "a", "z", "y", "x" } },
    { "a range key and a later group repeating a host", [[
g:
  hosts:
    web[2:3]:
    web1:
h: { hosts: { web3: , web0: } }
]], { "web2", "web3", "web1", "web0" } },
    { "IPv6 names and names with dots", "g:\n  hosts:\n    fe80::2:\n    ::1:\n    b.example:\n    a:\n",
      { "fe80::2", "::1", "b.example", "a" } },
  }

  describe("host order", function()
    for _, case in ipairs(orders) do
      it("follows the text through " .. case[1], function()
        local dir = support.tmpdir()
        finally(function() support.remove_tree(dir) end)
        local inv, path = load_text(dir, "inv.yaml", case[2])
        assert(inv:load(path))
        assert.same(case[3], names(inv:hosts()))
      end)
    end
  end)

  describe("host ranges", function()
    local ranges = {
      { "web[01:03]", { "web01", "web02", "web03" } },
      { "n[8:10].x", { "n8.x", "n9.x", "n10.x" } },
      { "db-[a:c]", { "db-a", "db-b", "db-c" } },
      { "s[0:6:3]", { "s0", "s3", "s6" } },
      { "r[1:2]-[a:b]", { "r1-a", "r1-b", "r2-a", "r2-b" } },
    }
    for _, case in ipairs(ranges) do
      it("expands " .. case[1], function()
        local dir = support.tmpdir()
        finally(function() support.remove_tree(dir) end)
        local inv, path = load_text(dir, "inv.yaml", "g:\n  hosts:\n    " .. case[1] .. ":\n")
        assert(inv:load(path))
        assert.same(case[2], names(inv:hosts()))
      end)
    end
  end)

  -- Errors: yaml text -> exact message, with $P the file's path
  local yaml_errors = {
    { "hosts as a list", "all:\n  children:\n    web:\n      hosts:\n        - web01\n",
      "$P: group 'web': hosts must be a mapping of host names, got a list" },
    { "a port that is not a number", "web:\n  hosts:\n    web01: { ansible_port: eighty }\n",
      "$P: host 'web01': 'ansible_port' must be a port number (1-65535), got string \"eighty\"" },
    { "a port out of range", "web:\n  hosts:\n    web01: { port: 70000 }\n",
      "$P: host 'web01': 'port' must be a port number (1-65535), got number 70000" },
    { "a group's bad key, with a suggestion", "web:\n  host:\n    web01:\n",
      "$P: group 'web': unknown key 'host' (did you mean 'hosts'?) (a group has hosts, vars and children)" },
    { "vars as a list", "web:\n  vars: [a, b]\n",
      "$P: group 'web': vars must be a mapping of variable names, got a list" },
    { "children as a string", "all:\n  children: web\n",
      "$P: group 'all': children must be a mapping of group names, got string \"web\"" },
    { "a group as a string", "web: yes\n",
      "$P: group 'web' must be a mapping of hosts, vars and children, got string \"yes\"" },
    { "a host as a string", "web:\n  hosts:\n    web01: 10.0.0.1\n",
      "$P: group 'web': host 'web01' must be a mapping of variables, got string \"10.0.0.1\"" },
    { "a list at the top", "- web01\n",
      "$P: the top level must be a mapping of groups (like 'all:'), got a list" },
    { "hosts at the top", "hosts:\n  web01:\n",
      "$P: 'hosts' at the top level must be inside a group, like 'all:'" },
    { "an unsupported connection", "web:\n  hosts:\n    w: { ansible_connection: docker }\n",
      "$P: host 'w': 'ansible_connection' must be 'ssh' or 'local', got string \"docker\"" },
    { "a bad become", "web:\n  vars: { ansible_become: maybe }\n  hosts: { w: }\n",
      "$P: host 'w': 'ansible_become' must be true or false, got string \"maybe\"" },
    { "a cycle of groups", "a:\n  children:\n    b:\n      children:\n        a:\n",
      "$P: group 'a' is its own ancestor (a > b > a)" },
    { "a bad range", "web:\n  hosts:\n    web[1:x]:\n",
      "$P:3: group 'web': bad host range 'web[1:x]': expected numbers or single letters" },
    { "a host name no selector can name", "web:\n  hosts:\n    'web 01':\n",
      "$P: group 'web': host 'web 01' cannot be used in a selector (no spaces or , & * ? [ ], no leading ! or role:)" },
    { "a YAML syntax error, as libyaml says it", "all:\n  hosts:\n    web01: x: 1\n",
      "$P:3:13: mapping values are not allowed in this context" },
  }

  describe("errors in a YAML inventory", function()
    for _, case in ipairs(yaml_errors) do
      it("names the file and the group or host for " .. case[1], function()
        local dir = support.tmpdir()
        finally(function() support.remove_tree(dir) end)
        local inv, path = load_text(dir, "hosts.yaml", case[2])
        assert.equals(case[3]:gsub("%$P", path), refused(inv, path))
        assert.same({}, inv:hosts())  -- nothing half-loaded
      end)
    end

    it("fails with ENOENT for a missing file", function()
      local inv = inventory.new()
      local ok, err, code = inv:load("/nonexistent/hosts.yaml")
      assert.is_nil(ok)
      assert.equals("/nonexistent/hosts.yaml: No such file or directory", err)
      assert.equals("ENOENT", code)
    end)

    it("refuses an INI inventory with the command that converts it", function()
      local inv = inventory.new()
      assert.equals("hosts.ini: INI inventories are not supported; convert it to YAML with "
        .. "'ansible-inventory -i hosts.ini --list -y'", refused(inv, "hosts.ini"))
    end)

    it("reads an empty file as no hosts", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local inv, path = load_text(dir, "empty.yml", "# nothing yet\n")
      assert(inv:load(path))
      assert.same({}, inv:hosts())
      assert.same({}, inv:roles())
    end)
  end)

  describe("add_host (the DSL)", function()
    it("takes every attribute", function()
      local inv = inventory.new()
      local h = inv:add_host("web01", { address = "10.0.0.11", user = "deploy", port = 2222,
        roles = { "web", "eu", "web" }, vars = { port = 8080 }, connection = "ssh",
        key_file = "~/.ssh/id", password = "pw", become = true, become_password = secret.new("bp"),
        known_hosts = "/etc/kh", host_key_checking = "no" }, "site.lua:3")
      assert.equals(h, inv:get("web01"))
      assert.same({ name = "web01", address = "10.0.0.11", port = 2222, user = "deploy",
        connection = "ssh", key_file = HOME .. "/.ssh/id", known_hosts = "/etc/kh",
        host_key_checking = "no", become = true, roles = { "web", "eu" },
        vars = { port = 8080 } }, project(h))
      assert.equals("pw", secret.reveal(h.password))
      assert.equals("bp", secret.reveal(h.become_password))
    end)

    it("defaults a bare host and keeps the order of calls", function()
      local inv = inventory.new()
      inv:add_host("ctl", { connection = "local", roles = { "control" } }, "site.lua:1")
      inv:add_host("b", nil, "site.lua:2")
      inv:add_host("a", {}, "site.lua:3")
      assert.same({ "ctl", "b", "a" }, names(inv:hosts()))
      assert.same({ name = "a", address = "a", port = 22, connection = "ssh", become = false,
        roles = {}, vars = {} }, inv:get("a"))
      assert.equals("local", inv:get("ctl").connection)
      assert.same({ "control" }, inv:roles())
    end)

    it("copies roles and vars, so the caller's tables stay theirs", function()
      local inv = inventory.new()
      local vars = { a = 1 }
      local h = inv:add_host("h", { vars = vars }, "x:1")
      vars.a = 2
      assert.equals(1, h.vars.a)
    end)

    -- attrs -> exact message
    local dsl_errors = {
      { "a typo, with a suggestion", "web01", { adress = "10.0.0.11" },
        "host 'web01': unknown attribute 'adress' (did you mean 'address'?)" },
      { "a typo without a close name", "web01", { colour = "red" },
        "host 'web01': unknown attribute 'colour'" },
      { "a wrong type", "web01", { port = "ssh" },
        "host 'web01': attribute 'port' must be a port number (1-65535), got string \"ssh\"" },
      { "roles as a string", "web01", { roles = "web" },
        "host 'web01': attribute 'roles' must be a list of role names, got string \"web\"" },
      { "a bad role name", "web01", { roles = { "web,db" } },
        "host 'web01': attribute 'roles': bad role name: 'web,db' cannot be used "
          .. "in a selector (no spaces or , & * ? [ ], no leading ! or role:)" },
      { "a bad connection", "web01", { connection = "winrm" },
        "host 'web01': attribute 'connection' must be 'ssh' or 'local', got string \"winrm\"" },
      { "a bad host_key_checking", "web01", { host_key_checking = "maybe" },
        "host 'web01': attribute 'host_key_checking' must be 'yes', 'accept-new' or 'no', got string \"maybe\"" },
      { "a positional value", "web01", { "10.0.0.1" },
        "host 'web01': unexpected positional value string \"10.0.0.1\"" },
      { "attributes that are not a table", "web01", "10.0.0.1",
        "host 'web01': expected a table of attributes, got string \"10.0.0.1\"" },
      { "a name with a space", "web 01", {},
        "host: 'web 01' cannot be used in a selector (no spaces or , & * ? [ ], no leading ! or role:)" },
      { "the name all", "all", {}, "host: 'all' is reserved: it selects every host" },
      { "no name", nil, {}, "host: a name must be a non-empty string, got nothing" },
    }
    for _, case in ipairs(dsl_errors) do
      it("refuses " .. case[1], function()
        local inv = inventory.new()
        assert.equals(case[4], raised(inv.add_host, inv, case[2], case[3], "site.lua:9"))
        assert.same({}, inv:hosts())
      end)
    end

    it("names both places of a host defined twice", function()
      local inv = inventory.new()
      inv:add_host("web01", {}, "site.lua:3")
      assert.equals("host 'web01' is defined twice: at site.lua:3 and at site.lua:7",
        raised(inv.add_host, inv, "web01", {}, "site.lua:7"))
      assert.equals(1, #inv:hosts())
    end)

    it("names the YAML line of a host the DSL defines again", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local inv, path = load_text(dir, "hosts.yaml", HOSTS_YAML)
      assert(inv:load(path))
      assert.equals(("host 'web03' is defined twice: at %s:26 and at site.lua:4"):format(path),
        raised(inv.add_host, inv, "web03", {}, "site.lua:4"))
    end)

    it("names both places when a YAML file repeats a DSL host", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      local inv, path = load_text(dir, "hosts.yaml", "# web\nweb:\n  hosts:\n    w1:\n    w2:\n")
      inv:add_host("w2", {}, "site.lua:1")
      assert.equals(("%s: host 'w2' is defined twice: at site.lua:1 and at %s:5"):format(path, path),
        refused(inv, path))
      assert.same({ "w2" }, names(inv:hosts()))  -- w1 was not added either
    end)
  end)

  describe("the host function", function()
    it("reports the playbook line of a typo and of a duplicate", function()
      local inv = inventory.new()
      local host = inv:dsl()
      local chunk = assert(load('host "a" { address = "x" }\nhost "b" { adress = "y" }\n', "@site.lua", "t",
        { host = host }))
      assert.equals("site.lua:2: host 'b': unknown attribute 'adress' (did you mean 'address'?)",
        raised(chunk))
      local again = assert(load('\n\nhost "a" {}\n', "@other.lua", "t", { host = host }))
      assert.equals("other.lua:3: host 'a' is defined twice: at site.lua:1 and at other.lua:3",
        raised(again))
    end)
  end)

  describe("a .lua inventory, through the real binary", function()
    it("runs the file with host in scope; ~ is $HOME", function()
      local dir = support.tmpdir()
      finally(function() support.remove_tree(dir) end)
      support.write(dir .. "/hosts.lua", [[
for i = 1, 3 do
  host ("web0" .. i) { address = "10.0.0.1" .. i, roles = { "web" }, key_file = "~/.ssh/web" }
end
host "ctl" { connection = "local" }
]])
      support.write(dir .. "/show.lua", [[
local inv = require("orch.inventory").new()
assert(inv:load(arg[1]))
for _, h in ipairs(inv:hosts()) do
  print(h.name, h.address, h.connection, h.key_file, table.concat(h.roles, ","))
end
]])
      local res = support.orch("lua", dir .. "/show.lua", dir .. "/hosts.lua", { env = { HOME = "/home/t" } })
      assert.equals("", res.stderr)
      assert.equals(0, res.code)
      assert.equals(table.concat({
        "web01\t10.0.0.11\tssh\t/home/t/.ssh/web\tweb",
        "web02\t10.0.0.12\tssh\t/home/t/.ssh/web\tweb",
        "web03\t10.0.0.13\tssh\t/home/t/.ssh/web\tweb",
        "ctl\tctl\tlocal\tnil\t",
      }, "\n") .. "\n", res.stdout)
    end)

    it("fails with ENOENT for a missing .lua file", function()
      local ok, err, code = inventory.new():load("/nonexistent/hosts.lua")
      assert.is_nil(ok)
      assert.equals("/nonexistent/hosts.lua: No such file or directory", err)
      assert.equals("ENOENT", code)
    end)
  end)

  describe("close_matches", function()
    local cases = {
      { "web3", { "web01", "web03", "db01", "web02" }, { "web03", "web01", "web02" } },
      { "wbe", { "db", "web", "web_eu" }, { "web" } },
      { "web_e", { "db", "web", "web_eu" }, { "web_eu", "web" } },
      { "db", { "db01", "web", "dc" }, { "dc", "db01" } },
      { "zzz", { "web01", "db01" }, {} },
    }
    for _, case in ipairs(cases) do
      it("suggests for " .. case[1], function()
        assert.same(case[3], inventory.close_matches(case[1], case[2]))
      end)
    end
  end)
end)
