#!/usr/bin/env bash
# compare.sh [-r REPS] [--orch-only] [--keep-up] [N...] — the headline
# figure: the 12-task workload with Ansible, with one ssh per task
# (run-baseline.sh) and with orch, for each N (default: 1 10 50), then the
# table (lib/compare.py) of this invocation's rows of results/raw.csv.
#
# Per N, in this order:
#   run-ansible.sh N REPS
#   run-orch.sh N 1 keep     orch on Ansible's files must change nothing
#                            (same bytes, modes, links); tool orch-xcheck
#   run-baseline.sh N REPS
#   run-orch.sh N REPS
# --orch-only runs just the last (e.g. `compare.sh --orch-only 200`).
# The testbed is taken down at the end unless --keep-up. Ansible is Debian's
# ansible-core, installed when missing (never when CI is set).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

REPS=1
ORCH_ONLY=
KEEP_UP=
NS=()
while (($#)); do
    case $1 in
    -r | --reps) REPS=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
    --orch-only) ORCH_ONLY=1; shift ;;
    --keep-up) KEEP_UP=1; shift ;;
    -h | --help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) NS+=("$1"); shift ;;
    esac
done
((${#NS[@]})) || NS=(1 10 50)
[[ $REPS =~ ^[0-9]+$ && $REPS -ge 1 ]] || { echo "compare: REPS must be a positive integer" >&2; exit 2; }
for n in "${NS[@]}"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || { echo "compare: N must be a positive integer, got '$n'" >&2; exit 2; }
done
[[ -x $ORCH ]] || { echo "compare: $ORCH missing: cmake --build build -j2 (or set ORCH=)" >&2; exit 2; }
[[ -n $ORCH_ONLY ]] || ensure_ansible || exit 2

since=$(date -u +%FT%TZ)
[[ -n $KEEP_UP ]] || trap '"$BENCH/testbed.sh" down >/dev/null || true' EXIT
for n in "${NS[@]}"; do
    echo "== N=$n"
    if [[ -z $ORCH_ONLY ]]; then
        "$BENCH/run-ansible.sh" "$n" "$REPS"
        "$BENCH/run-orch.sh" "$n" 1 keep
        "$BENCH/run-baseline.sh" "$n" "$REPS"
    fi
    "$BENCH/run-orch.sh" "$n" "$REPS"
done
echo
/usr/bin/python3 "$BENCH/lib/compare.py" --since "$since" "$RAW"
