-- files.lua: N file resources of 1 KiB each (the playbook for bench/files.sh)
--   orch play bench/files.lua -e dest=DIR [-e n=1000]
local n = tonumber(vars.n or 1000)
for i = 1, n do
  file { ("%s/f%04d"):format(vars.dest, i), content = ("%04d"):format(i):rep(256), mode = "0644" }
end
