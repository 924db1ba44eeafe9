-- providers/block.lua: a block of lines between two marker lines in a
-- file, the rest of the file left as it is, as Ansible's blockinfile does
-- it. Each block's name goes into its markers, so several coexist.
-- `after` and `before` are Lua patterns, not regexes (`%` escapes).
local secret = require("orch.secret")

local lines_mod = require("orch.lines")
local split, newline_of, join = lines_mod.split, lines_mod.newline_of, lines_mod.join
local finder, insert_at = lines_mod.finder, lines_mod.insert_at

-- The two marker lines. gsub with a function: a name holding "%" must
-- not be read as a replacement pattern.
local function markers(want)
  local function marker(mark)
    return (want.marker:gsub("{(%w+)}", function(k)
      if k == "mark" then return mark end
      if k == "name" then return want.name end
    end))
  end
  return marker("BEGIN"), marker("END")
end

-- Where the markers are: both indexes, or neither. Half a block (a marker
-- edited away by hand) is refused, not guessed at: replacing from there
-- to the end of the file, or adding a second block, would both be wrong
-- more often than right.
local function find_block(path, lines, first, last)
  local b, e
  for i, l in ipairs(lines) do
    if not b and l.text == first then b = i
    elseif b and l.text == last then e = i; break end
  end
  if b and not e then
    error(("%s: line %d is %q but no %q follows it; mend the file by hand"):format(path, b, first, last), 0)
  end
  if not b then
    for i, l in ipairs(lines) do
      if l.text == last then
        error(("%s: line %d is %q but no %q precedes it; mend the file by hand"):format(path, i, last, first), 0)
      end
    end
  end
  return b, e
end

-- The block's lines, ending as the file's do. One final newline of the
-- block is its ending, not an empty line.
local function body_lines(block, nl)
  if block == "" then return {} end
  local lines = split((block:gsub("\r?\n$", "")) .. "\n")
  local texts = {}
  for i, l in ipairs(lines) do
    l.eol = nl
    texts[i] = l.text
  end
  -- orch hides a secret from diffs and history by its literal value: a
  -- multi-line one in a CRLF file is no longer there as such, so the
  -- block as written becomes a secret too.
  local written = table.concat(texts, nl)
  if written ~= block and secret.contains(block) then secret.new(written) end
  return lines
end

-- The file's content with want applied: a function of the two alone.
local function edit(content, want)
  local lines = split(content)
  local final_newline = #lines == 0 or lines[#lines].eol ~= ""
  local nl = newline_of(lines)
  local first, last = markers(want)
  -- Made (and so checked) up front: a bad anchor is an error even on a
  -- run that does not need it.
  local is_after, is_before = finder(want.path, "after", want.after), finder(want.path, "before", want.before)
  local b, e = find_block(want.path, lines, first, last)

  local new = {}
  if want.state == "present" then
    new[1] = { text = first, eol = nl }
    for _, l in ipairs(body_lines(want.block, nl)) do new[#new + 1] = l end
    new[#new + 1] = { text = last, eol = nl }
  end

  local out = {}
  if b then
    for i = 1, b - 1 do out[#out + 1] = lines[i] end
    for _, l in ipairs(new) do out[#out + 1] = l end
    for i = e + 1, #lines do out[#out + 1] = lines[i] end
    return join(out, final_newline, nl)
  end
  if want.state == "absent" then return content end
  local at = insert_at(lines, is_after, is_before)
  for i, l in ipairs(new) do table.insert(lines, at + i - 1, l) end
  return join(lines, final_newline, nl)
end

return {
  block = {
    file = true,
    schema = {
      block    = { type = "string" },   -- the lines between the markers; required when present
      name     = { type = "string", default = "orch" },
      -- {mark} becomes BEGIN or END, {name} the name
      marker   = { type = "string", default = "# {mark} orch managed block: {name}" },
      state    = { type = "string", enum = { "present", "absent" }, default = "present" },
      -- Lua patterns placing a new block: after the last line matching,
      -- before the first; not found: the end. before = "^" puts it first.
      after    = { type = "string" },
      before   = { type = "string" },
      create   = { type = "boolean", default = false },
    },
    content = function(ctx, want, have)
      local path = want.path
      if not want.marker:find("{mark}", 1, true) then
        error(("%s: marker must contain {mark} (BEGIN and END would be the same line): %q")
          :format(path, want.marker), 0)
      end
      if want.marker:find("[\r\n]") or want.name:find("[\r\n]") then
        error(("%s: marker and name must be on one line"):format(path), 0)
      end
      if want.after and want.before then error(("%s: give after or before, not both"):format(path), 0) end
      if want.state == "present" and not want.block then
        error(("%s: block is required when state is present"):format(path), 0)
      end
      return lines_mod.apply(want, have, edit)
    end,
  },
}
