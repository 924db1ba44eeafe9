-- providers/line.lua: one line present in (or absent from) a file, the
-- rest of the file left as it is, as Ansible's lineinfile does it.
-- `match`, `after` and `before` are Lua patterns, not regexes: "^max_conn"
-- means what it says, and `%` escapes a magic character ("^port%.http").

local lines_mod = require("orch.lines")
local split, newline_of, join = lines_mod.split, lines_mod.newline_of, lines_mod.join
local finder, insert_at = lines_mod.finder, lines_mod.insert_at

-- The file's content with want applied: a function of the two alone.
local function edit(content, want)
  local lines = split(content)
  local final_newline = #lines == 0 or lines[#lines].eol ~= ""
  local nl = newline_of(lines)
  -- All three made (and so checked) up front: a bad anchor is an error
  -- even on a run that does not need it.
  local is_match = finder(want.path, "match", want.match)
  local is_after, is_before = finder(want.path, "after", want.after), finder(want.path, "before", want.before)
  local function selected(text)
    if is_match then return is_match(text) end
    return text == want.line
  end

  if want.state == "absent" then
    local kept = {}
    for _, l in ipairs(lines) do
      if not selected(l.text) then kept[#kept + 1] = l end
    end
    return join(kept, final_newline, nl)
  end

  local last
  for i, l in ipairs(lines) do
    if selected(l.text) then last = i end
  end
  if last then
    lines[last].text = want.line
    return join(lines, final_newline, nl)
  end
  -- Nothing matches, but the line is there: a `line` that `match` does
  -- not match would otherwise be inserted again on every run.
  for _, l in ipairs(lines) do
    if l.text == want.line then return content end
  end
  table.insert(lines, insert_at(lines, is_after, is_before), { text = want.line, eol = nl })
  return join(lines, final_newline, nl)
end

return {
  line = {
    file = true,
    schema = {
      line     = { type = "string" },   -- the whole line; required when present
      state    = { type = "string", enum = { "present", "absent" }, default = "present" },
      -- Lua patterns. match: present replaces the last matching line,
      -- absent removes every one. after/before place a new line (after the
      -- last line matching, before the first); not found: the end.
      -- before = "^" puts it first.
      match    = { type = "string" },
      after    = { type = "string" },
      before   = { type = "string" },
      create   = { type = "boolean", default = false },
    },
    content = function(ctx, want, have)
      local path = want.path
      if want.line and want.line:find("[\r\n]") then
        error(("%s: line must be a single line (use block for several)"):format(path), 0)
      end
      if want.after and want.before then error(("%s: give after or before, not both"):format(path), 0) end
      if want.state == "present" and not want.line then
        error(("%s: line is required when state is present"):format(path), 0)
      end
      if want.state == "absent" and not (want.line or want.match) then
        error(("%s: give line or match to say which lines to remove"):format(path), 0)
      end
      return lines_mod.apply(want, have, edit)
    end,
  },
}
