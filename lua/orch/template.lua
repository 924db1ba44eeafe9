-- template.lua: Jinja-looking templates with Lua inside, compiled once to a Lua function.
--
--   {{ expr }}        a Lua expression; nil renders as ""
--   {% statements %}  Lua statements: for/if/elseif/else/end, local, assignments
--   {# comment #}     dropped
--
-- `-` inside a delimiter ({%- -%}, {{- -}}, {#- -#}) strips the whitespace
-- (newlines too) on that side. A line holding only {% %} / {# #} tags and
-- whitespace vanishes from the output, like Jinja's trim_blocks +
-- lstrip_blocks, so control flow can sit on lines of its own.
--
-- The generated Lua keeps the template's line numbers (each piece of text
-- becomes code with exactly as many newlines as it spans), so Lua's own
-- syntax and runtime errors already say "name:LINE:" of the template.
local fs = require("orch.core.fs")
local proc = require("orch.proc")
local cjson = require("cjson")

local M = {}

--- Counters for tests and benchmarks: how many templates were compiled.
M.stats = { compiles = 0 }

-- Lua truncates a chunk name to LUA_IDSIZE - 1 (59) bytes in messages; we put
-- the full name back so long paths stay usable.
local IDSIZE = 59

-- Templates share these tables: one that could assign string.upper would
-- break every later render (and the engine), so they are read-only views.
local function read_only(t, what)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("the " .. what .. " library is read-only", 2) end,
  })
end

-- What every template sees after its vars.
local base = {
  string = read_only(string, "string"), table = read_only(table, "table"),
  math = read_only(math, "math"), utf8 = read_only(utf8, "utf8"),
  ipairs = ipairs, pairs = pairs, next = next, select = select,
  tostring = tostring, tonumber = tonumber, type = type,
  -- A template may refuse to render: {% assert(port, "port is required") %}.
  error = error, assert = assert,
  os = read_only({ date = os.date, time = os.time, getenv = os.getenv }, "os"),
  json = function(v) return cjson.encode(v) end,
  quote = proc.quote,
}

-- {{ }} output: nil prints nothing, everything else as tostring would.
local function to_text(v)
  if type(v) == "string" then return v end
  if v == nil then return "" end
  return tostring(v)
end

local function count_newlines(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- Finds the end of a Lua code tag that starts at `i`, skipping string
-- literals and comments so `{{ "a}}b" }}` and `{% x = "%}" %}` work.
-- `close` is "}}" or "%}". Returns the end of the code (exclusive of a
-- trailing line comment, which would otherwise swallow the generated code
-- that follows on the same line) and the position of the closing delimiter;
-- nil and a reason when the tag is not closed.
local function scan_code(src, i, close)
  local depth = 0  -- {} nesting, so `{{ {1,2}}}` closes at the last }}
  while true do
    local j = src:find("[\"'%[%-%%{}]", i)
    if not j then return nil, "unclosed tag" end
    local c = src:sub(j, j)
    if c == '"' or c == "'" then
      local k = j + 1
      while true do
        local m = src:find("[\\\n" .. c .. "]", k)
        if not m or src:sub(m, m) == "\n" then return nil, "unfinished string" end
        if src:sub(m, m) == "\\" then
          k = m + 2
        else
          i = m + 1
          break
        end
      end
    elseif c == "[" then
      local eq = src:match("^%[(=*)%[", j)
      if eq then
        local _, e = src:find("]" .. eq .. "]", j, true)
        if not e then return nil, "unfinished long string" end
        i = e + 1
      else
        i = j + 1
      end
    elseif c == "-" and src:sub(j + 1, j + 1) == "-" then
      local eq = src:match("^%-%-%[(=*)%[", j)
      if eq then
        local _, e = src:find("]" .. eq .. "]", j, true)
        if not e then return nil, "unfinished long comment" end
        i = e + 1
      else
        -- A line comment ends at the newline or at the tag's end.
        local nl = src:find("\n", j, true)
        local cl = src:sub(j, nl):find(close, 1, true)
        if cl then return j, j + cl - 1 end
        if not nl then return nil, "unclosed tag" end
        i = nl + 1
      end
    elseif c == "{" then
      depth = depth + 1
      i = j + 1
    elseif c == "}" and depth > 0 then
      depth = depth - 1
      i = j + 1
    elseif src:sub(j, j + 1) == close then
      return j, j
    else
      i = j + 1
    end
  end
end

-- Splits the source into an alternating list: text, tag, text, tag, ..., text.
-- A tag is { kind = "expr" | "stmt" | "comment", code, line, ltrim, rtrim, nl };
-- a text is { kind = "text", text, nl } where nl counts the newlines of the
-- source it came from (kept even when the output drops them).
local function tokenize(src, name)
  local tokens = {}
  local pos = 1
  -- Tags come in order, so lines are counted from the previous tag on:
  -- counting from the start each time would be quadratic in big templates.
  local counted_to, line = 1, 1
  local function line_at(at)
    line = line + count_newlines(src:sub(counted_to, at - 1))
    counted_to = at
    return line
  end
  local function add_text(s)
    tokens[#tokens + 1] = { kind = "text", text = s, nl = count_newlines(s),
                            ends_line = s:sub(-1) == "\n" }
  end
  while true do
    local open = src:find("{[{%%#]", pos)
    if not open then break end
    add_text(src:sub(pos, open - 1))
    local which = src:sub(open + 1, open + 1)
    local start = open + 2
    local ltrim = src:sub(start, start) == "-"
    if ltrim then start = start + 1 end
    local kind, close = "expr", "}}"
    if which == "%" then kind, close = "stmt", "%}" end
    if which == "#" then kind, close = "comment", "#}" end
    local code_end, close_at
    if kind == "comment" then
      close_at = src:find("#}", start, true)
      code_end = close_at
    else
      code_end, close_at = scan_code(src, start, close)
    end
    if not code_end then
      local why = close_at or "unclosed tag"
      if why == "unclosed tag" then
        why = ("'{%s' is not closed by '%s'"):format(which, close)
      else
        why = ("%s in '{%s' tag"):format(why, which)
      end
      error(("%s:%d: %s"):format(name, line_at(open), why), 0)
    end
    local rtrim = close_at > start and src:sub(close_at - 1, close_at - 1) == "-"
    if rtrim and code_end == close_at then code_end = close_at - 1 end
    local raw = src:sub(open, close_at + 1)
    tokens[#tokens + 1] = {
      kind = kind, code = src:sub(start, code_end - 1), line = line_at(open),
      ltrim = ltrim, rtrim = rtrim, nl = count_newlines(raw),
    }
    pos = close_at + 2
  end
  add_text(src:sub(pos))
  return tokens
end

-- Drops every line made only of {% %} / {# #} tags and whitespace: its
-- indentation, the blanks between its tags and its newline.
local function remove_standalone_lines(tokens)
  -- Flatten texts into pieces that end at a newline; each remembers its text.
  local items = {}
  for _, t in ipairs(tokens) do
    if t.kind == "text" then
      t.pieces = {}
      local s = 1
      while s <= #t.text do
        local nl = t.text:find("\n", s, true)
        local e = nl or #t.text
        local piece = { text = t.text:sub(s, e), eol = nl ~= nil }
        t.pieces[#t.pieces + 1] = piece
        items[#items + 1] = piece
        s = e + 1
      end
    else
      items[#items + 1] = t
    end
  end
  local first = 1
  for i = 1, #items + 1 do
    local item = items[i]
    if item == nil or item.eol then
      local tags, blank = 0, true
      for k = first, math.min(i, #items) do
        local it = items[k]
        if it.kind == "expr" or (it.kind == nil and it.text:find("%S")) then
          blank = false
          break
        elseif it.kind then
          tags = tags + 1
        end
      end
      if blank and tags > 0 then
        for k = first, math.min(i, #items) do
          if items[k].kind == nil then items[k].text = "" end
        end
      end
      first = i + 1
    end
  end
  for _, t in ipairs(tokens) do
    if t.kind == "text" then
      local parts = {}
      for k, p in ipairs(t.pieces) do parts[k] = p.text end
      t.text, t.pieces = table.concat(parts), nil
    end
  end
end

-- Applies the explicit {%- / -%} markers to the texts beside each tag.
local function apply_trims(tokens)
  for i, t in ipairs(tokens) do
    if t.kind ~= "text" then
      if t.ltrim then tokens[i - 1].text = tokens[i - 1].text:gsub("%s+$", "") end
      if t.rtrim then tokens[i + 1].text = tokens[i + 1].text:gsub("^%s+", "") end
    end
  end
end

-- A Lua string literal on one line: %q writes a newline as backslash-newline,
-- which would shift the line numbers of everything after it.
local function literal(s)
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end

-- The Lua source of a template: a chunk called as chunk(env, out, to_text)
-- that fills out[1..n] and returns n. Line N of it is line N of the template.
local function generate(tokens)
  local code = { "local _ENV, __out, __text = ...; local __n = 0; " }
  for i, t in ipairs(tokens) do
    if t.kind == "text" then
      if t.text ~= "" then
        code[#code + 1] = "__n = __n + 1; __out[__n] = " .. literal(t.text) .. "; "
      end
      local nl = t.nl
      -- The template's final newline would put <eof> on a line of its own
      -- (an unclosed `for` would then blame a line past the template's end).
      if i == #tokens and t.ends_line then nl = nl - 1 end
      code[#code + 1] = ("\n"):rep(nl)
    elseif t.kind == "expr" then
      code[#code + 1] = "__n = __n + 1; __out[__n] = __text(" .. t.code .. "); "
      code[#code + 1] = ("\n"):rep(t.nl - count_newlines(t.code))
    elseif t.kind == "stmt" then
      code[#code + 1] = t.code .. " "
      code[#code + 1] = ("\n"):rep(t.nl - count_newlines(t.code))
    else
      code[#code + 1] = ("\n"):rep(t.nl)
    end
  end
  -- Starts with __n like every text and expression, so an unfinished
  -- statement fails "near '__n'", which syntax_error rewords.
  code[#code + 1] = " __n = __n return __n"
  return table.concat(code)
end

-- Lua shows at most IDSIZE bytes of a chunk name; restore the full name.
local function fix_name(msg, name)
  if type(msg) ~= "string" or #name <= IDSIZE then return msg end
  local shown = name:sub(1, IDSIZE) .. ":"
  if msg:sub(1, #shown) == shown then
    return name .. ":" .. msg:sub(#shown + 1)
  end
  return msg
end

-- A syntax error in words about the template, not the generated Lua. An
-- expression is loaded on its own first: `{{ 1 + }}` fails "near '}}'", not
-- near the parenthesis the generated code adds.
local function syntax_error(err, tokens, name)
  err = fix_name(err, name)
  local prefix = name .. ":"
  local line = tonumber(err:sub(#prefix + 1):match("^(%d+):"))
  for _, t in ipairs(tokens) do
    if t.kind == "expr" and line and t.line <= line then
      local _, e = load(("\n"):rep(t.line - 1) .. "return " .. t.code, "=" .. name, "t", {})
      if e then
        err = fix_name(e, name):gsub("near <eof>$", "near '}}'")
        break
      end
    end
  end
  err = err:gsub("near <eof>$", "at the end of the template")
  return (err:gsub("near '__n'$", "at the end of the tag"))
end

--- Compiles a template into `render(vars) -> string`. A syntax error raises
-- "name:LINE: message" with the template's line.
function M.compile(source, name)
  if type(source) ~= "string" then
    error("template source must be a string, got " .. type(source), 2)
  end
  name = name or "template"
  if type(name) ~= "string" then
    error("template name must be a string, got " .. type(name), 2)
  end
  local tokens = tokenize(source, name)
  remove_standalone_lines(tokens)
  apply_trims(tokens)
  local chunk, err = load(generate(tokens), "=" .. name, "t", {})
  if not chunk then error(syntax_error(err, tokens, name), 0) end
  M.stats.compiles = M.stats.compiles + 1

  local chunkname = "=" .. name
  local prefix = name .. ":"
  -- Errors raised by Lua inside the template already carry "name:LINE:";
  -- those from functions it calls (C functions, the caller's helpers) get
  -- the line of the template that called them.
  local function on_error(msg)
    msg = fix_name(msg, name)
    if type(msg) ~= "string" or msg:sub(1, #prefix) == prefix then return msg end
    for level = 2, math.huge do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == chunkname and info.currentline > 0 then
        return prefix .. info.currentline .. ": " .. msg
      end
    end
    return msg
  end

  return function(vars)
    if vars == nil then
      vars = {}
    elseif type(vars) ~= "table" then
      error("template vars must be a table, got " .. type(vars), 2)
    end
    -- A fresh global table per render: `{% x = 1 %}` lands here, never in
    -- the caller's vars, and reads fall through to vars, then the base.
    local env = setmetatable({}, { __index = function(_, k)
      local v = vars[k]
      if v == nil then v = base[k] end
      return v
    end })
    local out = {}
    local ok, n = xpcall(chunk, on_error, env, out, to_text)
    if not ok then error(n, 0) end
    return table.concat(out, "", 1, n)
  end
end

--- Compiles and renders in one go (compiles every time: prefer compile or
-- render_file for anything rendered twice).
function M.render(source, vars, name)
  return M.compile(source, name)(vars)
end

-- path -> { sum = sha256 of the source, render = function }: one entry per
-- path, replaced when the file changes, so an edited template is recompiled.
local cache = {}

--- Renders the template file at `path`, compiled once per content.
-- Returns the text, or nil, "path: reason", code when it cannot be read.
function M.render_file(path, vars)
  if type(path) ~= "string" then
    error("template path must be a string, got " .. type(path), 2)
  end
  local source, err, code = fs.read(path)
  if not source then return nil, err, code end
  local sum = fs.sha256_data(source)
  local entry = cache[path]
  if not entry or entry.sum ~= sum then
    entry = { sum = sum, render = M.compile(source, path) }
    cache[path] = entry
  end
  return entry.render(vars)
end

return M
