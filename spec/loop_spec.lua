local loop = require("orch.core.loop")
local task = require("orch.task")
local support = require("spec.helpers.support")

describe("orch.core.loop scheduler", function()
  it("runs 1,000 tasks that sleep concurrently", function()
    local done = 0
    local tasks = {}
    for i = 1, 1000 do
      tasks[i] = loop.spawn(function(n)
        loop.sleep(0.05)
        done = done + 1
        return n * 2
      end, i)
    end
    for i, t in ipairs(tasks) do
      local ok, v = t:wait()
      assert.is_true(ok)
      assert.equals(i * 2, v)
    end
    assert.equals(1000, done)
  end)

  it("isolates an error in one task from the others", function()
    local t1 = loop.spawn(function() loop.sleep(0.01); error("boom") end)
    local t2 = loop.spawn(function() loop.sleep(0.02); return "fine" end)
    local ok, err = t1:wait()
    assert.is_false(ok)
    assert.matches("boom", err, 1, true)
    assert.matches("stack traceback", err, 1, true)
    assert.same({ true, "fine" }, { t2:wait() })
    assert.equals("failed", t1:status())
    assert.equals("done", t2:status())
  end)

  it("reports a failed task nobody waits for on stderr, with its traceback", function()
    local res = support.orch("-e", [[
      local loop = require("orch.core.loop")
      loop.spawn(function() error("lost in a task") end)
      loop.spawn(function() loop.sleep(0.01); print("other task finished") end)
    ]])
    assert.equals(0, res.code)
    assert.matches("orch: task failed: %(command line%):2: lost in a task", res.stderr)
    assert.matches("stack traceback", res.stderr, 1, true)
    assert.equals("other task finished\n", res.stdout)
  end)

  it("waits at top level by running the loop, and in tasks by yielding", function()
    local order = {}
    local t = loop.spawn(function()
      order[#order + 1] = "task start"
      loop.sleep(0.02)
      order[#order + 1] = "task end"
    end)
    order[#order + 1] = "spawned"
    loop.sleep(0.01)          -- top level: runs the loop, so the task starts
    order[#order + 1] = "top slept"
    t:wait()
    assert.same({ "spawned", "task start", "top slept", "task end" }, order)
  end)

  it("returns several results and passes arguments", function()
    local t = loop.spawn(function(a, b) return a + b, a * b, nil end, 3, 4)
    assert.same({ true, 7, 12 }, { t:wait() })
    assert.same({ true, 7, 12 }, { t:wait() })  -- a second join sees the same
  end)

  it("lets a bare coroutine.yield in a task give way to the others", function()
    local log = {}
    local a = loop.spawn(function() log[#log + 1] = "a1"; coroutine.yield(); log[#log + 1] = "a2" end)
    local b = loop.spawn(function() log[#log + 1] = "b1" end)
    a:wait(); b:wait()
    assert.same({ "a1", "b1", "a2" }, log)
  end)

  it("detects a deadlock at top level instead of hanging", function()
    local c = loop.cond()
    assert.has_error(function() c:wait() end,
      "deadlock: waiting for something that nothing left running can do")
  end)

  it("refuses to wait in a coroutine it did not start, inside a task", function()
    local t = loop.spawn(function()
      local co = coroutine.wrap(function() loop.sleep(0.01) end)
      co()
    end)
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.matches("cannot wait in a coroutine that orch did not start", err, 1, true)
  end)

  it("signals conditions in order", function()
    local c = loop.cond()
    local log = {}
    local ts = {}
    for i = 1, 3 do ts[i] = loop.spawn(function() c:wait(); log[#log + 1] = i end) end
    loop.sleep(0.01)
    assert.is_true(c:signal())
    loop.sleep(0.01)
    assert.same({ 1 }, log)
    c:broadcast()
    for _, t in ipairs(ts) do t:wait() end
    assert.same({ 1, 2, 3 }, log)
    assert.is_false(c:signal())
  end)

  it("knows the current task", function()
    assert.is_nil(loop.current())
    local t
    t = loop.spawn(function() return loop.current() == t end)
    assert.same({ true, true }, { t:wait() })
  end)
end)

describe("orch.task", function()
  it("bounds concurrency with a semaphore", function()
    local running, peak = 0, 0
    local res = task.map({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 3, function(i)
      running = running + 1
      peak = math.max(peak, running)
      task.sleep(0.01)
      running = running - 1
      return i
    end)
    assert.equals(3, peak)
    for i = 1, 10 do assert.equals(i, res[i].value) end
  end)

  it("collects each item's error with its traceback, and finishes the rest", function()
    local res = task.map({ 1, 2, 3 }, 2, function(i)
      if i == 2 then error("item two failed") end
      return i
    end)
    assert.is_true(res[1].ok)
    assert.is_false(res[2].ok)
    assert.matches("item two failed", res[2].err, 1, true)
    assert.matches("stack traceback", res[2].err, 1, true)
    assert.equals(3, res[3].value)
  end)

  it("starts items in order, each with the caller's context and environment", function()
    local started, seen = {}, {}
    task.set_context("caller")
    task.set_env({ STAGE = "s" })
    finally(function() task.set_context(nil); task.set_env(nil) end)
    task.map({ 1, 2, 3, 4, 5 }, 2, function(i)
      started[#started + 1] = i
      seen[i] = tostring(task.context()) .. "/" .. task.env().STAGE
      task.set_context("item " .. i)   -- not what the next item sees
      task.set_env({ STAGE = "changed" })
      task.sleep(0.001 * (6 - i))
    end)
    assert.same({ 1, 2, 3, 4, 5 }, started)
    for i = 1, 5 do assert.equals("caller/s", seen[i]) end
    assert.has_error(function() task.map({ 1 }, 0, print) end, "task.map: limit must be a positive integer, got 0")
  end)

  it("releases a semaphore slot when the holder raises", function()
    local sem = task.semaphore(1)
    assert.has_error(function() sem:with(error, "inside") end, "inside")
    local t = task.spawn(function() return sem:with(function() return "got it" end) end)
    assert.same({ true, "got it" }, { t:wait() })
  end)

  it("rejects a semaphore of no size", function()
    assert.has_error(function() task.semaphore(0) end,
      "semaphore size must be a positive integer, got 0")
  end)
end)
