#!/usr/bin/python3
"""orch_recap.py LOG N RUN [TASKS] — check an `orch play --json` run's recap.

Reads the last {"event":"recap",...} line in LOG (orch's --json stream; other
lines, such as measure.py's MEASURE line, are skipped) and prints one line:

    CHANGED OK_HOSTS ROUND_TRIPS

CHANGED is the sum of `changed` over hosts; OK_HOSTS counts hosts with
failed=0, unreachable=0 and ok+changed = TASKS (default 12, the workload's
task count: 8 resources and 4 steps); ROUND_TRIPS is the largest per-host
`round_trips` if the recap carries that field, else "-".

Exits 1 (with the reason on stderr) when: there is no recap; its status is
not "ok"; fewer than N hosts are in it or OK; run 1 did not change exactly 7
things per host (the work was not done, or not from scratch); run 2 (or
RUN=keep) changed anything. Round trips are reported, not checked here:
latency.sh compares them with issue 13's targets.
"""
import json
import sys


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: orch_recap.py LOG N RUN [TASKS]")
    log, n, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tasks = int(sys.argv[4]) if len(sys.argv) == 5 else 12
    recap = None
    with open(log, errors="replace") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "recap":
                recap = ev
    problems = []
    if recap is None:
        print("0 0 -")
        sys.exit(f"orch_recap: no recap event in {log}")
    hosts = recap.get("hosts") or {}
    changed = sum(int(h.get("changed", 0)) for h in hosts.values())
    ok_hosts = sum(
        1 for h in hosts.values()
        if int(h.get("failed", 0)) == 0 and int(h.get("unreachable", 0)) == 0
        and int(h.get("ok", 0)) + int(h.get("changed", 0)) == tasks)
    trips = [h["round_trips"] for h in hosts.values() if "round_trips" in h]
    max_trips = max(trips) if trips else None
    if recap.get("status") != "ok":
        problems.append(f"recap status is {recap.get('status')!r}")
    if len(hosts) != n or ok_hosts != n:
        bad = sorted(k for k, h in hosts.items()
                     if int(h.get("failed", 0)) or int(h.get("unreachable", 0))
                     or int(h.get("ok", 0)) + int(h.get("changed", 0)) != tasks)
        problems.append(f"{ok_hosts}/{n} hosts ran {tasks} tasks without failures "
                        f"({len(hosts)} in the recap; e.g. {bad[:3]}: "
                        f"{[hosts[b] for b in bad[:3]]})")
    if run == "1" and changed != 7 * n:
        problems.append(f"run 1 changed {changed} things, expected {7 * n} (7 per host)")
    if run in ("2", "keep") and changed != 0:
        per = {k: h["changed"] for k, h in hosts.items() if h.get("changed")}
        problems.append(f"run {run} changed {changed} things (must be 0): {dict(list(per.items())[:5])}")
    print(changed, ok_hosts, "-" if max_trips is None else max_trips)
    if problems:
        sys.exit("orch_recap: " + "; ".join(problems) + f"; see {log}")


if __name__ == "__main__":
    main()
