-- textdiff.lua: line diffs of two texts, printed as `diff -u` prints them.
--
-- The algorithm is the one GNU diff uses (diffutils analyze.c + gnulib
-- diffseq.h), re-implemented: the common head and tail are cut off first
-- (all of the work for a big file with a few changes), lines that match
-- nothing on the other side are set aside, then Myers' O(ND) search for a
-- middle snake, divide and conquer in linear space, with a cost cap that
-- trades minimality for time on very different inputs; shift_boundaries
-- then slides each change to where a reader expects it. Following diff's
-- choices step by step means that where several shortest diffs exist we
-- print the one `diff -u` prints, which is what users compare us with.
local M = {}

-- Lines of s, each with its "\n" (the last may lack one): a missing final
-- newline makes that line differ, as it does for diff.
local function split_lines(s)
  local lines, n, pos, len = {}, 0, 1, #s
  while pos <= len do
    local nl = s:find("\n", pos, true) or len
    n = n + 1
    lines[n] = s:sub(pos, nl)
    pos = nl + 1
  end
  return lines, n
end

-- Finds the midpoint of the shortest edit script for x[xoff, xlim) and
-- y[yoff, ylim): returns xmid, ymid, lo_minimal, hi_minimal. fd and bd are
-- the forward and backward furthest-reaching x per diagonal.
local function diag(ctx, xoff, xlim, yoff, ylim, find_minimal)
  local xv, yv, fd, bd = ctx.xv, ctx.yv, ctx.fd, ctx.bd
  local dmin, dmax = xoff - ylim, xlim - yoff
  local fmid, bmid = xoff - yoff, xlim - ylim
  local fmin, fmax, bmin, bmax = fmid, fmid, bmid, bmid
  local odd = (fmid - bmid) % 2 == 1
  fd[fmid] = xoff
  bd[bmid] = xlim
  local c = 0
  while true do
    c = c + 1
    -- Extend the top-down search by an edit step in each diagonal.
    if fmin > dmin then fmin = fmin - 1; fd[fmin - 1] = -1 else fmin = fmin + 1 end
    if fmax < dmax then fmax = fmax + 1; fd[fmax + 1] = -1 else fmax = fmax - 1 end
    for d = fmax, fmin, -2 do
      local tlo, thi = fd[d - 1], fd[d + 1]
      local x = tlo >= thi and tlo + 1 or thi
      local y = x - d
      while x < xlim and y < ylim and xv[x] == yv[y] do x = x + 1; y = y + 1 end
      fd[d] = x
      if odd and bmin <= d and d <= bmax and bd[d] <= x then
        return x, y, true, true
      end
    end
    -- The same, bottom-up.
    if bmin > dmin then bmin = bmin - 1; bd[bmin - 1] = math.maxinteger else bmin = bmin + 1 end
    if bmax < dmax then bmax = bmax + 1; bd[bmax + 1] = math.maxinteger else bmax = bmax - 1 end
    for d = bmax, bmin, -2 do
      local tlo, thi = bd[d - 1], bd[d + 1]
      local x = tlo < thi and tlo or thi - 1
      local y = x - d
      while xoff < x and yoff < y and xv[x - 1] == yv[y - 1] do x = x - 1; y = y - 1 end
      bd[d] = x
      if not odd and fmin <= d and d <= fmax and x <= fd[d] then
        return x, y, true, true
      end
    end
    -- Far beyond the call of duty: settle for the best diagonal found so
    -- far. The script stays correct, just not minimal; it bounds the time
    -- at O(N * too_expensive) for files that share little.
    if not find_minimal and c >= ctx.too_expensive then
      local fxybest, fxbest = -1, 0
      for d = fmax, fmin, -2 do
        local x = math.min(fd[d], xlim)
        local y = x - d
        if ylim < y then x = ylim + d; y = ylim end
        if fxybest < x + y then fxybest = x + y; fxbest = x end
      end
      local bxybest, bxbest = math.maxinteger, 0
      for d = bmax, bmin, -2 do
        local x = math.max(xoff, bd[d])
        local y = x - d
        if y < yoff then x = yoff + d; y = yoff end
        if x + y < bxybest then bxybest = x + y; bxbest = x end
      end
      if (xlim + ylim) - bxybest < fxybest - (xoff + yoff) then
        return fxbest, fxybest - fxbest, true, false
      end
      return bxbest, bxybest - bxbest, false, true
    end
  end
end

-- Marks in ctx.cx / ctx.cy the lines of x[xoff, xlim) and y[yoff, ylim)
-- that are deleted / inserted (ctx.rx / ctx.ry map back to real lines).
local function compareseq(ctx, xoff, xlim, yoff, ylim, find_minimal)
  local xv, yv = ctx.xv, ctx.yv
  -- The common head and tail cost nothing: slide along them first.
  while xoff < xlim and yoff < ylim and xv[xoff] == yv[yoff] do
    xoff = xoff + 1; yoff = yoff + 1
  end
  while xoff < xlim and yoff < ylim and xv[xlim - 1] == yv[ylim - 1] do
    xlim = xlim - 1; ylim = ylim - 1
  end
  if xoff == xlim then
    for y = yoff, ylim - 1 do ctx.cy[ctx.ry[y]] = true end
  elseif yoff == ylim then
    for x = xoff, xlim - 1 do ctx.cx[ctx.rx[x]] = true end
  else
    local xmid, ymid, lo_minimal, hi_minimal = diag(ctx, xoff, xlim, yoff, ylim, find_minimal)
    compareseq(ctx, xoff, xmid, yoff, ymid, lo_minimal)
    compareseq(ctx, xmid, xlim, ymid, ylim, hi_minimal)
  end
end

-- Slides each run of changes in one file as far down as it goes, merging
-- runs that touch, then back up to line up with a change in the other file
-- (diffutils' shift_boundaries). Without it an inserted "}\n\n" block could
-- show up split oddly across a repeated line.
local function shift_boundaries(equivs, changed, other_changed, i_end)
  local i, j = 0, 0
  while true do
    -- Find the start of the next run, tracking the matching point in the
    -- other file.
    while i < i_end and not changed[i] do
      repeat local c = other_changed[j]; j = j + 1 until not c
      i = i + 1
    end
    if i == i_end then break end
    local start = i
    repeat i = i + 1 until not changed[i]
    while other_changed[j] do j = j + 1 end
    local runlength, corresponding
    repeat
      runlength = i - start
      -- Move the run back while the line before it equals its last line.
      while start > 0 and equivs[start - 1] == equivs[i - 1] do
        start = start - 1; changed[start] = true
        i = i - 1; changed[i] = false
        while changed[start - 1] do start = start - 1 end
        repeat j = j - 1 until not other_changed[j]
      end
      corresponding = other_changed[j - 1] and i or i_end
      -- Then forward while its first line equals the line after it.
      while i ~= i_end and equivs[start] == equivs[i] do
        changed[start] = false; start = start + 1
        changed[i] = true; i = i + 1
        while changed[i] do i = i + 1 end
        while true do
          j = j + 1
          if not other_changed[j] then break end
          corresponding = i
        end
      end
    until runlength == i - start
    -- Move the merged run back to line up with a change in the other file.
    while corresponding < i do
      start = start - 1; changed[start] = true
      i = i - 1; changed[i] = false
      repeat j = j - 1 until not other_changed[j]
    end
  end
end

-- Takes out of the comparison the lines of one file that match nothing in
-- the other (they are changes, whatever else happens), and lines matching
-- very many others when they sit inside a run of such lines: fewer lines
-- for the O(ND) search, and the same choices diff makes. Returns the kept
-- lines' classes and real indexes, and marks the dropped ones changed.
local function discard_confusing_lines(equivs, n, other_counts, changed)
  local discards = {}
  local many, tem = 5, n // 64
  -- many: about the square root of the line count.
  while true do
    tem = tem >> 2
    if tem <= 0 then break end
    many = many * 2
  end
  for i = 0, n - 1 do
    local nmatch = other_counts[equivs[i]] or 0
    if nmatch == 0 then
      discards[i] = 1
    elseif nmatch > many then
      discards[i] = 2  -- provisionally
    else
      discards[i] = 0
    end
  end
  -- Keep a provisional discard only well inside a run of discards.
  local i = 0
  while i < n do
    if discards[i] == 2 then
      discards[i] = 0
    elseif discards[i] ~= 0 then
      local j, provisional = i, 0
      while j < n and discards[j] ~= 0 do
        if discards[j] == 2 then provisional = provisional + 1 end
        j = j + 1
      end
      while j > i and discards[j - 1] == 2 do
        j = j - 1
        discards[j] = 0
        provisional = provisional - 1
      end
      local length = j - i
      if provisional * 4 > length then
        while j > i do
          j = j - 1
          if discards[j] == 2 then discards[j] = 0 end
        end
      else
        local minimum, t = 1, length // 4
        while true do
          t = t >> 2
          if t <= 0 then break end
          minimum = minimum * 2
        end
        minimum = minimum + 1
        -- Cancel every subrun of `minimum` or more provisionals.
        local consec = 0
        j = 0
        while j < length do
          if discards[i + j] ~= 2 then
            consec = 0
          else
            consec = consec + 1
            if consec == minimum then
              j = j - consec  -- back to the subrun's start to cancel it all
            elseif consec > minimum then
              discards[i + j] = 0
            end
          end
          j = j + 1
        end
        -- From each end, cancel provisionals until 3 firm discards in a
        -- row, or a firm one at least 8 lines in.
        for dir = 1, -1, -2 do
          local base = dir == 1 and i or i + length - 1
          consec = 0
          for k = 0, length - 1 do
            local at = base + dir * k
            if k >= 8 and discards[at] == 1 then break end
            if discards[at] == 2 then
              consec = 0
              discards[at] = 0
            elseif discards[at] == 0 then
              consec = 0
            else
              consec = consec + 1
            end
            if consec == 3 then break end
          end
        end
        i = i + length - 1
      end
    end
    i = i + 1
  end
  local kept, real, m = {}, {}, 0
  for k = 0, n - 1 do
    if discards[k] == 0 then
      kept[m] = equivs[k]
      real[m] = k
      m = m + 1
    else
      changed[k] = true
    end
  end
  return kept, real, m
end

-- The changes between two texts: a list of { line0, line1, deleted, inserted }
-- (0-based first lines), plus the lines of each side. `horizon` is how many
-- lines of the common head and tail take part, as diff keeps `context`
-- lines of them so shift_boundaries can move the first and last changes.
local function compare(old, new, horizon)
  local a, na = split_lines(old)
  local b, nb = split_lines(new)
  -- Common head and tail, found by plain string compares: with a few
  -- changes in a big file this is nearly all the work.
  local prefix, limit = 0, math.min(na, nb)
  while prefix < limit and a[prefix + 1] == b[prefix + 1] do prefix = prefix + 1 end
  local lo = math.max(prefix - horizon, 0)
  local suffix, slimit = 0, limit - lo
  while suffix < slimit and a[na - suffix] == b[nb - suffix] do suffix = suffix + 1 end
  local dropped = math.max(suffix - horizon, 0)
  local n0, n1 = na - dropped - lo, nb - dropped - lo
  -- Lines of the rest as numbers (equal lines, equal numbers), 0-based
  -- like the C code this follows, so comparisons are integer compares.
  local ids, next_id = {}, 0
  local e0, e1, count0, count1 = {}, {}, {}, {}
  for i = 0, n0 - 1 do
    local line = a[lo + i + 1]
    local id = ids[line]
    if not id then next_id = next_id + 1; id = next_id; ids[line] = id end
    e0[i] = id
    count0[id] = (count0[id] or 0) + 1
  end
  for i = 0, n1 - 1 do
    local line = b[lo + i + 1]
    local id = ids[line]
    if not id then next_id = next_id + 1; id = next_id; ids[line] = id end
    e1[i] = id
    count1[id] = (count1[id] or 0) + 1
  end
  local cx, cy = {}, {}
  local xv, rx, nx = discard_confusing_lines(e0, n0, count1, cx)
  local yv, ry, ny = discard_confusing_lines(e1, n1, count0, cy)
  -- diffutils' cost cap: about the square root of the total, at least 4096.
  local too_expensive, diags = 1, nx + ny + 3
  while diags ~= 0 do diags = diags >> 2; too_expensive = too_expensive << 1 end
  local ctx = {
    xv = xv, yv = yv, rx = rx, ry = ry, fd = {}, bd = {}, cx = cx, cy = cy,
    too_expensive = math.max(4096, too_expensive),
  }
  compareseq(ctx, 0, nx, 0, ny, false)
  shift_boundaries(e0, cx, cy, n0)
  shift_boundaries(e1, cy, cx, n1)
  local changes = {}
  local i0, i1 = 0, 0
  while i0 < n0 or i1 < n1 do
    if cx[i0] or cy[i1] then
      local line0, line1 = i0, i1
      while cx[i0] do i0 = i0 + 1 end
      while cy[i1] do i1 = i1 + 1 end
      changes[#changes + 1] = { line0 = line0 + lo, line1 = line1 + lo,
                                deleted = i0 - line0, inserted = i1 - line1 }
    end
    i0 = i0 + 1
    i1 = i1 + 1
  end
  return changes, a, na, b, nb
end

-- "first,count" of a hunk's range (1-based first..last inclusive), in
-- diff's spelling: "3" for one line, "2,0" (the line before) for none.
local function range(first, last)
  if last < first then return last .. ",0" end
  if last == first then return tostring(last) end
  return first .. "," .. (last - first + 1)
end

local function check_text(v, what)
  if v ~= nil and type(v) ~= "string" then
    error(what .. " must be a string or nil, got " .. type(v), 3)
  end
end

--- The unified diff from `old` to `new` (nil: the file is absent), as
-- `diff -u` prints it, or "" when they are equal. opts: context (lines
-- around each change, default 3), from / to (the header labels, default
-- "before" / "after").
function M.unified(old, new, opts)
  check_text(old, "old text")
  check_text(new, "new text")
  opts = opts or {}
  local context = opts.context or 3
  if math.type(context) ~= "integer" or context < 0 then
    error("context must be a non-negative integer, got " .. tostring(context), 2)
  end
  old, new = old or "", new or ""
  if old == new then return "" end
  if old:find("\0", 1, true) or new:find("\0", 1, true) then
    return "Binary files differ\n"
  end
  local changes, a, na, b, nb = compare(old, new, context)
  local out = { "--- " .. (opts.from or "before") .. "\n", "+++ " .. (opts.to or "after") .. "\n" }
  local function put(prefix, line)
    out[#out + 1] = prefix
    out[#out + 1] = line
    if line:sub(-1) ~= "\n" then out[#out + 1] = "\n\\ No newline at end of file\n" end
  end
  local k = 1
  while k <= #changes do
    -- A hunk takes every following change that starts within 2 * context
    -- unchanged lines of the previous one (their contexts would touch).
    local first, last = changes[k], changes[k]
    local m = k + 1
    while m <= #changes and changes[m].line0 - (last.line0 + last.deleted) <= 2 * context do
      last = changes[m]
      m = m + 1
    end
    local first0 = math.max(first.line0 - context, 0)
    local first1 = math.max(first.line1 - context, 0)
    local last0 = math.min(last.line0 + last.deleted - 1 + context, na - 1)
    local last1 = math.min(last.line1 + last.inserted - 1 + context, nb - 1)
    out[#out + 1] = ("@@ -%s +%s @@\n"):format(range(first0 + 1, last0 + 1), range(first1 + 1, last1 + 1))
    local i, j, c = first0, first1, k
    while i <= last0 or j <= last1 do
      local ch = changes[c]
      if c >= m or i < ch.line0 then
        put(" ", a[i + 1])
        i = i + 1
        j = j + 1
      else
        for _ = 1, ch.deleted do put("-", a[i + 1]); i = i + 1 end
        for _ = 1, ch.inserted do put("+", b[j + 1]); j = j + 1 end
        c = c + 1
      end
    end
    k = m
  end
  return table.concat(out)
end

--- How many lines `new` adds and removes relative to `old` (nil: absent),
-- for summaries like "+3 -1".
function M.stats(old, new)
  check_text(old, "old text")
  check_text(new, "new text")
  old, new = old or "", new or ""
  if old == new then return 0, 0 end
  local added, removed = 0, 0
  for _, ch in ipairs((compare(old, new, 3))) do
    added = added + ch.inserted
    removed = removed + ch.deleted
  end
  return added, removed
end

return M
