#!/bin/sh
# plan.sh: `orch plan` over 1,000 unchanged `file` resources of 1 KiB (a
# for_each), against `stat` + `sha256sum` over the same files in one shell
# pipeline: what a refresh must at least read. Medians, as a ratio.
. "$(dirname "$0")/common.sh"
mkdir "$work/o"
cat > "$work/infra.lua" <<LUA
local keys = {}
for i = 1, 1000 do keys[#keys + 1] = ("%04d"):format(i) end
resource "file" "f" { for_each = keys, path = "$work/o/f" .. each.key, content = each.key, mode = "0644" }
LUA
"$ORCH" apply "$work/infra.lua" --auto-approve --state "$work/state.db" >/dev/null

o="" s=""
r=1
while [ "$r" -le "$REPS" ]; do
  t=$(now); "$ORCH" plan "$work/infra.lua" --state "$work/state.db" --detailed-exitcode >/dev/null
  o="$o $(elapsed "$t")"
  t=$(now); find "$work/o" -type f -exec stat -c '%a %U %G %s' {} + >/dev/null; sha256sum "$work"/o/* >/dev/null
  s="$s $(elapsed "$t")"
  r=$((r + 1))
done
om=$(echo $o | tr ' ' '\n' | median); sm=$(echo $s | tr ' ' '\n' | median)
"$ORCH" -e "print(('plan          1,000 unchanged file resources: orch plan %5.0f ms   stat + sha256sum %5.0f ms   ratio %.2fx  (target <= 3x)'):format($om * 1e3, $sm * 1e3, $om / $sm))"
