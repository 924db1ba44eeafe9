-- cli/ui.lua: what a run shows: human lines (colour only on a TTY, never with
-- NO_COLOR) or one JSON object per line with --json.
local term = require("orch.core.term")
local json = require("cjson")
local errors = require("orch.errors")
local proc = require("orch.proc")
local secret = require("orch.secret")

local M = {}

local colors = { ok = "32", changed = "33", failed = "31", skipped = "36", unreachable = "35",
  bold = "1", dim = "2" }
-- a step or resource line: status, host, what, elapsed

local ui = {}
ui.__index = ui

--- opts: json, verbose, color (nil: decide from the terminal), out, err.
function M.new(opts)
  opts = opts or {}
  local color = opts.color
  if color == nil then
    local no_color = os.getenv("NO_COLOR")
    color = not opts.json and term.isatty("stdout") and (no_color == nil or no_color == "")
  end
  return setmetatable({
    json = opts.json, verbose = opts.verbose, diff = opts.diff, color = color,
    tty = not opts.json and opts.out == nil and term.isatty("stdout"),
    out = opts.out or io.stdout, err = opts.err or io.stderr,
  }, ui)
end

function ui:paint(style, text)
  if not self.color or not colors[style] then return text end
  return "\27[" .. colors[style] .. "m" .. text .. "\27[0m"
end

local function seconds(s) return ("%.2fs"):format(s or 0) end

local human = {}

function human.run_start(self, ev)
  return self:paint("bold", ("PLAYBOOK %s"):format(ev.playbook))
    .. self:paint("dim", ("  (run %d%s)"):format(ev.run_id, ev.check and ", check mode" or ""))
end

function human.step(self, ev)
  local line = ("  %s  %-8s %s  %s"):format(self:paint(ev.status, ("%-7s"):format(ev.status)),
    ev.host, ev.name, self:paint("dim", seconds(ev.elapsed)))
  if ev.error then
    local msg = errors.message(ev.error, self.verbose)
    line = line .. "\n" .. self:paint("failed", "    " .. msg:gsub("\n", "\n    "))
  end
  return line
end

local function value(v)
  if v == nil then return "(none)" end
  return tostring(v)
end

function human.resource(self, ev)
  local line = ("  %s  %-8s %s %s  %s"):format(self:paint(ev.status, ("%-7s"):format(ev.status)),
    ev.host, ev.type, ev.name, self:paint("dim", seconds(ev.elapsed)))
  if ev.error then
    line = line .. "\n" .. self:paint("failed", "    " .. errors.message(ev.error, self.verbose):gsub("\n", "\n    "))
  end
  if self.diff and ev.changes then
    for _, c in ipairs(ev.changes) do
      if not (c.attr == "content" and ev.diff) then
        line = line .. ("\n      %s: %s -> %s"):format(c.attr, value(c.from), value(c.to))
      end
    end
    if ev.diff and ev.diff ~= "" then
      local body = ev.diff:gsub("\n$", ""):gsub("[^\n]+", function(l)
        local style = l:match("^%+%+%+") and "bold" or l:match("^%-%-%-") and "bold"
          or l:match("^%+") and "ok" or l:match("^%-") and "failed" or l:match("^@@") and "skipped"
        return "      " .. (style and self:paint(style, l) or l)
      end)
      line = line .. "\n" .. body
    end
  end
  return line
end

function human.play(self, ev)
  return self:paint("bold", ("PLAY %s"):format(ev.name))
    .. self:paint("dim", ("  (%d host%s%s)"):format(ev.hosts, ev.hosts == 1 and "" or "s",
      ev.serial and (", batches of " .. ev.serial) or ""))
end

function human.host(self, ev)
  local line = ("  %s  %-8s"):format(self:paint(ev.status, ("%-7s"):format(ev.status == "unreachable"
    and "unreach" or ev.status)), ev.host)
  if ev.error then
    line = line .. "\n" .. self:paint(ev.status, "    " .. errors.message(ev.error, self.verbose):gsub("\n", "\n    "))
  end
  return line
end

function human.rollback(self, ev)
  return ("  %s  %-8s play %s"):format(self:paint("failed", ("%-7s"):format("rollbck")), ev.host, ev.name)
end

function human.handler(self, ev)
  return ("  %s  %-8s %s"):format(self:paint("bold", ("%-7s"):format("handler")), ev.host, ev.name)
end

function human.config(self, ev)
  return ("  %s  %-8s config %s is now version %d"):format(self:paint("bold", ("%-7s"):format("config")),
    ev.host, ev.name, ev.version)
end

function human.log(self, ev)
  return ("  %s  %s"):format(self:paint("dim", ("%-7s"):format("log")), ev.message)
end

function human.recap(self, ev)
  local lines = { self:paint("bold", "RECAP") }
  for _, host in ipairs(ev.order) do
    local s = ev.hosts[host]
    local function field(name)
      local text = ("%s=%d"):format(name, s[name])
      return s[name] > 0 and self:paint(name, text) or text
    end
    lines[#lines + 1] = ("  %-12s %s  %s  %s  %s  %s"):format(host, field("ok"), field("changed"),
      field("failed"), field("skipped"), field("unreachable"))
  end
  lines[#lines + 1] = ("  %s in %s; run %d recorded in %s%s"):format(
    self:paint(ev.status == "ok" and "ok" or "failed", ev.status), seconds(ev.elapsed), ev.run_id, ev.state,
    ev.check and " (check mode: nothing was changed)" or "")
  return table.concat(lines, "\n")
end

-- pipelines: a stage starts, prints, ends; the run's summary

function human.stage_start(self, ev)
  return self:paint("bold", "▶ " .. ev.name) .. (ev.hosts and self:paint("dim", "  on " .. ev.hosts) or "")
end

function human.output(self, ev)
  return self:paint("dim", ("[%s] "):format(ev.name)) .. ev.line
end

local STAGE_STYLE = { ok = "ok", skipped = "skipped", allowed_failure = "changed" }

function human.stage(self, ev)
  return ("%s %s%s%s"):format(self:paint(STAGE_STYLE[ev.status] or "failed", ("%-8s"):format(ev.status)), ev.name,
    ev.elapsed and (" " .. seconds(ev.elapsed)) or "", ev.reason and (": " .. ev.reason) or "")
end

function human.summary(self, ev)
  local lines = { self:paint("bold", ("PIPELINE %s  run %d"):format(ev.pipeline, ev.pipeline_run)) }
  local failed = {}
  for _, s in ipairs(ev.stages) do
    lines[#lines + 1] = ("  %-20s %-16s %8s  %d attempt%s"):format(s.name, s.status,
      s.elapsed and seconds(s.elapsed) or "-", s.attempts, s.attempts == 1 and "" or "s")
    if s.status == "failed" then failed[#failed + 1] = s.name end
  end
  lines[#lines + 1] = ("  %s in %s%s; logs in %s"):format(self:paint(ev.status == "ok" and "ok" or "failed", ev.status),
    seconds(ev.elapsed), #failed > 0 and (" (failed: " .. table.concat(failed, ", ") .. ")") or "", ev.workspace)
  return table.concat(lines, "\n")
end

-- orch serve: what it listens on, each trigger and what became of it

local function clock(t) return os.date("%H:%M:%S", math.floor(t or os.time())) end

function human.serving(self, ev)
  return ("%s serving %d pipeline%s of %s"):format(clock(ev.time), ev.pipelines, ev.pipelines == 1 and "" or "s", ev.file)
end

function human.listening(self, ev)
  return ("%s webhooks on http://%s/hooks/NAME"):format(clock(ev.time), ev.address)
end

function human.trigger(self, ev)
  return ("%s %s %s%s: %s"):format(clock(ev.time), self:paint("bold", ev.pipeline), ev.trigger,
    ev.detail and (" " .. ev.detail) or "", self:paint(ev.action == "refused" and "failed" or "dim", ev.action))
end

function human.scheduled(self, ev)
  return ("%s %s schedule %s: next at %s"):format(clock(ev.time), self:paint("bold", ev.pipeline), ev.cron,
    os.date("%Y-%m-%d %H:%M", ev.next))
end

function human.stopping(self, ev)
  return ("%s stopping (%s): no new triggers; running stages get %g s"):format(clock(ev.time), ev.reason, ev.grace)
end

function human.stopped(self, ev) return clock(ev.time) .. " stopped" end

--- Show one event: { event = "run_start" | "step" | "log" | "recap", ... }.
function ui:emit(ev)
  if self.json then
    self.out:write(json.encode(ev), "\n")
  else
    local format = human[ev.event]
    if format then
      if self.status then self.out:write("\r\27[K") end   -- the progress line goes below
      self.out:write(format(self, ev), "\n")
      if self.status then self.out:write(self.status) end
    end
  end
  self.out:flush()
end

--- A progress line kept at the bottom of a terminal ("3/10 stages done,
-- running: build"), redrawn below each event; nil removes it. Nothing
-- without a terminal or with --json.
function ui:progress(text)
  if not self.tty or (text == nil and self.status == nil) then return end
  if text then text = text:sub(1, (term.size("stdout") or 80) - 1) end
  self.out:write("\r\27[K", text and self:paint("dim", text) or "")
  self.out:flush()
  self.status = text and self:paint("dim", text)
end

--- Text indented by `by` (two spaces), one level per line, ending in a
-- newline: a host's output under its head line.
function M.indent(text, by)
  by = by or "  "
  return by .. text:gsub("\n$", ""):gsub("\n", "\n" .. by) .. "\n"
end

--- The head line of a host's block in fan-out output (orch run, the
-- REPL): "web01 | exit 0 | 0.12s", coloured by status.
function ui:host_head(name, status, what, elapsed)
  local style = status == "ok" and "ok" or (status == "unreachable" and "unreachable" or "failed")
  return ("%s | %s | %s\n"):format(self:paint("bold", name), self:paint(style, what), ("%.2fs"):format(elapsed))
end

--- A command's result on one host as a block: head line, then its error,
-- stdout and (dimmed) stderr, indented.
function ui:host_result(name, status, res, elapsed)
  if status == "unreachable" then
    self.out:write(self:host_head(name, status, "UNREACHABLE", elapsed), M.indent(tostring(res)))
  else
    self.out:write(self:host_head(name, status, proc.failure(res) or "exit 0", elapsed))
    if res.stdout ~= "" then self.out:write(M.indent(res.stdout)) end
    if res.stderr ~= "" then self.out:write(self:paint("dim", M.indent(res.stderr))) end
  end
  self.out:flush()
end

--- A ui that shows no events (loading a file only to read its
-- declarations, or a resource engine whose lines the caller shows its own
-- way); errors still go to `ui`'s (or stderr).
function M.quiet(ui)
  local q = M.new({ json = true })
  q.emit = function() end
  if ui then
    q.error = function(_, msg) ui:error(msg) end
    q.warn = function(_, msg) ui:warn(msg) end
  end
  return q
end

-- One line on stderr, and with --json an event of that kind too.
local function say(self, kind, prefix, msg)
  if self.json then
    self.out:write(json.encode({ event = kind, message = msg }), "\n")
    self.out:flush()
  end
  self.err:write(prefix, msg, "\n")
end

--- Something the user should know that does not stop the command.
function ui:warn(msg) say(self, "warning", "orch: warning: ", msg) end

--- An error that ends the command.
function ui:error(msg) say(self, "error", "orch: ", msg) end

--- A command's failure without a ui: "orch: msg" on stderr (secrets
-- scrubbed); returns the exit code, 1 unless given.
function M.fail(msg, code)
  io.stderr:write("orch: ", secret.scrub(msg), "\n")
  return code or 1
end

return M
