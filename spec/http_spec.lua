local http = require("orch.core.http")
local digest = require("orch.core.digest")
local loop = require("orch.core.loop")
local proc = require("orch.proc")
local support = require("spec.helpers.support")

-- One request with the real curl: { status, headers (names lower-cased), body }.
local function curl(srv, path, ...)
  local argv = { "curl", "-sS", "-i", "--max-time", "10", "http://" .. srv:address() .. path, ... }
  local r = assert(proc.run(argv))
  assert(r.code == 0, "curl failed: " .. r.stderr)
  local out = r.stdout
  while out:match("^HTTP/%S+ 1%d%d") do  -- 100 Continue before the answer
    out = out:gsub("^.-\r\n\r\n", "", 1)
  end
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  local res = { status = tonumber(head:match("^HTTP/%S+ (%d+)")), headers = {}, body = body }
  for name, value in head:gmatch("\n([^:\r\n]+): ([^\r\n]*)") do
    res.headers[name:lower()] = value
  end
  return res
end

-- curl in a task of its own; its :wait() gives true, result.
local function curl_task(srv, path, ...)
  local args = { ... }
  return loop.spawn(function() return curl(srv, path, table.unpack(args)) end)
end

-- What Lua saw of a request, as a plain table.
local function seen(req)
  return { method = req.method, path = req.path, query = req.query,
           headers = req.headers, body = req.body, remote = req.remote }
end

local function listen(opts)
  local srv = assert(http.listen(opts))
  finally(function() srv:close() end)
  return srv
end

describe("orch.core.http", function()
  it("hands a GET and a POST to Lua and sends its answer", function()
    local srv = listen()
    local server = loop.spawn(function()
      local got = {}
      for i = 1, 2 do
        local req = assert(srv:accept())
        got[i] = seen(req)
        assert.is_true(req:respond(201, "echo:" .. req.body, { ["X-Reply"] = "yes", ["X-N"] = "7" }))
      end
      return got
    end)
    local get = curl(srv, "/hooks/a%20b?x=1&y=%20", "-H", "X-Custom-Thing: Mixed Case")
    local post = curl(srv, "/post", "-H", "Content-Type: application/json", "--data-binary", '{"a":1}')
    local ok, got = server:wait()
    assert.is_true(ok, got)

    assert.equals("GET", got[1].method)
    assert.equals("/hooks/a%20b", got[1].path)
    assert.equals("x=1&y=%20", got[1].query)
    assert.equals("Mixed Case", got[1].headers["x-custom-thing"])
    assert.equals("127.0.0.1:" .. srv.port, got[1].headers.host)
    assert.is_nil(got[1].headers["X-Custom-Thing"])
    assert.equals("", got[1].body)
    assert.matches("^127%.0%.0%.1:%d+$", got[1].remote)
    assert.equals(201, get.status)
    assert.equals("echo:", get.body)
    assert.equals("yes", get.headers["x-reply"])
    assert.equals("7", get.headers["x-n"])

    assert.equals("POST", got[2].method)
    assert.equals("/post", got[2].path)
    assert.is_nil(got[2].query)
    assert.equals('{"a":1}', got[2].body)
    assert.equals("application/json", got[2].headers["content-type"])
    assert.equals('echo:{"a":1}', post.body)
  end)

  it("accepts at top level by running the loop", function()
    local srv = listen()
    local client = curl_task(srv, "/top")
    local req = assert(srv:accept())
    assert.equals("/top", req.path)
    req:respond(200, "ok")
    local _, res = client:wait()
    assert.equals(200, res.status)
    assert.equals("ok", res.body)
  end)

  it("answers 413 to a body over max_body, which Lua never sees", function()
    local srv = listen({ max_body = 100 })
    local server = loop.spawn(function()
      local req = assert(srv:accept())
      req:respond(200, "got " .. #req.body)
      return req.path
    end)
    local big = curl(srv, "/big", "--data-binary", string.rep("x", 101))
    assert.equals(413, big.status)
    -- No Content-Length: the limit is checked as the chunks come.
    local chunked = curl(srv, "/chunked", "-H", "Transfer-Encoding: chunked",
                         "--data-binary", string.rep("y", 5000))
    assert.equals(413, chunked.status)
    assert.equals(0, srv:pending())
    local fits = curl(srv, "/fits", "--data-binary", string.rep("z", 100))
    assert.equals(200, fits.status)
    assert.equals("got 100", fits.body)
    assert.same({ true, "/fits" }, { server:wait() })
  end)

  it("queues requests that arrive while nobody accepts, in arrival order", function()
    local srv = listen()
    local clients = {}
    for i = 1, 8 do
      clients[i] = curl_task(srv, "/" .. i, "-d", "n=" .. i)
      support.eventually(function() return srv:pending() == i end, i .. " requests queued")
    end
    for i = 1, 8 do
      local req = assert(srv:accept())
      assert.equals("/" .. i, req.path)
      req:respond(200, "answer " .. req.body)
    end
    assert.equals(0, srv:pending())
    for i = 1, 8 do
      local ok, res = clients[i]:wait()
      assert.is_true(ok, res)
      assert.equals("answer n=" .. i, res.body)
    end
  end)

  it("answers 500 for a request dropped without a response", function()
    local srv = listen()
    local server = loop.spawn(function()
      local function drop() local req = srv:accept() end
      drop()
      collectgarbage()
      collectgarbage()
      do
        local req <close> = assert(srv:accept())
        assert.equals("/closed", req.path)
      end
    end)
    assert.equals(500, curl(srv, "/dropped").status)
    assert.equals(500, curl(srv, "/closed").status)
    assert.is_true((server:wait()))
  end)

  it("raises on a bad status or header, and when a request is answered twice", function()
    local srv = listen()
    local client = curl_task(srv, "/twice")
    local req = assert(srv:accept())
    assert.has_error(function() req:respond(200, "", { ["X-N"] = 7 }) end)
    assert.has_error(function() req:respond(200, "", { ["X-Bad"] = "a\r\nb" }) end)
    assert.has_error(function() req:respond(42) end)
    assert.is_true(req:respond(204))
    assert.has_error(function() req:respond(200) end, "request already answered")
    local _, res = client:wait()
    assert.equals(204, res.status)
  end)

  it("gives a second waiter nil, 'busy'", function()
    local srv = listen()
    local waiter = loop.spawn(function() return srv:accept() end)
    support.eventually(function() return waiter:status() == "waiting" end, "waiting")
    local req, err = srv:accept()
    assert.is_nil(req)
    assert.equals("busy", err)
    srv:close()
    assert.same({ true, nil, "closed", "CLOSED" }, { waiter:wait() })
  end)

  it("close ends a waiting accept with nil, 'closed', answers 503 and frees the port", function()
    local srv = assert(http.listen())
    local port = srv.port
    local waiter = loop.spawn(function() return srv:accept() end)
    support.eventually(function() return waiter:status() == "waiting" end, "waiting")
    srv:close()
    local ok, req, err = waiter:wait()
    assert.is_true(ok)
    assert.is_nil(req)
    assert.equals("closed", err)
    assert.same({ nil, "closed", "CLOSED" }, { srv:accept() })
    srv:close()  -- idempotent

    -- Requests owed an answer when the server closes get a 503.
    srv = listen({ port = port })
    local queued = curl_task(srv, "/queued")
    local held = curl_task(srv, "/held")
    support.eventually(function() return srv:pending() == 2 end, "2 requests queued")
    local first = assert(srv:accept())
    srv:close()
    assert.same({ nil, "closed", "CLOSED" }, { first:respond(200, "too late") })
    assert.equals(503, select(2, queued:wait()).status)
    assert.equals(503, select(2, held:wait()).status)

    local refused = proc.run({ "curl", "-sS", "http://127.0.0.1:" .. port .. "/" })
    assert.equals(7, refused.code)  -- couldn't connect
    listen({ port = port }):close()
  end)

  it("drops a client that stalls past timeout; max_connections holds the next back", function()
    local srv = listen({ timeout = 1, max_connections = 1 })
    local port = srv.port
    local function sockets(state)  -- the server's side only: sport is ours
      return proc.check({ "ss", "-tnH", "state", state, "sport = :" .. port }).stdout
    end
    local function backlog()  -- Recv-Q of a listener: connections not yet accepted
      return tonumber(sockets("listening"):match("^%s*(%d+)"))
    end
    local stall = loop.spawn(function()
      return proc.run({ "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" .. port
        .. '; printf "GET / HTTP/1.1\\r\\n" >&3; cat <&3; echo closed' }, { timeout = 10 })
    end)
    support.eventually(function()
      return backlog() == 0 and select(2, sockets("established"):gsub("\n", "")) == 1
    end, "the stalled client accepted")
    local server = loop.spawn(function() assert(srv:accept()):respond(200, "served") end)
    local client = curl_task(srv, "/next")
    support.eventually(function() return backlog() == 1 end, "the next client in the backlog")
    local _, res = client:wait()
    assert.equals("served", res.body)
    local _, st = stall:wait()
    assert.is_false(st.timed_out)
    assert.equals("closed\n", st.stdout)  -- the server hung up on it
    assert.is_true((server:wait()))
  end)

  it("listens on 127.0.0.1 only, unless told otherwise", function()
    local srv = listen()
    assert.matches("^127%.0%.0%.1:%d+$", srv:address())
    assert.equals("127.0.0.1:" .. srv.port, srv:address())
    assert.equals(srv.port, tonumber(srv:address():match(":(%d+)$")))
    local ss = proc.check({ "ss", "-ltnH", "sport = :" .. srv.port }).stdout
    assert.matches("127.0.0.1:" .. srv.port, ss, 1, true)
    assert.not_matches("0.0.0.0:" .. srv.port, ss, 1, true)
    assert.not_matches("*:" .. srv.port, ss, 1, true)
  end)

  it("fails with EADDRINUSE on a port that is taken", function()
    local srv = listen()
    local again, err, code = http.listen({ port = srv.port })
    assert.is_nil(again)
    assert.equals("127.0.0.1:" .. srv.port .. ": Address already in use", err)
    assert.equals("EADDRINUSE", code)
  end)

  it("raises on an unknown option or a host that is not an address", function()
    assert.has_error(function() http.listen({ prot = 80 }) end, "http.listen: unknown option 'prot'")
    assert.has_error(function() http.listen({ host = "localhost" }) end,
                     "host must be a numeric IP address, got 'localhost'")
    assert.has_error(function() http.listen({ port = 70000 }) end)
  end)

  it("computes HMAC-SHA256 as openssl does", function()
    -- RFC 4231, test case 2
    assert.equals("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                  digest.hmac_sha256("Jefe", "what do ya want for nothing?"))
    local cases = {
      { "Jefe", "what do ya want for nothing?" },
      { "secret", "" },
      { string.rep("k", 131), "a key longer than the block size\n" },
      { "webhook", '{"action":"opened","number":1}' },
    }
    for _, c in ipairs(cases) do
      local r = proc.check({ "openssl", "dgst", "-sha256", "-hmac", c[1] }, { stdin = c[2] })
      assert.equals(r.stdout:match("(%x+)%s*$"), digest.hmac_sha256(c[1], c[2]))
    end
  end)

  it("compares strings with equal", function()
    assert.is_true(digest.equal("sha256=abc", "sha256=abc"))
    assert.is_true(digest.equal("", ""))
    assert.is_false(digest.equal("sha256=abc", "sha256=abd"))
    assert.is_false(digest.equal("sha256=abc", "sha256=ab"))
    assert.is_false(digest.equal("a\0b", "a\0c"))
  end)

  it("checks a GitHub-style X-Hub-Signature-256 on a real request", function()
    local srv = listen()
    local body = '{"ref":"refs/heads/main"}'
    local sig = "sha256=" .. digest.hmac_sha256("s3cret", body)
    local good = curl_task(srv, "/hook", "-H", "X-Hub-Signature-256: " .. sig, "--data-binary", body)
    local bad = curl_task(srv, "/hook", "-H", "X-Hub-Signature-256: sha256=00", "--data-binary", body)
    for _ = 1, 2 do
      local req = assert(srv:accept())
      local want = "sha256=" .. digest.hmac_sha256("s3cret", req.body)
      if digest.equal(want, req.headers["x-hub-signature-256"] or "") then
        req:respond(202, "accepted")
      else
        req:respond(401, "bad signature")
      end
    end
    assert.equals(202, select(2, good:wait()).status)
    assert.equals(401, select(2, bad:wait()).status)
  end)
end)
