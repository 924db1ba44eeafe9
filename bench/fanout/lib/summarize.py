#!/usr/bin/python3
"""summarize.py [raw.csv] — median table (markdown) of bench/fanout/results/raw.csv.

For each (N, tool): median over reps of run-1 and run-2 wall seconds, of
peak controller PSS and max single-process RSS (max over both runs), and of
whole-machine busy CPU seconds per run; plus the Ansible/baseline ratio.
"""
import csv
import os
import statistics
import sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "results", "raw.csv")
rows = list(csv.DictReader(open(path)))
groups = {}
for r in rows:
    if r["tool"] not in ("ansible", "baseline"):
        continue
    g = groups.setdefault((int(r["n"]), r["tool"]), {"1": [], "2": [], "pss": [], "rss": [], "cpu1": [], "cpu2": []})
    g[r["run"]].append(float(r["wall_s"]))
    g["cpu" + r["run"]].append(float(r["sys_busy_s"]))
    g["pss"].append(float(r["peak_pss_mib"]))
    g["rss"].append(float(r["max_rss_mib"]))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


print("| N | tool | reps | run 1 s | run 2 s | run 1 range | run 2 range | peak PSS MiB | max RSS MiB | busy CPU s (run 1 / 2) |")
print("|---:|---|---:|---:|---:|---|---|---:|---:|---|")
for (n, tool) in sorted(groups):
    g = groups[(n, tool)]
    print(f"| {n} | {tool} | {len(g['1'])} | {med(g['1']):.2f} | {med(g['2']):.2f} "
          f"| {min(g['1']):.2f}–{max(g['1']):.2f} | {min(g['2']):.2f}–{max(g['2']):.2f} "
          f"| {max(g['pss']):.0f} | {max(g['rss']):.0f} | {med(g['cpu1']):.1f} / {med(g['cpu2']):.1f} |")
print()
print("| N | Ansible ÷ baseline, run 1 | run 2 | Ansible s per host-task (run 2) | baseline s per host-task (run 2) |")
print("|---:|---:|---:|---:|---:|")
for n in sorted({k[0] for k in groups}):
    a, b = groups.get((n, "ansible")), groups.get((n, "baseline"))
    if not a or not b:
        continue
    print(f"| {n} | {med(a['1']) / med(b['1']):.1f}× | {med(a['2']) / med(b['2']):.1f}× "
          f"| {med(a['2']) / (12 * n) * 1000:.0f} ms | {med(b['2']) / (12 * n) * 1000:.0f} ms |")
