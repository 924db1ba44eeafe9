-- lines.lua: a text file as lines, for the types that edit files in place
-- (line, block): split keeping each line's ending, join back, and the
-- Lua patterns users give as anchors, checked up front.
local M = {}

-- The file as { text, eol } records: text without its line ending, eol
-- "\n", "\r\n" or "" (a last line without one). Each line keeps its own
-- ending, so a CRLF file, or a mixed one, comes back as it was.
function M.split(content)
  local lines, pos = {}, 1
  while pos <= #content do
    local nl = content:find("\n", pos, true)
    local text = content:sub(pos, (nl or #content + 1) - 1)
    local eol = nl and "\n" or ""
    if nl and text:sub(-1) == "\r" then text, eol = text:sub(1, -2), "\r\n" end
    lines[#lines + 1] = { text = text, eol = eol }
    pos = (nl or #content) + 1
  end
  return lines
end

-- The ending new lines get: the file's first one, "\n" for a new file.
function M.newline_of(lines)
  for _, l in ipairs(lines) do
    if l.eol ~= "" then return l.eol end
  end
  return "\n"
end

-- Back to text. Only the last line may lack an ending, and it does exactly
-- when the original file's did: inserting or removing at the end keeps
-- the file's final-newline state.
function M.join(lines, final_newline, nl)
  local out = {}
  for i, l in ipairs(lines) do
    local eol = l.eol
    if i < #lines and eol == "" then eol = nl end
    if i == #lines then eol = final_newline and (eol ~= "" and eol or nl) or "" end
    out[#out + 1] = l.text .. eol
  end
  return table.concat(out)
end

-- Why a pattern is malformed, or nil. Lua only notices a flaw when a
-- match gets as far as it ("100%" never fails against "abc"), so the
-- pattern is walked once up front.
function M.pattern_flaw(p)
  local i = p:sub(1, 1) == "^" and 2 or 1
  local open, closed, count = {}, {}, 0   -- captures: numbers still open, closed, how many
  while i <= #p do
    local c = p:sub(i, i)
    if c == "%" then
      local n = p:sub(i + 1, i + 1)
      if n == "" then return "ends with '%'" end
      if n == "b" and #p < i + 3 then return "missing arguments to '%b'" end
      if n == "f" and p:sub(i + 2, i + 2) ~= "[" then return "missing '[' after '%f'" end
      if n:find("%d") and not closed[tonumber(n)] then return "invalid capture index %" .. n end
      i = i + (n == "b" and 4 or 2)
    elseif c == "(" then
      count = count + 1
      open[#open + 1] = count
      i = i + 1
    elseif c == ")" then
      if #open == 0 then return "invalid pattern capture" end
      closed[table.remove(open)] = true
      i = i + 1
    elseif c == "[" then
      local j = i + 1
      if p:sub(j, j) == "^" then j = j + 1 end
      j = j + (p:sub(j, j) == "%" and 2 or 1)   -- a ']' right after '[' is literal
      while j <= #p and p:sub(j, j) ~= "]" do j = j + (p:sub(j, j) == "%" and 2 or 1) end
      if j > #p then return "missing ']'" end
      i = j + 1
    else
      i = i + 1
    end
  end
  if #open > 0 then return "unfinished capture" end
end

-- A matcher for a pattern a user wrote: a malformed one is their error,
-- named with the attribute, not a Lua traceback.
function M.finder(path, attr, pattern)
  if not pattern then return nil end
  local flaw = M.pattern_flaw(pattern)
  local function bad(why)
    error(("%s: %s is not a valid Lua pattern (%q): %s"):format(path, attr, pattern, why), 0)
  end
  if flaw then bad(flaw) end
  return function(text)
    local ok, found = pcall(string.find, text, pattern)
    if not ok then bad((tostring(found):gsub("^.-:%d+: ", ""))) end
    return found ~= nil
  end
end

-- Where a new line (or block) goes: after the last line matching `after`, before the
-- first matching `before`, else (no anchor, or none found) at the end.
function M.insert_at(lines, is_after, is_before)
  if is_after then
    for i = #lines, 1, -1 do
      if is_after(lines[i].text) then return i + 1 end
    end
  elseif is_before then
    for i = 1, #lines do
      if is_before(lines[i].text) then return i end
    end
  end
  return #lines + 1
end

--- The new content: edit(content, want) on the file there, or on "" for a
-- missing file when want.create; nil (nothing to do) when absent is wanted.
function M.apply(want, have, edit)
  if not have then
    if want.state == "absent" then return nil end
    if not want.create then
      error(("%s does not exist (set create = true to create it)"):format(want.path), 0)
    end
    return edit("", want)
  end
  return edit(have.content, want)
end

return M
