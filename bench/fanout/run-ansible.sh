#!/usr/bin/env bash
# run-ansible.sh N [REPS] — time ansible-playbook on the 12-task workload
# against N testbed hosts, REPS times (default 1).  Each rep:
#   close ssh masters, rm -rf /tmp/orch-bench,
#   run 1 (cold connections, everything changes),
#   run 2 (ssh masters from run 1 still warm, nothing may change).
# Appends to bench/fanout/results/raw.csv; full logs in /tmp/orch-bench-logs/.
# Fails (exit 1) if any host is unreachable/failed, or run 2 changed anything.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${1:-}
REPS=${2:-1}
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $REPS =~ ^[0-9]+$ && $REPS -ge 1 ]] ||
    { echo "usage: run-ansible.sh N [REPS]" >&2; exit 2; }
ensure_ansible || exit 2

"$BENCH/testbed.sh" up "$N"
[[ -f $BENCH/workload/files/blob.bin ]] || "$BENCH/workload/gen-blob.sh"
mkdir -p "$LOGS" "$TB/ansible-cp" "$TB/ansible-local"

export ANSIBLE_CONFIG=$BENCH/workload/ansible.cfg
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

# check_recap LOG RUN: sets CHANGED (sum over hosts) and OKH (hosts with
# unreachable=0 failed=0 ok=12); fails on a bad host, or RUN=2 with changes.
check_recap() {
    local log=$1 run=$2
    local recap
    recap=$(sed -n '/^PLAY RECAP/,$p' "$log" | grep -E '^h[0-9]+ +:' || true)
    CHANGED=$(awk '{for(i=1;i<=NF;i++) if($i ~ /^changed=/){split($i,a,"="); s+=a[2]}} END{print s+0}' <<<"$recap")
    OKH=$(grep -cE 'ok=12 .*unreachable=0 +failed=0' <<<"$recap" || true)
    if [[ $OKH -ne $N ]]; then
        echo "run-ansible: run $run: only $OKH/$N hosts ok=12 without failures; see $log" >&2
        return 1
    fi
    if [[ $run == 2 && $CHANGED -ne 0 ]]; then
        echo "run-ansible: run 2 changed $CHANGED things (must be 0); see $log" >&2
        return 1
    fi
}

for ((rep = 1; rep <= REPS; rep++)); do
    close_masters "$TB/ansible-cp"
    close_masters "$TB/cm"
    rm -rf "$BENCH_ROOT"
    tag="ansible-$N-$rep-$$"
    for run in 1 2; do
        log=$LOGS/ansible-n$N-rep$rep-run$run.log
        measure "$log" "$tag" ansible-playbook -f "$N" "$BENCH/workload/site.yml" ||
            { echo "run-ansible: ansible-playbook failed; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
        check_recap "$log" "$run"
        record ansible "$N" "$rep" "$run" "$CHANGED" "$OKH"
    done
done
close_masters "$TB/ansible-cp"
