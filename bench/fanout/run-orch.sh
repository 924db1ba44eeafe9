#!/usr/bin/env bash
# run-orch.sh N [REPS] [keep] — time `orch play bench/fanout/site.lua` on the
# 12-task workload against N testbed hosts, REPS times (default 1). Each rep:
#   close ssh masters (the other tools'), rm -rf /tmp/orch-bench, a fresh
#   state store,
#   run 1 (cold: orch opens its sessions, every host changes 7 things),
#   run 2 (a new orch process, so new sessions; nothing may change).
# Both runs are `orch play site.lua --forks N --json` with ORCH_INVENTORY
# naming the testbed's hosts.yaml (site.lua loads it with inventory(); an
# -i of the same file as well would define every host twice), and
# lib/orch_recap.py checks the recap event: every host ok+changed = 12 and
# failed = 0, 7 changes per host in run 1, 0 in run 2.
# With ORCH_PERSIST=SECONDS in the environment, orch keeps its SSH
# connections between runs (--persist; logged as tool orch-persist): each
# rep starts by closing them (`orch disconnect`), so run 1 connects cold
# and run 2 reuses them, as the ssh script's run 2 reuses its masters.
# `keep` leaves /tmp/orch-bench as it is (run it after run-ansible.sh: orch
# must then find nothing to change; logged as tool orch-xcheck).
# Appends to bench/fanout/results/raw.csv; logs in /tmp/orch-bench-logs/.
#
# orch runs with HOME=$TB/orch-home, whose .ssh/known_hosts is the
# testbed's, and without SSH_AUTH_SOCK: the key comes from the inventory's
# ansible_ssh_private_key_file. ORCH=path/to/orch picks another binary.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${1:-}
REPS=${2:-1}
KEEP=${3:-}
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $REPS =~ ^[0-9]+$ && $REPS -ge 1 && ($KEEP == "" || $KEEP == keep) ]] ||
    { echo "usage: run-orch.sh N [REPS] [keep]" >&2; exit 2; }
[[ -x $ORCH ]] || { echo "run-orch: $ORCH missing: cmake --build build -j2 (or set ORCH=)" >&2; exit 2; }

"$BENCH/testbed.sh" up "$N"
[[ -f $BENCH/workload/files/blob.bin ]] || "$BENCH/workload/gen-blob.sh"
mkdir -p "$LOGS" "$TB/orch-home/.ssh"
chmod 700 "$TB/orch-home/.ssh"
cp "$TB/known_hosts" "$TB/orch-home/.ssh/known_hosts"
: >"$TB/orch-home/.ssh/config"
STATE=$TB/orch-state.db
tool=orch${ORCH_PERSIST:+-persist}${KEEP:+-xcheck}
disconnect() { env HOME="$TB/orch-home" "$ORCH" disconnect >/dev/null 2>&1 || true; }
trap disconnect EXIT

for ((rep = 1; rep <= REPS; rep++)); do
    close_masters "$TB/cm"
    close_masters "$TB/ansible-cp"
    disconnect
    [[ $KEEP == keep ]] || rm -rf "$BENCH_ROOT"
    rm -f "$STATE" "$STATE-wal" "$STATE-shm"
    tag="orch-$N-$rep-$$"
    for run in 1 2; do
        log=$LOGS/$tool-n$N-rep$rep-run$run.log
        measure "$log" "$tag" env -u SSH_AUTH_SOCK HOME="$TB/orch-home" NO_COLOR=1 \
            ORCH_INVENTORY="$TB/hosts.yaml" \
            "$ORCH" play "$BENCH/site.lua" --forks "$N" --json --state "$STATE" ||
            { echo "run-orch: orch play failed; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
        check=$run
        [[ $KEEP == keep ]] && check=keep
        counts=$(/usr/bin/python3 "$BENCH/lib/orch_recap.py" "$log" "$N" "$check") || exit 1
        read -r CHANGED OKH TRIPS <<<"$counts"
        record "$tool" "$N" "$rep" "$run" "$CHANGED" "$OKH"
        [[ $TRIPS == - ]] || echo "         round trips per host (max): $TRIPS"
    done
done
