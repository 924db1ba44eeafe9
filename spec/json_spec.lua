local json = require("orch.json")

describe("orch.json", function()
  it("encodes objects with sorted keys, so a file's content is the same every run", function()
    assert.equals('{"a":[3,2,{"y":"x\\"q","z":1}],"b":1,"c":{},"d":null}',
      json.encode({ b = 1, a = { 3, 2, { z = 1, y = 'x"q' } }, c = {}, d = json.null }))
  end)

  it("pretty-prints with an indent", function()
    assert.equals('{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "c": true\n  }\n}',
      json.encode({ a = { 1, 2 }, b = { c = true } }, { indent = "  " }))
  end)

  it("round-trips through the decoder", function()
    local v = { name = "app", ports = { 80, 443 }, tls = { enabled = true } }
    assert.same(v, json.decode(json.encode(v)))
  end)

  it("refuses tables it cannot represent", function()
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "json.encode: a table contains itself")
    assert.has_error(function() json.encode({ [true] = 1 }) end, "json.encode: keys must be strings or numbers, got boolean")
  end)
end)
