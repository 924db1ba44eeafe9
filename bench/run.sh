#!/bin/sh
# run.sh: orch's foundation figures, each as a ratio against a peer measured
# in the same run (these machines are noisy): start-up vs lua5.4, 2,000
# processes vs xargs -P 50, the memory of 10,000 sleeping coroutines, and
# 1,000 file resources (files.sh), a 200-stage pipeline vs make -j8
# (pipeline.sh), orch plan over 1,000 unchanged files (plan.sh), and 20 lab
# hosts vs a serial shell script (lab_hosts.sh).
set -eu
cd "$(dirname "$0")/.."
ORCH=${ORCH:-build/orch}
command -v hyperfine >/dev/null 2>&1 || { echo "bench: needs hyperfine: run make deps" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

median() {  # median of hyperfine result N in a JSON export
  "$ORCH" -e "local j = require('cjson').decode(io.open('$1'):read('a')); print(j.results[$2].median)"
}

hyperfine -N --warmup 20 --runs ${RUNS:-300} --export-json "$out/start.json" \
  "lua5.4 -e ''" "$ORCH -e ''" >/dev/null
lua=$(median "$out/start.json" 1); orch=$(median "$out/start.json" 2)

hyperfine --warmup 1 --runs ${PROC_RUNS:-10} --export-json "$out/procs.json" \
  "seq 2000 | xargs -P 50 -n 1 true" "$ORCH lua bench/procs.lua 2000 50" >/dev/null
xargs=$(median "$out/procs.json" 1); procs=$(median "$out/procs.json" 2)

set -- $("$ORCH" lua bench/sleepers.lua 10000)
rss=$1 base=$2

"$ORCH" -e "
local lua, orch, xargs, procs, rss, base = $lua, $orch, $xargs, $procs, $rss, $base
print(('start-up      orch -e \'\' %6.2f ms   lua5.4 -e \'\' %6.2f ms   ratio %.2fx  (target <= 3x)'):format(orch * 1e3, lua * 1e3, orch / lua))
print(('processes     2,000 x true, 50 at a time: orch %6.0f ms   xargs -P 50 %6.0f ms   ratio %.2fx  (target <= 1.5x)'):format(procs * 1e3, xargs * 1e3, procs / xargs))
print(('coroutines    10,000 sleeping: %.1f MB RSS (%.1f MB before spawning)  (target < 30 MB)'):format(rss, base))
"
bench/files.sh
bench/pipeline.sh
bench/plan.sh
# namespaces and bridges need root
if [ "$(id -u)" -eq 0 ]; then bench/lab_hosts.sh; else echo "lab hosts   skipped (needs root)"; fi
