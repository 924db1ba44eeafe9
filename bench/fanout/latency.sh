#!/usr/bin/env bash
# latency.sh [-r REPS] N RTT_MS — the 12-task workload over a slow network:
# N testbed hosts behind a delaying TCP proxy (lib/delayproxy.py; this
# kernel has no netem) that adds RTT_MS of round trip, run by the one-ssh-
# per-task script (run-baseline.sh) and by orch (run-orch.sh), REPS each.
# orch runs twice: a new connection per process, and with --persist
# (ORCH_PERSIST=60: run 2 reuses run 1's connections, as the script's
# ControlPersist masters are). Prints, per run (1: cold, 7 changes per
# host; 2: nothing to change): the medians of each, orch's ratio to the script, and orch's round trips
# per host, from its own counter (the --json recap's round_trips, largest
# host) and as wall time / RTT. Issue 13's targets: orch <= 0.25x the
# script on both runs, <= 30 round trips per host on run 1 and <= 15 on
# run 2.
#
# Its own testbed (ORCH_TESTBED=/tmp/orch-lat-tb, ports 24001.. behind
# 24501..), work folder and results file (results/latency-raw.csv), so it
# never disturbs compare.sh's. Taken down at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

REPS=1
if [[ ${1:-} == -r ]]; then REPS=${2:-}; shift 2; fi
N=${1:-}
RTT=${2:-}
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $RTT =~ ^[0-9]+$ && $RTT -ge 1 && $REPS =~ ^[0-9]+$ && $REPS -ge 1 ]] ||
    { echo "usage: latency.sh [-r REPS] N RTT_MS" >&2; exit 2; }

export ORCH_TESTBED=/tmp/orch-lat-tb ORCH_BENCH_ROOT=/tmp/orch-lat-bench ORCH_BASE_PORT=24000
export ORCH_CLIENT_PORT_OFFSET=500 ORCH_BENCH_LOGS=/tmp/orch-lat-logs
export ORCH_BENCH_RAW=$here/results/latency-raw.csv
source "$here/lib/common.sh"

proxy_pid=
down() {
    [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null || true
    "$here/testbed.sh" down >/dev/null 2>&1 || true
}
trap down EXIT

"$here/testbed.sh" down >/dev/null 2>&1 || true
"$here/testbed.sh" up "$N" >/dev/null
mkdir -p "$LOGS"
specs=()
for ((i = 1; i <= N; i++)); do
    specs+=("$((ORCH_BASE_PORT + ORCH_CLIENT_PORT_OFFSET + i)):$((ORCH_BASE_PORT + i))")
done
/usr/bin/python3 "$here/lib/delayproxy.py" "$(awk "BEGIN { print $RTT / 2 }")" "${specs[@]}" \
    >"$LOGS/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do grep -q ready "$LOGS/proxy.log" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$LOGS/proxy.log" || { echo "latency: the proxy did not start; see $LOGS/proxy.log" >&2; exit 1; }

since=$(date -u +%FT%TZ)
"$here/run-baseline.sh" "$N" "$REPS"
"$here/run-orch.sh" "$N" "$REPS" | tee "$LOGS/orch.out"
ORCH_PERSIST=60 "$here/run-orch.sh" "$N" "$REPS" | tee "$LOGS/orch-persist.out"

# medians of this invocation's rows, and orch's counter (largest host, last rep)
/usr/bin/python3 - "$ORCH_BENCH_RAW" "$since" "$N" "$RTT" "$LOGS" <<'PY'
import csv, statistics, sys, re
raw, since, n, rtt, logs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
walls = {}
for row in csv.DictReader(open(raw)):
    if row["when"] >= since and int(row["n"]) == n:
        walls.setdefault((row["tool"], row["run"]), []).append(float(row["wall_s"]))
med = {k: statistics.median(v) for k, v in walls.items()}
print(f"\nN={n}, {rtt:g} ms round trip | ssh script | orch | orch / ssh | orch round trips per host: counter, wall/RTT")
for tool in ("orch", "orch-persist"):
    trips = [int(t) for t in re.findall(r"round trips per host \(max\): (\d+)", open(f"{logs}/{tool}.out").read())]
    for run, target, lim in (("1", "run 1 (cold)", 30), ("2", "run 2 (no change)", 15)):
        s, o = med.get(("baseline", run)), med.get((tool, run))
        t = trips[int(run) - 1::2][-1] if len(trips) >= int(run) else None
        label = f"{tool} {target}"
        if s is None or o is None:
            print(f"{label}: missing rows"); continue
        print(f"{label:31} | {s:6.2f} s | {o:6.2f} s | {o / s:5.2f}x (target <= 0.25x) | "
              f"{t if t is not None else '-'}, {o * 1000 / rtt:.0f} (target <= {lim})")
PY
