#!/usr/bin/python3
"""compare.py [--since ISO] [raw.csv] — the headline table: orch vs Ansible
vs one ssh per task, from bench/fanout/results/raw.csv.

For each N: the median run-1 and run-2 wall seconds of each tool (over the
reps recorded at or after --since, a UTC time like 2026-11-25T14:00:00Z),
how many times faster orch is than Ansible, orch's time as a fraction of
the ssh-per-task script's, and orch's peak RSS (the largest over its runs:
orch is one process, so max_rss_mib is its own). Then the targets:
orch >= 40x faster than Ansible and <= 0.25x the ssh script (from N = 10;
shown for information below that), and peak RSS < 60 MiB at N = 50.
"""
import csv
import os
import statistics
import sys

TOOLS = ("ansible", "baseline", "orch")


def main():
    args = sys.argv[1:]
    since = ""
    if args[:1] == ["--since"]:
        since, args = args[1], args[2:]
    path = args[0] if args else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "results", "raw.csv")
    runs = {}   # (n, tool, run) -> [wall]
    rss = {}    # n -> [max_rss_mib] of orch
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["when"] < since or r["tool"] not in TOOLS:
                continue
            n = int(r["n"])
            runs.setdefault((n, r["tool"], r["run"]), []).append(float(r["wall_s"]))
            if r["tool"] == "orch":
                rss.setdefault(n, []).append(float(r["max_rss_mib"]))

    def med(n, tool, run):
        xs = runs.get((n, tool, run))
        return statistics.median(xs) if xs else None

    def pair(a, b, fmt="{:.2f}"):
        return " / ".join("—" if x is None else fmt.format(x) for x in (a, b))

    def ratio(x, y):
        return None if x is None or y is None or y == 0 else x / y

    ns = sorted({k[0] for k in runs})
    if not ns:
        sys.exit(f"compare.py: no rows in {path}" + (f" since {since}" if since else ""))
    print("Wall seconds, median over reps, run 1 (cold, 7 changes per host) / run 2 (nothing to change).")
    print()
    print("| N | Ansible | ssh per task | orch | orch vs Ansible (x faster) | orch / ssh script | orch peak RSS MiB | reps (A/s/o) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    verdicts = []
    for n in ns:
        a = [med(n, "ansible", r) for r in "12"]
        b = [med(n, "baseline", r) for r in "12"]
        o = [med(n, "orch", r) for r in "12"]
        fast = [ratio(a[i], o[i]) for i in range(2)]
        frac = [ratio(o[i], b[i]) for i in range(2)]
        peak = max(rss[n]) if n in rss else None
        reps = "/".join(str(len(runs.get((n, t, "1"), []))) for t in TOOLS)
        print(f"| {n} | {pair(*a)} | {pair(*b)} | {pair(*o)} | {pair(*fast, fmt='{:.1f}x')} "
              f"| {pair(*frac, fmt='{:.2f}x')} | {'—' if peak is None else f'{peak:.1f}'} | {reps} |")
        if all(x is not None for x in fast):
            verdicts.append((n, f">= 40x faster than Ansible", min(fast) >= 40, f"{min(fast):.1f}x"))
        if all(x is not None for x in frac):
            verdicts.append((n, "<= 0.25x the ssh script", max(frac) <= 0.25, f"{max(frac):.2f}x"))
        if peak is not None and n == 50:
            verdicts.append((n, "peak RSS < 60 MiB", peak < 60, f"{peak:.1f} MiB"))
    if verdicts:
        print()
        print("Targets (worse of run 1 and run 2):")
        for n, what, ok, got in verdicts:
            # Ratios are targets from N = 10 up; at N = 1 start-up dominates.
            verdict = ("met" if ok else "MISSED") if n >= 10 else "(info: targets apply from N = 10)"
            print(f"  N={n:<4} {what:<28} {got:>10}  {verdict}")


if __name__ == "__main__":
    main()
