#!/bin/sh
# files.sh: 1,000 `file` resources of 1 KiB. First run against a shell loop
# of `install -m 0644`; second (unchanged) run against find -exec stat +
# sha256sum over the same files. Medians of several runs, as ratios.
. "$(dirname "$0")/common.sh"
mkdir "$work/src"
i=1
while [ $i -le 1000 ]; do   # the same contents the playbook writes
  n=$(printf %04d $i)
  "$ORCH" -e "io.write(('$n'):rep(256))" > "$work/src/f$n"
  i=$((i + 1))
done


first_orch="" first_sh="" second_orch="" second_sh=""
r=1
while [ $r -le "$REPS" ]; do
  rm -rf "$work/o" "$work/s" "$work/state.db"*
  mkdir -p "$work/o" "$work/s"
  t=$(now); "$ORCH" play bench/files.lua -e dest="$work/o" --state "$work/state.db" >/dev/null
  first_orch="$first_orch $(elapsed "$t")"
  t=$(now); for f in "$work"/src/*; do install -m 0644 "$f" "$work/s/${f##*/}"; done
  first_sh="$first_sh $(elapsed "$t")"
  t=$(now); "$ORCH" play bench/files.lua -e dest="$work/o" --state "$work/state.db" >/dev/null
  second_orch="$second_orch $(elapsed "$t")"
  t=$(now); find "$work/o" -type f -exec stat -c '%a %U %G %s' {} + >/dev/null; sha256sum "$work"/o/* >/dev/null
  second_sh="$second_sh $(elapsed "$t")"
  r=$((r + 1))
done
cmp -s "$work/o/f0500" "$work/s/f0500" || { echo "files.sh: orch and install wrote different files" >&2; exit 1; }
fo=$(echo $first_orch | tr ' ' '\n' | median); fs=$(echo $first_sh | tr ' ' '\n' | median)
so=$(echo $second_orch | tr ' ' '\n' | median); ss=$(echo $second_sh | tr ' ' '\n' | median)
"$ORCH" -e "
print(('files, first run   1,000 x 1 KiB: orch %5.0f ms   sh loop of install -m 0644 %5.0f ms   ratio %.2fx  (target <= 3x)'):format($fo * 1e3, $fs * 1e3, $fo / $fs))
print(('files, second run  unchanged:     orch %5.0f ms   find -exec stat + sha256sum %5.0f ms   ratio %.2fx  (target <= 3x)'):format($so * 1e3, $ss * 1e3, $so / $ss))"
