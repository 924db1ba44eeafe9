-- base64.lua: RFC 4648 base64, for the few places that meet it: the
-- forms a secret leaks in, known_hosts keys and hashed names.
local M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, 64 do VALUE[ALPHABET:byte(i)] = i - 1 end

--- text as base64, padded with = (pad = false: without).
function M.encode(text, pad)
  local out = text:gsub("..?.?", function(g)
    local a, b, c = g:byte(1, 3)
    local n, chars = (a << 16) | ((b or 0) << 8) | (c or 0), {}
    for i = 1, #g + 1 do
      local d = (n >> (6 * (4 - i))) & 63
      chars[i] = ALPHABET:sub(d + 1, d + 1)
    end
    return table.concat(chars) .. (pad == false and "" or ("="):rep(3 - #g))
  end)
  return out
end

--- The bytes base64 text stands for; characters outside the alphabet
-- (padding, line breaks) are skipped.
function M.decode(text)
  local out, bits, n = {}, 0, 0
  for i = 1, #text do
    local v = VALUE[text:byte(i)]
    if v then
      bits, n = ((bits << 6) | v) & 0xffffff, n + 6
      if n >= 8 then
        n = n - 8
        out[#out + 1] = string.char((bits >> n) & 255)
      end
    end
  end
  return table.concat(out)
end

return M
