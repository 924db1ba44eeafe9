-- cli/commands.lua: every command's contract: usage, summary, description
-- and options (the one source of `orch help CMD` and docs/reference/cli/),
-- and which module runs it. A command's module loads only when it runs.
local args = require("orch.cli.args")
local info = require("orch.core.info")

local commands = {}

-- For every command that connects to hosts: ORCH_PERSIST is its default.
local persist_option = { long = "--persist", arg = "SECONDS", number = true, above = 0,
  help = "keep the SSH connections open for later runs, until unused this long (as OpenSSH's ControlPersist; see orch disconnect)" }

-- The order `orch help` lists them in.
local order = { "play", "run", "status", "repl", "disconnect", "history", "rollback", "config", "pipeline", "serve", "plan", "apply", "destroy", "state", "output", "import", "lua", "version", "help" }

commands.play = {
  usage = "orch play FILE [options]",
  summary = "Run a playbook: converge what it declares, on the local machine.",
  description = [[
The playbook is Lua. Its run is recorded in the state store, by default
.orch/state.db beside the playbook, which also serialises runs: a second
run waits for the first (up to --lock-timeout), then gives up.]],
  options = {
    { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "hosts: an Ansible-style YAML inventory or a .lua file (repeatable)" },
    { long = "--limit", arg = "SELECTOR", help = "only these hosts, within what each play selects (\"web*,!web03\")" },
    { short = "-e", long = "--extra-vars", arg = "KEY=VALUE", multi = true, help = "set vars.KEY for the playbook (repeatable)" },
    { long = "--check", help = "read and compare only: report what would change, change nothing" },
    { long = "--diff", help = "show what changes: a unified diff of file contents, attribute by attribute for the rest" },
    { long = "--force-handlers", help = "run notified handlers even on a host (or a run) that failed, as Ansible's option does" },
    { long = "--json", help = "print one JSON event per line instead of text" },
    { long = "--state", arg = "PATH", help = "state store file (default: .orch/state.db beside FILE)" },
    { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait for another run's lock (default 30)" },
    { long = "--forks", arg = "N", number = true, default = 50, help = "how many hosts a play works on at once (default 50)" },
    persist_option,
    { short = "-v", long = "--verbose", help = "show Lua tracebacks with errors" },
    { short = "-h", long = "--help", help = "show this help" },
  },
  run = function(opts, rest)
    if #rest ~= 1 then return args.usage_error("play", #rest == 0 and "missing FILE" or "too many arguments") end
    return require("orch.cli.play").run(rest[1], opts)
  end,
}

local store_options = {
  { long = "--state", arg = "PATH", help = "the state store (default: .orch/state.db here)" },
  { short = "-f", long = "--file", arg = "PLAYBOOK", help = "use the state store beside this playbook" },
  { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "where to find HOST (for files on SSH hosts)" },
}

local function with(options, more)
  local all = {}
  for _, o in ipairs(options) do all[#all + 1] = o end
  for _, o in ipairs(more) do all[#all + 1] = o end
  all[#all + 1] = { short = "-h", long = "--help", help = "show this help" }
  return all
end

commands.disconnect = {
  usage = "orch disconnect",
  summary = "Close the SSH connections that --persist kept open, now.",
  description = [[
With --persist SECONDS (or ORCH_PERSIST), a keeper process holds each
host's SSH session for later runs, reached through a socket in
~/.orch/persist/ that only you can open; it leaves by itself once no
orch has used it for SECONDS. This closes its connections and ends it
at once, as `ssh -O exit` does for a ControlMaster.]],
  options = { { short = "-h", long = "--help", help = "show this help" } },
  run = function(_, rest)
    if #rest > 0 then return args.usage_error("disconnect", ("unexpected argument '%s'"):format(rest[1])) end
    local ok, err = require("orch.host.persist").stop()
    if err then io.stderr:write("orch: ", err, "\n"); return 1 end
    io.stdout:write(ok and "closed the kept connections\n" or "no connections were kept\n")
    return 0
  end,
}

commands.history = {
  usage = "orch history [[HOST:]PATH] [options]",
  summary = "List the recorded versions of a managed file (or every managed file).",
  description = [[
Every change orch makes to a file is recorded: content, mode, owner and
group. Version 0 is what was there before orch first changed it.]],
  options = with(store_options, { { long = "--json", help = "print JSON" } }),
  run = function(opts, rest) return require("orch.cli.history").history(opts, rest) end,
}

commands.rollback = {
  usage = "orch rollback [HOST:]PATH [--to N] | orch rollback --run RUN_ID",
  summary = "Restore a managed file to an earlier version (or undo every file change of a run).",
  description = [[
Restores content, mode and ownership byte for byte, and records that as a
new version. Without --to, the version before the latest. With --run, every
file the run changed goes back to what it was before the run, newest first.]],
  options = with(store_options, {
    { long = "--to", arg = "N", number = true, min = 0, help = "the version to restore" },
    { long = "--run", arg = "RUN_ID", number = true, help = "undo the file changes of this run" },
    { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait for another run's lock" },
  }),
  run = function(opts, rest) return require("orch.cli.history").rollback(opts, rest) end,
}

commands.config = {
  usage = "orch config list | history NAME | rollback NAME [--to N]",
  summary = "Named configurations (config \"name\" { ... } blocks): list, history, roll back.",
  description = [[
A config block's files are versioned together: a run that changes any of
them makes a new version of the configuration. Rolling back restores every
file to the version it had then; files added to it since go back to what
was there before orch managed them.]],
  options = with(store_options, {
    { long = "--to", arg = "N", number = true, min = 0, help = "the version to roll back to (default: the one before the latest)" },
    { long = "--json", help = "print JSON (list, history)" },
    { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait for another run's lock" },
  }),
  run = function(opts, rest) return require("orch.cli.history").config(opts, rest) end,
}

local inventory_options = {
  { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "hosts: an Ansible-style YAML inventory or a .lua file (repeatable)" },
  { long = "--limit", arg = "SELECTOR", help = "only these hosts, within the selection" },
  { long = "--forks", arg = "N", number = true, default = 50, help = "how many hosts at once (default 50)" },
  { long = "--json", help = "one JSON object per host" },
  persist_option,
}

commands.run = {
  usage = "orch run SELECTOR -i INV [options] -- CMD...",
  summary = "Run a command on every selected host at once; output grouped per host.",
  description = [[
One word after -- is a shell command line ('uptime; df -h'); several are an
argv, quoted for you. Exit 1 when any host failed or was unreachable.]],
  options = with(inventory_options, {
    { long = "--timeout", arg = "SECONDS", number = true, above = 0, help = "kill the command (and what it started) after this long" },
  }),
  run = function(opts, rest) return require("orch.cli.run").run(opts, rest) end,
}

commands.status = {
  usage = "orch status -i INV [SELECTOR]",
  summary = "Reachability, OS, kernel, uptime and load of every host, in one table.",
  options = with(inventory_options, {}),
  run = function(opts, rest) return require("orch.cli.status").run(opts, rest) end,
}

commands.repl = {
  usage = "orch repl [-i INV]... [options]",
  summary = "Interactive Lua with the engine and the inventory in scope.",
  description = [[
Each line is Lua: an expression prints its value, incomplete input goes on
at ">> ". on("role:web"):exec("uptime") runs a command on every selected
host at once and prints a block per host; on(SEL):facts(), on(SEL):each(fn)
and help() are there too. Connections stay open for the session. Ctrl-C
stops the running command on every host and comes back to the prompt;
Ctrl-D exits. History is kept in $ORCH_HISTORY (default ~/.orch_history).
With stdin not a terminal, lines are read plainly and the exit code is 1
when any of them failed.]],
  options = {
    { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "hosts: an Ansible-style YAML inventory or a .lua file (repeatable)" },
    { long = "--forks", arg = "N", number = true, default = 50, help = "how many hosts a command runs on at once (default 50)" },
    persist_option,
    { short = "-h", long = "--help", help = "show this help" },
  },
  run = function(opts, rest)
    if #rest > 0 then return args.usage_error("repl", ("unexpected argument '%s'"):format(rest[1])) end
    return require("orch.cli.repl").run(opts)
  end,
}

commands.pipeline = {
  usage = "orch pipeline list | run NAME | history NAME | show RUN_ID -f FILE [options]",
  summary = "Pipelines: stages as a DAG, run in parallel, recorded with their logs and artifacts.",
  description = [[
run executes a pipeline now: independent stages in parallel (--jobs), a
failed stage skips what needs it, always/on_failure stages still run. Each
run has a workspace under .orch/runs/NAME/ID/ (ORCH_WORKSPACE) with the
stages' logs and artifacts, and is recorded in the state store beside FILE.
The same pipeline never runs twice at once: a second run waits for its
lock (--lock-timeout). list shows every pipeline of FILE with its last
run; history NAME its runs; show RUN_ID one run's stages, logs and
artifacts (these two read the store beside FILE, --state, or without
either ./.orch/state.db).]],
  options = {
    { short = "-f", long = "--file", arg = "FILE", help = "the file that defines the pipelines" },
    { long = "--jobs", arg = "N", number = true, default = 4, help = "stages at once (default 4)" },
    { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "hosts for stages with on = SELECTOR (repeatable)" },
    { long = "--limit", arg = "SELECTOR", help = "only these hosts, within what each stage selects" },
    { short = "-e", long = "--extra-vars", arg = "KEY=VALUE", multi = true, help = "set vars.KEY for the file (repeatable)" },
    { long = "--junit", arg = "FILE", help = "also write the run as JUnit XML (for CI systems)" },
    { long = "--json", help = "one JSON event per line" },
    { long = "--state", arg = "PATH", help = "the state store (default: .orch/state.db beside FILE)" },
    { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait while the same pipeline runs elsewhere" },
    { short = "-v", long = "--verbose", help = "show Lua tracebacks with errors" },
    { short = "-h", long = "--help", help = "show this help" },
  },
  run = function(opts, rest) return require("orch.cli.pipeline").main(opts, rest) end,
}

commands.serve = {
  usage = "orch serve -f FILE [options]",
  summary = "Run pipelines on their triggers: schedules, new commits, webhooks.",
  description = [[
One long-running process for the pipelines of FILE: schedule triggers fire
on their cron expressions (local time); commit triggers poll a git
repository's branch and run once per new head (ORCH_COMMIT); webhook
triggers answer POST /hooks/NAME when the X-Hub-Signature-256 header holds
the HMAC-SHA256 of the body with the pipeline's secret (401 otherwise),
once per body (409 for a replay, whatever X-GitHub-Delivery says). A
client that sends its request too slowly is cut off (--request-timeout),
and one address holds at most --max-per-client connections.
A pipeline never runs twice at once: a trigger while it runs is queued
once (on_busy = "queue") or dropped (on_busy = "skip"). SIGTERM or Ctrl-C
stops taking triggers, lets running stages finish for --grace seconds,
then stops them; a second signal stops them at once.]],
  options = {
    { short = "-f", long = "--file", arg = "FILE", help = "the file that defines the pipelines" },
    { long = "--listen", arg = "HOST:PORT", default = "127.0.0.1:8080", check = args.check_listen, help = "where webhooks are served (default 127.0.0.1:8080; port 0 picks one)" },
    { long = "--max-body", arg = "BYTES", number = true, max = 1 << 30, default = 1048576, help = "largest webhook body accepted (default 1 MiB)" },
    { long = "--request-timeout", arg = "SECONDS", number = true, integer = true, min = 1, default = 10, help = "a request must arrive whole (head and body) within this, however slowly it trickles (default 10)" },
    { long = "--max-per-client", arg = "N", number = true, max = 64, default = 8, help = "connections one client address may hold open (default 8, of 64)" },
    { long = "--grace", arg = "SECONDS", number = true, default = 30, help = "how long running stages may finish after SIGTERM (default 30)" },
    { long = "--jobs", arg = "N", number = true, default = 4, help = "stages at once, per pipeline run (default 4)" },
    { short = "-i", long = "--inventory", arg = "FILE", multi = true, help = "hosts for stages with on = SELECTOR (repeatable)" },
    { short = "-e", long = "--extra-vars", arg = "KEY=VALUE", multi = true, help = "set vars.KEY for the file (repeatable)" },
    { long = "--json", help = "one JSON event per line" },
    { long = "--state", arg = "PATH", help = "the state store (default: .orch/state.db beside FILE)" },
    { short = "-v", long = "--verbose", help = "show Lua tracebacks with errors" },
    { short = "-h", long = "--help", help = "show this help" },
  },
  run = function(opts, rest)
    if #rest > 0 then return args.usage_error("serve", "unexpected argument " .. rest[1]) end
    if not opts.file then return args.usage_error("serve", "give the file with -f FILE") end
    return require("orch.cli.serve").main(opts)
  end,
}

local infra_options = {
  { short = "-var", long = "--var", arg = "NAME=VALUE", multi = true, help = "set a variable (repeatable); also ORCH_VAR_NAME" },
  { short = "-var-file", long = "--var-file", arg = "FILE", multi = true, help = "variables from a YAML, JSON or .tfvars file (repeatable)" },
  { long = "--workspace", arg = "NAME", default = "default", help = "the state's workspace (default: default)" },
  { long = "--parallelism", arg = "N", number = true, default = 10, help = "resources read or changed at once (default 10)" },
  { long = "--state", arg = "PATH", help = "the state store (default: .orch/state.db beside FILE)" },
  { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait for the workspace's lock" },
  { long = "--json", help = "the plan (and events) as JSON" },
  { short = "-v", long = "--verbose", help = "show Lua tracebacks with errors" },
}

local function infra_command(name, usage, summary, description, more)
  commands[name] = {
    usage = usage, summary = summary, description = description, single_dash = true,
    options = with(infra_options, more or {}),
    run = function(opts, rest) return require("orch.cli.infra").main(name, opts, rest) end,
  }
end

infra_command("plan", "orch plan FILE [options]",
  "Infrastructure: show what apply would create, change, replace and destroy.", [[
Refreshes every resource in state through its provider's read, then
compares with the file's resource blocks: + create, ~ update in place,
-/+ replace (naming the attribute that forces it), - destroy, and what
changed outside orch. Ends with "Plan: N to add, N to change, N to destroy."]], {
  { short = "-out", long = "--out", arg = "FILE", help = "save the plan: orch apply FILE applies exactly it" },
  { long = "--detailed-exitcode", help = "exit 0 without changes, 2 with changes, 1 on error" },
  { long = "--destroy", help = "plan to destroy everything (with -out, for orch apply)" },
})
infra_command("apply", "orch apply FILE | orch apply SAVED.plan [options]",
  "Infrastructure: converge the file's resources (after showing the plan and asking).", [[
Shows the plan and asks for 'yes' on a terminal (--auto-approve otherwise),
then creates and updates in dependency order and destroys in reverse, at
most --parallelism at once. Each result is in state the moment it is done:
a failure skips what depends on it, the rest goes on, and the next apply
converges. A saved plan (orch plan -out) applies exactly, or not at all
when the state changed since.]], {
  { long = "--auto-approve", help = "apply without asking" },
})
infra_command("destroy", "orch destroy FILE [options]",
  "Infrastructure: destroy every resource in the workspace's state, dependants first.", nil, {
  { long = "--auto-approve", help = "destroy without asking" },
})

local state_options = {
  { short = "-f", long = "--file", arg = "FILE", help = "use the state store beside this file" },
  { long = "--state", arg = "PATH", help = "the state store (default: .orch/state.db here)" },
  { long = "--workspace", arg = "NAME", default = "default", help = "the workspace (default: default)" },
  { long = "--lock-timeout", arg = "SECONDS", number = true, default = 30, help = "how long to wait for the lock" },
  { long = "--json", help = "print JSON" },
}

commands.state = {
  usage = "orch state list | show ADDR | rm ADDR | mv FROM TO | unlock LOCK_ID [-f FILE]",
  summary = "Infrastructure state: list, show, forget, rename resources; force a lock open.",
  options = with(state_options, {}),
  run = function(opts, rest) return require("orch.cli.infra").main("state", opts, rest) end,
}

commands.output = {
  usage = "orch output [NAME] [-f FILE] [--json] [--reveal]",
  summary = "Infrastructure outputs, as the last apply left them (sensitive ones hidden).",
  options = with(state_options, {
    { long = "--reveal", help = "with NAME: print a sensitive output's value (for scripts; it is shown in clear)" },
  }),
  run = function(opts, rest) return require("orch.cli.infra").main("output", opts, rest) end,
}

commands.import = {
  usage = "orch import ADDR ID -f FILE",
  summary = "Read an existing object into state, through its provider.",
  options = with(infra_options, { { short = "-f", long = "--file", arg = "FILE", help = "the file that declares ADDR" } }),
  run = function(opts, rest) return require("orch.cli.infra").main("import", opts, rest) end,
}

commands.lua = {
  usage = "orch lua FILE [ARGS...]",
  summary = "Run a Lua script with the engine loaded, as lua5.4 would (arg, ...).",
  description = "Tasks the script spawns are run to completion before orch exits.",
  stop_at_first = true,
  options = { { short = "-h", long = "--help", help = "show this help" } },
  run = function(opts, rest)
    if #rest == 0 then return args.usage_error("lua", "missing FILE") end
    return require("orch.cli.script").run_file(rest[1], table.move(rest, 2, #rest, 1, {}))
  end,
}

commands.version = {
  usage = "orch version",
  summary = "Print orch's version and the versions of what it embeds.",
  options = { { short = "-h", long = "--help", help = "show this help" } },
  run = function()
    io.stdout:write(("orch %s (%s)\n"):format(info.version, _VERSION))
    return 0
  end,
}

commands.help = {
  usage = "orch help [COMMAND]",
  summary = "Show help for orch or for one command.",
  options = { { short = "-h", long = "--help", help = "show this help" } },
  run = function(_, rest)
    local name = rest[1]
    if name == nil then io.stdout:write(require("orch.cli").overview()); return 0 end
    if not commands[name] then return args.usage_error(nil, ("unknown command '%s'"):format(name)) end
    io.stdout:write(args.help(commands[name]))
    return 0
  end,
}

return { commands = commands, order = order }
