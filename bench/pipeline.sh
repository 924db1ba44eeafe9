#!/bin/sh
# pipeline.sh: a DAG of 200 stages of `true` (10 layers, 20 wide; each stage
# needs every stage of the layer before), run by `orch pipeline run --jobs 8`
# and by GNU `make -j8` on the same DAG as a Makefile. Medians, as a ratio.
. "$(dirname "$0")/common.sh"

"$ORCH" -e "
local layers, width = 10, 20
local lua, mk = { 'pipeline \"dag\" {' }, { '.PHONY: all' }
local all = {}
for l = 1, layers do
  for w = 1, width do
    local name = ('s%02d_%02d'):format(l, w)
    local needs = {}
    if l > 1 then for v = 1, width do needs[#needs + 1] = ('s%02d_%02d'):format(l - 1, v) end end
    local quoted = {}
    for i, n in ipairs(needs) do quoted[i] = '\"' .. n .. '\"' end
    lua[#lua + 1] = ('  stage \"%s\" { needs = { %s }, sh = \"true\" },'):format(name, table.concat(quoted, ', '))
    mk[#mk + 1] = ('.PHONY: %s\n%s: %s\n\t@true'):format(name, name, table.concat(needs, ' '))
    if l == layers then all[#all + 1] = name end
  end
end
lua[#lua + 1] = '}'
table.insert(mk, 2, 'all: ' .. table.concat(all, ' '))
local f = io.open('$work/dag.lua', 'w'); f:write(table.concat(lua, '\n'), '\n'); f:close()
f = io.open('$work/Makefile', 'w'); f:write(table.concat(mk, '\n'), '\n'); f:close()
"

o="" m=""
r=1
while [ "$r" -le "$REPS" ]; do
  t=$(now); "$ORCH" pipeline run dag -f "$work/dag.lua" --jobs 8 --state "$work/state.db" >/dev/null
  o="$o $(elapsed "$t")"
  t=$(now); make -s -j8 -C "$work" >/dev/null
  m="$m $(elapsed "$t")"
  r=$((r + 1))
done
om=$(echo $o | tr ' ' '\n' | median); mm=$(echo $m | tr ' ' '\n' | median)
"$ORCH" -e "print(('pipeline      200 stages of true, 10 layers x 20, --jobs 8: orch %5.0f ms   make -j8 %5.0f ms   ratio %.2fx  (target <= 1.5x)'):format($om * 1e3, $mm * 1e3, $om / $mm))"
