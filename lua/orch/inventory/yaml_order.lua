-- inventory/yaml_order.lua: where each key of a YAML text is first written, which
-- the parsed tables forget (an inventory keeps hosts in written order).
local M = {}

-- From `from`, the index of the quote closing a scalar opened with q.
local function close_quote(line, from, q)
  local i = from
  while true do
    local j = line:find(q, i, true)
    if not j then return nil end
    if q == "'" then
      if line:sub(j + 1, j + 1) ~= "'" then return j end
      i = j + 2  -- '' is an escaped quote
    else
      if #line:sub(from, j - 1):match("\\*$") % 2 == 0 then return j end
      i = j + 1
    end
  end
end

-- orch.core.yaml gives a mapping as a Lua table, which forgets the order
-- of its keys, yet an inventory keeps hosts in the order they are
-- written. So a light scan of the text finds where each mapping key first
-- appears: { key = { rank = n, line = l } }. It knows comments, quotes,
-- flow punctuation and block scalars; fooled by something exotic, it
-- costs only the order and the line named in a message, never a value.
function M.scan_keys(text)
  local first, rank = {}, 0
  local block  -- in a block scalar: the indent of the line that opened it
  local quote  -- in a quoted scalar that runs past its line: the quote
  local flow = {}  -- open flow collections, innermost last: "{" or "["
  local key_pos = false  -- right after "{" or "," in a flow mapping
  local function found(key, lineno)
    if not first[key] then
      rank = rank + 1
      first[key] = { rank = rank, line = lineno }
    end
  end
  -- After a scalar ending before k: is it a key? "k:" anywhere, and in a
  -- flow mapping a lone "{k}" or "{k, ...}" too.
  local function after_scalar(line, k, key, lineno)
    local d = line:sub(k, k)
    if d == ":" or (key_pos and (d == "," or d == "}")) then found(key, lineno) end
    key_pos = false
  end
  local function scan_line(line, lineno, indent)
    local i, n = 1, #line
    if quote then
      local j = close_quote(line, 1, quote)
      if not j then return end
      quote, i = nil, j + 1
    end
    while i <= n do
      local c = line:sub(i, i)
      if c == "{" or c == "[" then
        flow[#flow + 1] = c
        key_pos = c == "{"
        i = i + 1
      elseif c == "}" or c == "]" then
        flow[#flow] = nil
        key_pos = false
        i = i + 1
      elseif c == "," then
        key_pos = flow[#flow] == "{"
        i = i + 1
      elseif c == " " or c == "\t" then
        i = line:find("[^ \t]", i) or n + 1
      elseif c == ":" and (i == n or line:find(#flow > 0 and "^[%s,%[%]{}]" or "^%s", i + 1)) then
        i = i + 1  -- a value indicator (otherwise ::1 starts a plain scalar)
      elseif c == "#" then
        return
      elseif c == "'" or c == '"' then
        local j = close_quote(line, i + 1, c)
        if not j then quote = c; return end
        local key = line:sub(i + 1, j - 1)
        if c == "'" then key = key:gsub("''", "'") end
        local k = line:match("^%s*()", j + 1)
        after_scalar(line, k, key, lineno)
        i = k
      elseif (c == "|" or c == ">") and #flow == 0
          and (line:find("^[|>][%d+-]*%s*$", i) or line:find("^[|>][%d+-]*%s+#", i)) then
        block = indent
        return
      elseif (c == "-" or c == "?") and (i == n or line:sub(i + 1, i + 1):find("%s")) then
        i = i + 1  -- a sequence entry or complex key indicator
      elseif c == "&" or c == "!" or c == "*" then
        i = line:find("[%s,%[%]{}]", i) or n + 1  -- anchor, tag, alias
      else
        -- A plain scalar: up to ": " or " #"; in a flow collection, also
        -- up to a flow indicator (outside one, web[01:03] is one scalar).
        local in_flow = #flow > 0
        local stops = in_flow and "[%s,%[%]{}]" or "%s"
        local j = i
        while true do
          j = line:find(in_flow and "[:#,%[%]{}]" or "[:#]", j) or n + 1
          if j > n then break end
          local d = line:sub(j, j)
          if d == ":" then
            if j == n or line:find(stops, j + 1) == j + 1 then break end
          elseif d ~= "#" or line:find("^%s", j - 1) then
            break
          end
          j = j + 1
        end
        local word = line:sub(i, j - 1):match("^(.-)%s*$")
        local k = line:match("^%s*()", j)
        after_scalar(line, k, word, lineno)
        i = math.max(j, i + 1)
      end
    end
  end
  local lineno = 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    lineno = lineno + 1
    local indent = #line:match("^ *")
    if block and not (line:find("^%s*$") or indent > block) then block = nil end
    if not block then scan_line(line, lineno, indent) end
  end
  return first
end

---------------------------------------------------------------------------
-- Ansible YAML inventories

return M
