#!/usr/bin/env bash
# run-baseline.sh N [REPS] — the round-trip floor: the same 12 operations as
# workload/site.yml, each done as ONE plain `ssh` invocation (OpenSSH client,
# ControlMaster=auto, ControlPath per host, ControlPersist=60s, from the
# testbed's ssh_config).  Hosts run in parallel (one background job per
# host), tasks run in order within a host.  Each rep:
#   close ssh masters, rm -rf /tmp/orch-bench,
#   run 1 (cold connections, everything changes),
#   run 2 (masters from run 1 still warm, nothing may change).
# Every remote command ends by printing @@ok or @@changed, so run 2 is
# checked the same way as Ansible's.  The files it writes are byte-identical
# to Ansible's (same blob, same rendered app.conf), so a baseline run after an
# Ansible run also reports changed=0 (`run-baseline.sh N 1 keep` checks that).
# Appends to bench/fanout/results/raw.csv; logs in /tmp/orch-bench-logs/.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

BLOB=$BENCH/workload/files/blob.bin

# app.conf exactly as templates/app.conf.j2 renders it (keep in step).
render_conf() { # name port root
    local name=$1 port=$2 root=$3
    cat <<EOF
# app.conf for $name (orch bench workload; do not edit)
[server]
name = $name
listen = 127.0.0.1:$((port - 14000))
root = $root/app
workers = 4
log_level = info

[upstreams]
server1 = backend-1.bench.invalid:8080 weight=5
server2 = backend-2.bench.invalid:8080 weight=5
server3 = backend-3.bench.invalid:8081 weight=3
server4 = backend-4.bench.invalid:8081 weight=3
server5 = backend-5.bench.invalid:9090 weight=1
EOF
}

# Remote snippet: write stdin to $1 atomically with mode $2 if content or
# mode differ.
put_file() { # dest mode
    echo "f='$1'; t=\"\$f.tmp.\$\$\"; cat >\"\$t\" || exit 1;
if cmp -s \"\$t\" \"\$f\" && [ \"\$(stat -c %a \"\$f\")\" = '${2#0}' ]; then rm -f \"\$t\"; echo @@ok;
else chmod $2 \"\$t\" && mv -f \"\$t\" \"\$f\" && echo @@changed; fi"
}

# Remote snippet: ensure directory $1 with mode $2.
ensure_dir() { # path mode
    echo "d='$1'; if [ -d \"\$d\" ] && [ \"\$(stat -c %a \"\$d\")\" = '${2#0}' ]; then echo @@ok;
else mkdir -p \"\$d\" && chmod $2 \"\$d\" && echo @@changed; fi"
}

run_host() { # name port -> writes "name task status" lines to $out
    local h=$1 port=$2 r=$BENCH_ROOT/$1 out=$3
    local S=(ssh -F "$TB/ssh_config" "$h")
    local n=0
    t() { # t STDIN_FILE REMOTE_CMD  — one ssh round trip
        local in=$1 res
        n=$((n + 1))
        if res=$("${S[@]}" "$2" <"$in"); then
            case $res in
            *@@changed) echo "$h $n changed" ;;
            *@@ok) echo "$h $n ok" ;;
            *) echo "$h $n failed(no-status)" ;;
            esac
        else
            echo "$h $n failed(rc=$?)"
        fi >>"$out"
    }
    local conf
    conf=$(mktemp "$LOGS/conf.$h.XXXXXX")
    render_conf "$h" "$port" "$r" >"$conf"
    # 01 read facts / 02 uname (read-only)
    t /dev/null 'cat /etc/os-release; hostname; echo @@ok'
    t /dev/null 'uname -a; echo @@ok'
    # 03, 04 directories with modes
    t /dev/null "$(ensure_dir "$r/app" 0755)"
    t /dev/null "$(ensure_dir "$r/app/conf" 0750)"
    # 05 copy the 4 KiB blob over stdin
    t "$BLOB" "$(put_file "$r/app/blob.bin" 0644)"
    # 06 the rendered template over stdin
    t "$conf" "$(put_file "$r/app/conf/app.conf" 0640)"
    # 07 ensure the line (create file if missing)
    t /dev/null "f='$r/app/conf/limits.conf'; if grep -qxF 'max_conn = 512' \"\$f\" 2>/dev/null; then echo @@ok;
else touch \"\$f\" && chmod 0640 \"\$f\" && sed -i '/^max_conn[[:space:]]*=/d' \"\$f\" && echo 'max_conn = 512' >>\"\$f\" && echo @@changed; fi"
    # 08 symlink current -> app
    t /dev/null "if [ \"\$(readlink '$r/current')\" = '$r/app' ]; then echo @@ok; else ln -sfn '$r/app' '$r/current' && echo @@changed; fi"
    # 09 touch with creates:
    t /dev/null "if [ -e '$r/app/.initialized' ]; then echo @@ok; else touch '$r/app/.initialized' && echo @@changed; fi"
    # 10 sha256 of the blob
    t /dev/null "sha256sum '$r/app/blob.bin' && echo @@ok"
    # 11 absent lock
    t /dev/null "if [ -e '$r/app/tmp.lock' ] || [ -L '$r/app/tmp.lock' ]; then rm -f '$r/app/tmp.lock' && echo @@changed; else echo @@ok; fi"
    # 12 loadavg
    t /dev/null 'cat /proc/loadavg; echo @@ok'
    rm -f "$conf"
}

# The measured command: all hosts in parallel, wait for all.
if [[ ${1:-} == __all ]]; then
    out=$2
    count=$(cat "$TB/count")
    pids=()
    for ((i = 1; i <= count; i++)); do
        printf -v name 'h%03d' "$i"
        run_host "$name" $((${ORCH_BASE_PORT:-22000} + i)) "$out" &
        pids+=($!)
    done
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    exit "$rc"
fi

N=${1:-}
REPS=${2:-1}
KEEP=${3:-}
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $REPS =~ ^[0-9]+$ && $REPS -ge 1 ]] ||
    { echo "usage: run-baseline.sh N [REPS] [keep]" >&2; exit 2; }

"$BENCH/testbed.sh" up "$N"
[[ -f $BLOB ]] || "$BENCH/workload/gen-blob.sh"
mkdir -p "$LOGS"

for ((rep = 1; rep <= REPS; rep++)); do
    close_masters "$TB/cm"
    close_masters "$TB/ansible-cp"
    [[ $KEEP == keep ]] || rm -rf "$BENCH_ROOT"
    tag="baseline-$N-$rep-$$"
    for run in 1 2; do
        log=$LOGS/baseline-n$N-rep$rep-run$run.log
        st=$LOGS/baseline-n$N-rep$rep-run$run.status
        : >"$st"
        measure "$log" "$tag" "$0" __all "$st" ||
            { echo "run-baseline: a host job failed; see $log $st" >&2; exit 1; }
        tasks=$(wc -l <"$st")
        failed=$(grep -c failed "$st" || true)
        changed=$(grep -c ' changed$' "$st" || true)
        okh=$(awk '$3=="ok"||$3=="changed"{c[$1]++} END{for(h in c) if(c[h]==12) n++; print n+0}' "$st")
        if [[ $tasks -ne $((12 * N)) || $failed -ne 0 || $okh -ne $N ]]; then
            echo "run-baseline: run $run: $tasks task results, $failed failed, $okh/$N hosts complete; see $st" >&2
            exit 1
        fi
        if [[ ($run == 2 || $KEEP == keep) && $changed -ne 0 ]]; then
            echo "run-baseline: run $run changed $changed things (must be 0); see $st" >&2
            exit 1
        fi
        record "baseline${KEEP:+-xcheck}" "$N" "$rep" "$run" "$changed" "$okh"
    done
done
close_masters "$TB/cm"
