# shellcheck shell=bash disable=SC2034
# Sourced by bench/fanout/run-*.sh.  Shared paths and helpers (the variables
# are used by the scripts that source this file).
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${ORCH_TESTBED:-/tmp/orch-testbed}
BENCH_ROOT=${ORCH_BENCH_ROOT:-/tmp/orch-bench}
LOGS=${ORCH_BENCH_LOGS:-/tmp/orch-bench-logs}
RAW=${ORCH_BENCH_RAW:-$BENCH/results/raw.csv}
# The orch binary under test (run-orch.sh); the repository's build by default.
ORCH=${ORCH:-$(cd "$BENCH/../.." && pwd)/build/orch}
CSV_HEADER="when,tool,n,rep,run,wall_s,tree_cpu_s,sys_busy_s,max_rss_mib,peak_pss_mib,peak_rss_mib,peak_procs,changed,ok_hosts"

# Ask every ssh ControlPersist master with a socket in DIR to exit, so the
# next run starts from cold connections.  Masters are reached only through
# their sockets; no process is signalled by name.
close_masters() {
    local dir=$1 s
    [[ -d $dir ]] || return 0
    for s in "$dir"/*; do
        [[ -S $s ]] || continue
        ssh -o ControlPath="$s" -O exit bench-master >/dev/null 2>&1 || rm -f "$s"
    done
}

# measure LOG TAG CMD...: run CMD under lib/measure.py, stdout+stderr to LOG;
# sets MEASURE (the key=value line) and returns the command's status.
measure() {
    local log=$1 tag=$2 rc=0
    shift 2
    /usr/bin/python3 "$BENCH/lib/measure.py" --tag "$tag" -- "$@" >"$log" 2>&1 || rc=$?
    MEASURE=$(grep '^MEASURE ' "$log" | tail -n 1)
    return "$rc"
}

# field NAME: value of NAME=... in $MEASURE
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$MEASURE"; }

record() { # tool n rep run changed ok_hosts
    mkdir -p "$(dirname "$RAW")"
    [[ -s $RAW ]] || echo "$CSV_HEADER" >"$RAW"
    echo "$(date -u +%FT%TZ),$1,$2,$3,$4,$(field wall_s),$(field tree_cpu_s),$(field sys_busy_s),$(field max_rss_mib),$(field peak_pss_mib),$(field peak_rss_mib),$(field peak_procs),$5,$6" >>"$RAW"
    printf '%-8s N=%-3s rep=%s run%s  wall=%6ss  peakPSS=%6sMiB  maxRSS=%5sMiB  busyCPU=%6ss  changed=%s ok_hosts=%s/%s\n' \
        "$1" "$2" "$3" "$4" "$(field wall_s)" "$(field peak_pss_mib)" "$(field max_rss_mib)" "$(field sys_busy_s)" "$5" "$6" "$2"
}

# Install Debian's ansible-core when ansible-playbook is missing, except in
# CI (CI set), where the benchmark must not change the machine.
ensure_ansible() {
    command -v ansible-playbook >/dev/null && return 0
    if [[ -n ${CI:-} ]]; then
        echo "bench: ansible-playbook missing, and CI is set: not installing ansible-core" >&2
        return 1
    fi
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "bench: installing ansible-core (Debian)" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ansible-core >/dev/null ||
        { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ansible-core >/dev/null; }
}
