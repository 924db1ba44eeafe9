#!/bin/sh
# test.sh: build orch and run the specs twice: a normal build, then one
# with AddressSanitizer + UBSan and a collector that never rests. Ends with
# the totals of both on a line of their own: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0 failed=0 skipped=0 status=0

count() {  # adds the closing "N passed, N failed, N skipped" of $1
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [ -z "$line" ]; then
    echo "test.sh: $2 printed no totals (crashed?)" >&2
    failed=$((failed + 1)); status=1; return
  fi
  set -- $line
  passed=$((passed + $1)); failed=$((failed + $3)); skipped=$((skipped + $5))
}

run_ctest() {  # name, build dir, env...: the C tests, into the totals
  name=$1 dir=$2; shift 2
  echo "== $name: ctest"
  env "$@" ctest --test-dir "$dir" --output-on-failure 2>&1 | tee "$log/$name.ctest"
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log/$name.ctest" | tail -n 1)
  if [ -z "$line" ]; then
    echo "test.sh: $name ctest printed no totals" >&2; failed=$((failed + 1)); status=1; return; fi
  bad=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
  all=$(echo "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
  passed=$((passed + all - bad)); failed=$((failed + bad))
}

run_suite() {  # name, build dir, extra cmake flags, env...
  name=$1 dir=$2 flags=$3; shift 3
  echo "== $name: building in $dir"
  cmake -S . -B "$dir" $flags >"$log/$name.cmake" 2>&1 && cmake --build "$dir" -j"$jobs" >>"$log/$name.cmake" 2>&1 || {
    cat "$log/$name.cmake"; echo "test.sh: $name build failed" >&2; failed=$((failed + 1)); status=1; return; }
  echo "== $name: specs"
  env ORCH_BIN="$dir/orch" "$@" "$dir/orch" lua /usr/bin/busted ${SPECS:-} 2>&1 | tee "$log/$name.out"
  count "$log/$name.out" "$name"
  run_ctest "$name" "$dir" "$@"
}

scripts/deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 1; }
run_suite specs build "-DCMAKE_BUILD_TYPE=RelWithDebInfo"
if [ "${ORCH_SKIP_ASAN:-}" = "" ]; then
  # Reports go to files too, so that one from a process whose exit code no
  # spec looks at still fails the run. intercept_tls_get_addr=0: with it,
  # LeakSanitizer reads garbage bounds for the dynamic TLS of libraries our
  # dlopen'ed modules pull in (gnutls, p11-kit) and its tracer crashes at
  # exit now and then ("Tracer caught signal 11"), failing a passing spec.
  mkdir -p "$log/san"
  run_suite asan build-asan "-DORCH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0:log_path="$log/san/asan" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path="$log/san/ubsan" ORCH_GC_STRESS=1
  # regression fuzzing, briefly (make fuzz runs it longer): a crash, a
  # hang or an internal error is a failure
  echo "== asan: fuzz (${FUZZ_SECONDS:-45} s)"
  if ASAN_OPTIONS=abort_on_error=1:detect_leaks=0:intercept_tls_get_addr=0:log_path="$log/san/asan" \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path="$log/san/ubsan" \
     timeout $(( ${FUZZ_SECONDS:-45} * 3 + 30 )) build-asan/orch lua scripts/fuzz.lua "${FUZZ_SECONDS:-45}" "$log/fuzz"; then
    passed=$((passed + 1))
  else
    echo "test.sh: fuzzing found a crash, a hang or an internal error; the input:" >&2
    cat "$log/fuzz/current" "$log"/fuzz/findings/* 2>/dev/null >&2
    failed=$((failed + 1)); status=1
  fi
  for report in "$log"/san/*; do
    [ -e "$report" ] || continue
    echo "test.sh: a sanitizer report ($report):" >&2
    cat "$report" >&2
    failed=$((failed + 1)); status=1
  done
fi
[ "$failed" -eq 0 ] || status=1
echo
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
