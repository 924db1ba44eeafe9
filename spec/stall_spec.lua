local support = require("spec.helpers.support")
local sshd = require("spec.helpers.sshd")
local ports = require("spec.helpers.ports")
local proc = require("orch.proc")
local fs = require("orch.core.fs")

-- A TCP proxy in front of the spec's sshd that SIGSTOP freezes: the
-- connection stays up, and nothing more gets through (a network that
-- stalls, not one that resets).
local PROXY = [[
import socket, sys, threading
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(8)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    finally:
        try: b.shutdown(socket.SHUT_WR)
        except OSError: pass
print("ready", flush=True)
while True:
    c, _ = lst.accept()
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    threading.Thread(target=pipe, args=(c, s), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c), daemon=True).start()
]]

-- Issue 12: a host whose network stops answering mid-command never hangs
-- orch: a timeout holds within its value plus a second or two, and without
-- one the host is declared lost after the keepalives go unanswered.
describe("a stalled network (#12)", function()
  if not sshd.available() or support.missing({ "python3" }) then pending("needs sshd and python3") return end
  local lab, dir, proxy, port
  lazy_setup(function() lab = sshd.start(1) end)
  lazy_teardown(function() if lab then lab:stop() end end)
  before_each(function()
    dir = support.tmpdir()
    port = ports.free(1)[1]
    proxy = assert(fs.tmpdir("orch-proxy-")) .. "/proxy.py"
    support.write(proxy, PROXY)
  end)
  after_each(function()
    support.remove_tree(dir)
    support.remove_tree(proxy:match("^(.*)/[^/]*$"))
  end)

  -- orch play site.lua against the proxied host; stalls the proxy once the
  -- command has started ($D/started), returns the result and the seconds
  -- orch took after the stall
  local function play_stalled(body, alive)
    -- the proxy on a free port (one taken since, by a listener or an
    -- outgoing connection, makes it exit: another port then)
    local p
    for _ = 1, 5 do
      p = assert(proc.spawn({ argv = { "python3", proxy, tostring(port), tostring(lab.hosts[1].port) } }))
      local said = ""
      while not said:find("ready", 1, true) do
        local stream, chunk = p:read()
        if not stream then break end
        said = said .. chunk
      end
      if said:find("ready", 1, true) then break end
      assert(said:find("Address already in use", 1, true), "the proxy ended: " .. said)
      p:wait(); p:close(); p = nil
      port = ports.free(1)[1]
    end
    assert(p, "no free port for the proxy")
    finally(function() p:kill("CONT"); p:kill("KILL"); p:wait(); p:close() end)
    support.write(dir .. "/inv.lua", ([[host "h1" { address = "127.0.0.1", port = %d, user = %q, key_file = %q,
      host_key_checking = "no", server_alive_interval = %d, server_alive_count_max = 2 }]]):format(
      port, lab.user, lab.key, alive))
    support.write(dir .. "/site.lua", (body:gsub("%$D", dir)))
    local o = assert(proc.spawn({ argv = { support.bin, "play", dir .. "/site.lua", "-i", dir .. "/inv.lua",
      "--state", dir .. "/state.db" }, env = { HOME = lab.home, NO_COLOR = "1" } }))
    support.wait_for(dir .. "/started", "x")
    assert(p:kill("STOP"))
    local stalled = require("orch.core.loop").now()
    local out = {}
    while true do
      local stream, chunk = o:read()
      if not stream then break end
      out[#out + 1] = chunk
    end
    local r = o:wait()
    o:close()
    return r, table.concat(out), require("orch.core.loop").now() - stalled
  end

  it("holds a command's timeout, and reports it", function()
    local r, out, took = play_stalled([[play "p" { on = "all", function(h)
  h:exec("echo x > $D/started; sleep 30", { timeout = 3 })
end }]], 60)
    assert.equals(1, r.code, out)
    assert.matches("timed out after 3 s", out, 1, true)
    -- an upper bound that tells a hang (30 s, or forever) from an answer
    assert.is_true(took < 15, ("took %.1f s"):format(took))
  end)

  it("declares the host lost when its keepalives go unanswered, with check = false too", function()
    local r, out, took = play_stalled([[play "p" { on = "all", function(h)
  local res = h:exec("echo x > $D/started; sleep 60", { check = false })
  log(("lost=%s stdout=%q"):format(tostring(res.lost), res.stdout))
  -- every other method, after: nil and a reason naming the host
  for _, try in ipairs({
    { "stat", function() return h:stat("/etc/hostname") end },
    { "read", function() return h:read("/etc/hostname") end },
    { "write", function() return h:write("/tmp/orch-stall-x", "y") end },
    { "walk", function() return h:walk("/tmp") end },
    { "remove", function() return h:remove("/tmp") end },
    { "rename", function() return h:rename("/tmp/orch-stall-x", "/tmp/orch-stall-y") end },
  }) do
    local ok, v, err = pcall(try[2])
    log(("%s: %s %s"):format(try[1], tostring(ok and v), tostring(ok and err or v)))
  end
end }]], 1)
    assert.equals(0, r.code, out)
    assert.matches('lost=true stdout=""', out, 1, true)
    for _, m in ipairs({ "stat", "read", "write", "walk", "remove", "rename" }) do
      assert.matches(m .. ": nil h1: [^\n]*", out)
    end
    assert.not_matches("%.lua:%d", out)
    assert.is_true(took < 15, ("took %.1f s"):format(took))   -- (1 s x 2 keepalives; the command sleeps 60)
  end)
end)
