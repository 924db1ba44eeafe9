-- suggest.lua: "did you mean" for typos: names a few edits away from
-- what was typed, closest first.
local M = {}

-- Optimal string alignment distance: Levenshtein plus adjacent swaps, so
-- "wbe" is one edit from "web".
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    local ai = a:byte(i)
    for j = 1, #b do
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1,
        d[i - 1][j - 1] + (ai == b:byte(j) and 0 or 1))
      if i > 1 and j > 1 and ai == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

--- Up to `max` (3) of `candidates` (a list of strings) close to `name`,
-- closest first, ties in the candidates' order. Close: a few edits away,
-- but not more than half the name, or starting with `name`.
function M.close_matches(name, candidates, max)
  local limit = math.max(2, #name // 3)
  local found = {}
  for i, c in ipairs(candidates) do
    local d = distance(name, c)
    if (d <= limit and d * 2 <= #name) or (#name > 0 and c:sub(1, #name) == name) then
      found[#found + 1] = { c = c, d = d, i = i }
    end
  end
  table.sort(found, function(x, y)
    if x.d ~= y.d then return x.d < y.d end
    return x.i < y.i
  end)
  local out = {}
  for i = 1, math.min(max or 3, #found) do out[i] = found[i].c end
  return out
end

--- " (did you mean 'x'?)" for the closest candidate, or "".
function M.did_you_mean(name, candidates)
  local best = M.close_matches(name, candidates, 1)[1]
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

return M
