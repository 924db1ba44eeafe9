local inventory = require("orch.inventory")
local selector = require("orch.selector")
local support = require("spec.helpers.support")

-- Interleaved on purpose: results come in this order whatever the selector's.
local HOSTS = {
  { "web01", { "web", "eu" } },
  { "db01", { "db", "eu" } },
  { "web02", { "web", "us" } },
  { "lb01", { "lb" } },
  { "web03", { "web", "eu" } },
  { "db02", { "db", "us" } },
  { "web10", { "web", "us" } },
  { "ctl", { "control" } },
}

local function fixture()
  local inv = inventory.new()
  for i, h in ipairs(HOSTS) do
    inv:add_host(h[1], { roles = h[2] }, "site.lua:" .. i)
  end
  return inv
end

local function names(hosts)
  local out = {}
  for i, h in ipairs(hosts) do out[i] = h.name end
  return out
end

local ALL = { "web01", "db01", "web02", "lb01", "web03", "db02", "web10", "ctl" }

-- selector -> the hosts it selects
local selects = {
  { "all", ALL },
  { "*", ALL },
  { "web01", { "web01" } },
  { "web02,web01", { "web01", "web02" } },
  { "web01,web01", { "web01" } },
  { "web*", { "web01", "web02", "web03", "web10" } },
  { "db0?", { "db01", "db02" } },
  { "*0?", { "web01", "db01", "web02", "lb01", "web03", "db02" } },
  { "web0[13]", { "web01", "web03" } },
  { "web0[1-2]", { "web01", "web02" } },
  { "web0[!1]", { "web02", "web03" } },
  { "web[12]*", { "web10" } },
  { "c?l", { "ctl" } },
  { "role:web", { "web01", "web02", "web03", "web10" } },
  { "role:w*", { "web01", "web02", "web03", "web10" } },
  { "role:[de]*", { "web01", "db01", "web03", "db02" } },
  { "role:web,!web02", { "web01", "web03", "web10" } },
  { "!web02,role:web", { "web01", "web03", "web10" } },
  { "role:web&role:eu", { "web01", "web03" } },
  { "role:web,&role:eu", { "web01", "web03" } },
  { "role:web&!role:eu", { "web02", "web10" } },
  { "role:web&web0?", { "web01", "web02", "web03" } },
  { "web*,db01", { "web01", "db01", "web02", "web03", "web10" } },
  { "all,!role:db", { "web01", "web02", "lb01", "web03", "web10", "ctl" } },
  { "!role:db", { "web01", "web02", "lb01", "web03", "web10", "ctl" } },
  { "!db01,!db02", { "web01", "web02", "lb01", "web03", "web10", "ctl" } },
  { "!role:web&!role:db", { "lb01", "ctl" } },
  { "&role:eu", { "web01", "db01", "web03" } },
  { "role:db,role:lb,!db02", { "db01", "lb01" } },
  { "role:eu&role:db,role:lb", { "db01", "lb01" } },
  { "role:web,&role:us,!web10", { "web02" } },
  { " role:web , ! web02 ", { "web01", "web03", "web10" } },
  { "nomatch*", {} },
  { "role:zz*", {} },
  { "web*,nomatch*", { "web01", "web02", "web03", "web10" } },
  { "role:web&role:control", {} },
  { "web01,!web01", {} },
  { "!all", {} },
}

-- selector -> exact error, against the fixture
local errors = {
  { "web3,db01", "unknown host 'web3' in selector 'web3,db01'; did you mean web03, web01, web02?" },
  { "web", "unknown host 'web' in selector 'web'; did you mean role:web, web01, web02?" },
  { "zzz", "unknown host 'zzz' in selector 'zzz'" },
  { "role:web,!web3", "unknown host 'web3' in selector 'role:web,!web3'; did you mean web03, web01, web02?" },
  { "role:wbe", "unknown role 'wbe' in selector 'role:wbe'; did you mean web?" },
  { "role:zzz", "unknown role 'zzz' in selector 'role:zzz'; roles are: control, db, eu, lb, us, web" },
  { "role:ctl", "unknown role 'ctl' in selector 'role:ctl'; 'ctl' is a host: select it without 'role:'" },
  { "web01&!role:dbs", "unknown role 'dbs' in selector 'web01&!role:dbs'; did you mean db?" },
  -- syntax
  { "web,,db", "bad selector 'web,,db': an empty term (a ',' with nothing before or after it)" },
  { "web,", "bad selector 'web,': an empty term (a ',' with nothing before or after it)" },
  { "", "bad selector '': it is empty" },
  { "  ", "bad selector '  ': it is empty" },
  { "!", "bad selector '!': '!' with nothing after it" },
  { "web01,!", "bad selector 'web01,!': '!' with nothing after it" },
  { "&", "bad selector '&': '&' with nothing after it" },
  { "web&", "bad selector 'web&': an empty factor (a '&' with nothing before or after it)" },
  { "web&&db", "bad selector 'web&&db': an empty factor (a '&' with nothing before or after it)" },
  { "role:", "bad selector 'role:': 'role:' needs a role name" },
  { "all,!role:", "bad selector 'all,!role:': 'role:' needs a role name" },
  { "!!web01", "bad selector '!!web01': '!!' (one '!' excludes)" },
  { "web 01", "bad selector 'web 01': a space inside 'web 01'" },
  { "web[12", "bad selector 'web[12': unclosed '[' in 'web[12'" },
  { "web[9-1]", "bad selector 'web[9-1]': bad range '9-1' in 'web[9-1]'" },
}

describe("orch.selector", function()
  local inv = fixture()

  for _, case in ipairs(selects) do
    it(("selects %q in inventory order"):format(case[1]), function()
      assert.same(case[2], names(selector.select(inv, case[1])))
    end)
  end

  for _, case in ipairs(errors) do
    it(("refuses %q"):format(case[1]), function()
      local ok, err = pcall(selector.select, inv, case[1])
      assert.is_false(ok)
      assert.equals(case[2], err)
    end)
  end

  it("gives the hosts themselves", function()
    local got = selector.select(inv, "ctl")
    assert.equals(inv:get("ctl"), got[1])
  end)

  it("refuses a selector that is not a string, at the caller's line", function()
    local ok, err = pcall(function() selector.select(inv, nil) end)
    assert.is_false(ok)
    assert.matches("selector_spec.lua:%d+: selector must be a string, got nil$", err)
  end)

  it("parses a selector once", function()
    local a = selector.parse("role:web,!web02")
    assert.equals(a, selector.parse("role:web,!web02"))
    assert.same({
      { filter = false, { neg = false, atom = { kind = "role", name = "web" } } },
      { filter = true, { neg = true, atom = { kind = "host", name = "web02" } } },
    }, a)
  end)

  it("checks syntax without an inventory", function()
    local ok, err = pcall(selector.parse, "a,,b")
    assert.is_false(ok)
    assert.equals("bad selector 'a,,b': an empty term (a ',' with nothing before or after it)", err)
  end)

  it("says when the inventory has no roles", function()
    local empty = inventory.new()
    empty:add_host("h", {}, "x:1")
    local ok, err = pcall(selector.select, empty, "role:web")
    assert.is_false(ok)
    assert.equals("unknown role 'web' in selector 'role:web'; the inventory has no roles", err)
    assert.same({}, selector.select(inventory.new(), "all"))
  end)

  describe("limit", function()
    local cases = {
      { "role:web", "role:eu", { "web01", "web03" } },
      { "all", "web0?,!web02", { "web01", "web03" } },
      { "role:db", "role:web", {} },
      { "all", "all", ALL },
    }
    for _, case in ipairs(cases) do
      it(("narrows %q by %q"):format(case[1], case[2]), function()
        local hosts = selector.select(inv, case[1])
        assert.same(case[3], names(selector.limit(hosts, inv, case[2])))
      end)
    end

    it("keeps the order of the hosts it is given", function()
      local hosts = { inv:get("web03"), inv:get("ctl"), inv:get("web01") }
      assert.same({ "web03", "web01" }, names(selector.limit(hosts, inv, "role:web")))
    end)

    it("raises for an unknown host in the limit", function()
      local ok, err = pcall(selector.limit, inv:hosts(), inv, "web04")
      assert.is_false(ok)
      assert.equals("unknown host 'web04' in selector 'web04'; did you mean web01, web02, web03?", err)
    end)
  end)

  describe("on a YAML inventory", function()
    local dir, yinv
    lazy_setup(function()
      dir = support.tmpdir()
      support.write(dir .. "/hosts.yaml", [[
all:
  hosts: { bastion: }
  children:
    web:
      hosts: { web01: , web02: }
      children:
        web_eu: { hosts: { web03: } }
    db:
      hosts: { db01: , web02: }
    staging:
]])
      yinv = assert(inventory.new():load(dir .. "/hosts.yaml"))
    end)
    lazy_teardown(function() support.remove_tree(dir) end)

    local cases = {
      { "role:web", { "web01", "web02", "web03" } },
      { "role:web_eu", { "web03" } },
      { "role:web&role:db", { "web02" } },
      { "role:staging", {} },
      { "!role:*", { "bastion" } },
      { "role:web*,!role:db", { "web01", "web03" } },
    }
    for _, case in ipairs(cases) do
      it(("selects %q through children"):format(case[1]), function()
        assert.same(case[2], names(selector.select(yinv, case[1])))
      end)
    end
  end)
end)
