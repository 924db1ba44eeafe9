-- inventory/selector.lua: parse host selectors ("role:web,!db01") and match them
-- against an inventory, with the semantics of Ansible's host patterns.
--
--   selector = term { "," term }
--   term     = [ "&" ] factor { "&" factor }
--   factor   = [ "!" ] atom
--   atom     = "all" | "*" | HOST | GLOB | "role:" ROLE | "role:" GLOB
--
-- A term with a positive factor adds (the intersection of its positive
-- factors, minus its negative ones) to the selection; a term that starts
-- with "&" or has only "!" factors filters it. With no adding term the
-- selection starts from all hosts. So "role:web,!web02" is web minus
-- web02, "web*,&role:eu" the web hosts in eu, "!db01" everything but db01.
local inventory = require("orch.inventory")

local M = {}

-- selector -> parsed. A run reuses a handful of selectors; a long-lived
-- process fed arbitrary ones starts over past CACHE_MAX.
local cache, cached, CACHE_MAX = {}, 0, 1000

---------------------------------------------------------------------------
-- Globs: * ? and [a-z] / [!a-z] classes, matched byte by byte.

local ANY, STAR = {}, {}

local function is_glob(s)
  return s:find("[*?%[]") ~= nil
end

-- A list of tokens: a one-byte string, ANY, STAR or a class
-- { neg = bool, { lo, hi }, ... }.
local function compile_glob(pat, bad)
  local toks, i, n = {}, 1, #pat
  while i <= n do
    local c = pat:sub(i, i)
    if c == "*" then
      if toks[#toks] ~= STAR then toks[#toks + 1] = STAR end
      i = i + 1
    elseif c == "?" then
      toks[#toks + 1] = ANY
      i = i + 1
    elseif c == "[" then
      local j = i + 1
      local class = { neg = false }
      if pat:sub(j, j) == "!" or pat:sub(j, j) == "^" then class.neg, j = true, j + 1 end
      local start = j
      while true do
        if j > n then bad(("unclosed '[' in '%s'"):format(pat)) end
        local d = pat:sub(j, j)
        if d == "]" and j > start then break end
        if pat:sub(j + 1, j + 1) == "-" and j + 2 <= n and pat:sub(j + 2, j + 2) ~= "]" then
          local lo, hi = d:byte(), pat:byte(j + 2)
          if lo > hi then bad(("bad range '%s' in '%s'"):format(pat:sub(j, j + 2), pat)) end
          class[#class + 1] = { lo, hi }
          j = j + 3
        else
          class[#class + 1] = { d:byte(), d:byte() }
          j = j + 1
        end
      end
      toks[#toks + 1] = class
      i = j + 1
    else
      toks[#toks + 1] = c
      i = i + 1
    end
  end
  return toks
end

local function match_one(tok, b)
  if tok == ANY then return true end
  if type(tok) == "string" then return tok:byte() == b end
  local hit = false
  for _, r in ipairs(tok) do
    if b >= r[1] and b <= r[2] then hit = true; break end
  end
  return hit ~= tok.neg
end

-- Iterative, backtracking only to the last star: O(#s * #toks) at worst.
local function glob_match(toks, s)
  local ti, si, n = 1, 1, #s
  local star_t, star_s
  while si <= n do
    local tok = toks[ti]
    if tok == STAR then
      star_t, star_s = ti, si
      ti = ti + 1
    elseif tok ~= nil and match_one(tok, s:byte(si)) then
      ti, si = ti + 1, si + 1
    elseif star_t then
      star_s = star_s + 1
      ti, si = star_t + 1, star_s
    else
      return false
    end
  end
  while toks[ti] == STAR do ti = ti + 1 end
  return toks[ti] == nil
end

---------------------------------------------------------------------------
-- Parsing

local function trim(s) return s:match("^%s*(.-)%s*$") end

local function parse_atom(text, bad)
  if text == "all" or text == "*" then return { kind = "all" } end
  local kind, name = "host", text
  if text:sub(1, 5) == "role:" then
    kind, name = "role", text:sub(6)
    if name == "" then bad("'role:' needs a role name") end
  end
  local atom = { kind = kind, name = name }
  if is_glob(name) then atom.glob = compile_glob(name, bad) end
  return atom
end

--- The parsed form of `sel`: { { filter = bool, { neg = bool, atom }, ... }, ... }.
-- Raises on bad syntax, naming the selector. Cached.
function M.parse(sel)
  if type(sel) ~= "string" then
    error("selector must be a string, got " .. type(sel), 2)
  end
  local parsed = cache[sel]
  if parsed then return parsed end
  local function bad(why) error(("bad selector '%s': %s"):format(sel, why), 0) end
  if trim(sel) == "" then bad("it is empty") end
  parsed = {}
  for raw in (sel .. ","):gmatch("([^,]*),") do
    local text = trim(raw)
    if text == "" then bad("an empty term (a ',' with nothing before or after it)") end
    local term = { filter = false }
    if text:sub(1, 1) == "&" then
      term.filter, text = true, trim(text:sub(2))
      if text == "" then bad("'&' with nothing after it") end
    end
    local positive = false
    for fraw in (text .. "&"):gmatch("([^&]*)&") do
      local f = trim(fraw)
      if f == "" then bad("an empty factor (a '&' with nothing before or after it)") end
      local neg = f:sub(1, 1) == "!"
      if neg then f = trim(f:sub(2)) end
      if f == "" then bad("'!' with nothing after it") end
      if f:sub(1, 1) == "!" then bad("'!!' (one '!' excludes)") end
      if f:find("%s") then bad(("a space inside '%s'"):format(f)) end
      term[#term + 1] = { neg = neg, atom = parse_atom(f, bad) }
      positive = positive or not neg
    end
    if not positive then term.filter = true end
    parsed[#parsed + 1] = term
  end
  if cached >= CACHE_MAX then cache, cached = {}, 0 end
  cache[sel], cached = parsed, cached + 1
  return parsed
end

---------------------------------------------------------------------------
-- Matching

local function list_of(names, max)
  local shown = table.move(names, 1, math.min(#names, max), 1, {})
  if #names > max then shown[#shown + 1] = "..." end
  return table.concat(shown, ", ")
end

-- Host set of one atom: { [host] = true }.
local function atom_hosts(ctx, atom)
  local set = {}
  if atom.kind == "all" then
    for _, h in ipairs(ctx.hosts) do set[h] = true end
  elseif atom.kind == "host" then
    if atom.glob then
      for _, h in ipairs(ctx.hosts) do
        if glob_match(atom.glob, h.name) then set[h] = true end
      end
    else
      local h = ctx.inv:get(atom.name)
      if not h then
        local hints = {}
        if ctx.role_set[atom.name] then hints[1] = "role:" .. atom.name end
        for _, m in ipairs(inventory.close_matches(atom.name, ctx.names, 3 - #hints)) do
          hints[#hints + 1] = m
        end
        error(("unknown host '%s' in selector '%s'%s"):format(atom.name, ctx.sel,
          #hints > 0 and ("; did you mean " .. table.concat(hints, ", ") .. "?") or ""), 0)
      end
      set[h] = true
    end
  else
    local wanted = {}
    if atom.glob then
      for _, r in ipairs(ctx.roles) do
        if glob_match(atom.glob, r) then wanted[r] = true end
      end
    elseif ctx.role_set[atom.name] then
      wanted[atom.name] = true
    else
      local hints = inventory.close_matches(atom.name, ctx.roles, 3)
      local tail
      if #hints > 0 then
        tail = "; did you mean " .. table.concat(hints, ", ") .. "?"
      elseif ctx.inv:get(atom.name) then
        tail = ("; '%s' is a host: select it without 'role:'"):format(atom.name)
      elseif #ctx.roles > 0 then
        tail = "; roles are: " .. list_of(ctx.roles, 10)
      else
        tail = "; the inventory has no roles"
      end
      error(("unknown role '%s' in selector '%s'%s"):format(atom.name, ctx.sel, tail), 0)
    end
    for _, h in ipairs(ctx.hosts) do
      for _, r in ipairs(h.roles) do
        if wanted[r] then set[h] = true; break end
      end
    end
  end
  return set
end

-- A term's hosts: its positive factors intersected (all hosts if none),
-- minus its negative ones.
local function term_hosts(ctx, term)
  local set
  for _, f in ipairs(term) do
    if not f.neg then
      local s = atom_hosts(ctx, f.atom)
      if set then
        for h in pairs(set) do
          if not s[h] then set[h] = nil end
        end
      else
        set = s
      end
    end
  end
  set = set or atom_hosts(ctx, { kind = "all" })
  for _, f in ipairs(term) do
    if f.neg then
      for h in pairs(atom_hosts(ctx, f.atom)) do set[h] = nil end
    end
  end
  return set
end

--- Hosts of `inv` matched by `sel`, in inventory order, each once.
-- An unknown host or role (not a glob) raises with suggestions; a glob
-- that matches nothing, or an empty result, is not an error.
function M.select(inv, sel)
  if type(sel) ~= "string" then
    error("selector must be a string, got " .. type(sel), 2)
  end
  local parsed = M.parse(sel)
  local roles = inv:roles()
  local ctx = { inv = inv, sel = sel, hosts = inv:hosts(), roles = roles, role_set = {}, names = {} }
  for _, r in ipairs(roles) do ctx.role_set[r] = true end
  for i, h in ipairs(ctx.hosts) do ctx.names[i] = h.name end
  local chosen
  for _, term in ipairs(parsed) do
    if not term.filter then
      chosen = chosen or {}
      for h in pairs(term_hosts(ctx, term)) do chosen[h] = true end
    end
  end
  chosen = chosen or atom_hosts(ctx, { kind = "all" })
  for _, term in ipairs(parsed) do
    if term.filter then
      local keep = term_hosts(ctx, term)
      for h in pairs(chosen) do
        if not keep[h] then chosen[h] = nil end
      end
    end
  end
  local out = {}
  for _, h in ipairs(ctx.hosts) do
    if chosen[h] then out[#out + 1] = h end
  end
  return out
end

--- `hosts` (in their order) that `sel` selects in `inv`: for --limit.
function M.limit(hosts, inv, sel)
  local keep = {}
  for _, h in ipairs(M.select(inv, sel)) do keep[h.name] = true end
  local out = {}
  for _, h in ipairs(hosts) do
    if keep[h.name] then out[#out + 1] = h end
  end
  return out
end

--- The hosts that sel selects (within `limit`, if given) from the
-- inventory files given with -i: a list, or nil and what is wrong (no
-- file, a file that doesn't load, a selector that doesn't parse).
function M.from_files(files, sel, limit)
  if #(files or {}) == 0 then return nil, "no inventory: give -i FILE" end
  local inv, err = inventory.new():load_all(files)
  if not inv then return nil, err end
  local ok, hosts = pcall(M.select, inv, sel)
  if ok and limit then ok, hosts = pcall(M.limit, hosts, inv, limit) end
  if not ok then return nil, tostring(hosts) end
  return hosts
end

return M
