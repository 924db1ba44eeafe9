-- archive_spec.lua: orch.core.archive against GNU tar, python3's tarfile
-- (hostile archives) and the scheduler (work on libuv's threadpool).
local archive = require("orch.core.archive")
local fs = require("orch.core.fs")
local loop = require("orch.core.loop")
local support = require("spec.helpers.support")

local sh = support.sh

local function octal(s) return tonumber(s, 8) end

-- A hostile tar.gz at path, made by python3's tarfile, which writes names as
-- given: entries is a list of { name, type = "file"|"symlink"|"hardlink", target }.
local function python_tar(path, entries)
  local lines = { "import io, sys, tarfile", "t = tarfile.open(sys.argv[1], 'w:gz')" }
  for _, e in ipairs(entries) do
    lines[#lines + 1] = ("i = tarfile.TarInfo(%q); i.mode = 0o644"):format(e[1])
    if e.type == "symlink" then
      lines[#lines + 1] = ("i.type = tarfile.SYMTYPE; i.linkname = %q; t.addfile(i)"):format(e.target)
    elseif e.type == "hardlink" then
      lines[#lines + 1] = ("i.type = tarfile.LNKTYPE; i.linkname = %q; t.addfile(i)"):format(e.target)
    else
      lines[#lines + 1] = "i.size = 5; t.addfile(i, io.BytesIO(b'pwned'))"
    end
  end
  lines[#lines + 1] = "t.close()"
  support.write(path .. ".py", table.concat(lines, "\n") .. "\n")
  sh("python3 " .. path .. ".py " .. path)
end

describe("orch.core.archive", function()
  local dir
  before_each(function()
    dir = support.tmpdir()
    -- src: a file, an executable, a symlink and nested directories
    assert(fs.mkdir(dir .. "/src/lib/deep/er"))
    support.write(dir .. "/src/top.txt", "top\n")
    support.write(dir .. "/src/lib/run.sh", "#!/bin/sh\necho run\n")
    assert(fs.chmod(dir .. "/src/lib/run.sh", "0750"))
    support.write(dir .. "/src/lib/deep/er/data.bin", ("\0\1\2\255"):rep(3000))
    assert(fs.chmod(dir .. "/src/lib/deep", "0700"))
    assert(fs.symlink("../top.txt", dir .. "/src/lib/top.link"))
  end)
  after_each(function() support.remove_tree(dir) end)

  it("round-trips content, modes, mtimes, symlinks and nested directories", function()
    sh("touch -d '2001-02-03 04:05:06' " .. dir .. "/src/top.txt")
    local res = assert(archive.create(dir .. "/a.tar.gz", dir .. "/src", { "top.txt", "lib" }))
    -- entries but directories: top.txt, run.sh, data.bin, top.link
    assert.same({ files = 4, bytes = 4 + 19 + 12000 }, res)
    res = assert(archive.extract(dir .. "/a.tar.gz", dir .. "/out/x"))  -- mkdir -p
    assert.same({ files = 4, bytes = 4 + 19 + 12000 }, res)
    local out = dir .. "/out/x"
    assert.equals("top\n", support.read(out .. "/top.txt"))
    assert.equals("#!/bin/sh\necho run\n", support.read(out .. "/lib/run.sh"))
    assert.equals(("\0\1\2\255"):rep(3000), support.read(out .. "/lib/deep/er/data.bin"))
    assert.equals(octal("750"), fs.stat(out .. "/lib/run.sh").mode)
    assert.equals(octal("700"), fs.stat(out .. "/lib/deep").mode)
    assert.equals(fs.stat(dir .. "/src/top.txt").mtime // 1, fs.stat(out .. "/top.txt").mtime // 1)
    local link = assert(fs.lstat(out .. "/lib/top.link"))
    assert.equals("link", link.type)
    assert.equals("../top.txt", link.target)
  end)

  it("writes a tar.gz GNU tar reads, and lists it in archive order", function()
    assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "lib/" }))
    local names = sh("tar -tzf " .. dir .. "/a.tgz")
    assert.equals("lib/\nlib/deep/\nlib/deep/er/\nlib/deep/er/data.bin\nlib/run.sh\nlib/top.link\n", names)
    assert.matches("lrwxrwxrwx.* lib/top.link %-> %.%./top.txt", sh("tar -tvzf " .. dir .. "/a.tgz"))
    local list = assert(archive.list(dir .. "/a.tgz"))
    assert.equals(6, #list)
    assert.same({ path = "lib/", type = "directory", size = 0, mode = octal("755") }, list[1])
    assert.same({ path = "lib/deep/er/data.bin", type = "file", size = 12000, mode = octal("644") }, list[4])
    assert.same({ path = "lib/run.sh", type = "file", size = 19, mode = octal("750") }, list[5])
    assert.same({ path = "lib/top.link", type = "link", size = 0, mode = octal("777") }, list[6])
  end)

  it("reads archives GNU tar wrote, plain or gzip'd", function()
    sh("tar -C " .. dir .. "/src -cf " .. dir .. "/g.tar top.txt lib")
    sh("tar -C " .. dir .. "/src -czf " .. dir .. "/g.tgz top.txt lib")
    for _, name in ipairs({ "g.tar", "g.tgz" }) do
      local res = assert(archive.extract(dir .. "/" .. name, dir .. "/" .. name .. ".d"))
      assert.equals(4, res.files)
      assert.equals("top\n", support.read(dir .. "/" .. name .. ".d/lib/top.link"))
    end
  end)

  it("replaces dest atomically and leaves no temp file", function()
    support.write(dir .. "/a.tgz", "old")
    assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "top.txt" }))
    assert.equals("top.txt\n", sh("tar -tzf " .. dir .. "/a.tgz"))
    assert.same({ "a.tgz", "src" }, assert(fs.list(dir)))
  end)

  it("fails with ENOENT for a missing path, leaving no file", function()
    local ok, err, code = archive.create(dir .. "/a.tgz", dir .. "/src", { "top.txt", "nope" })
    assert.is_nil(ok)
    assert.equals(dir .. "/src/nope: No such file or directory", err)
    assert.equals("ENOENT", code)
    assert.same({ "src" }, assert(fs.list(dir)))
    ok, err, code = archive.create(dir .. "/no/such/dir/a.tgz", dir .. "/src", { "top.txt" })
    assert.is_nil(ok)
    assert.equals("ENOENT", code)
  end)

  it("raises for absolute paths and '..' components: a programming error", function()
    for _, p in ipairs({ "/etc/passwd", "..", "../x", "lib/../../x", "" }) do
      assert.has_error(function() archive.create(dir .. "/a.tgz", dir .. "/src", { p }) end)
    end
    assert.has_error(function() archive.create(dir .. "/a.tgz", dir .. "/src", { 1 }) end,
      "bad argument #3 to 'create' (paths[1] must be a string)")
    -- "..x" is a name, not a parent
    support.write(dir .. "/src/..x", "dots")
    assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "..x" }))
    assert.same({ "a.tgz", "src" }, assert(fs.list(dir)))
  end)

  describe("extract of a hostile archive", function()
    -- this run's own name, so a file another run left there never counts
    local evil = "/tmp/orch-archive-evil-" .. support.pid()
    -- everything the archive could reach outside out/: dir and its parent
    local function assert_nothing_outside()
      assert.same({ "evil.tgz", "evil.tgz.py", "out", "src" }, assert(fs.list(dir)))
      assert.is_nil(fs.lstat(evil))
    end

    it("refuses '..' entries", function()
      python_tar(dir .. "/evil.tgz", { { "ok.txt" }, { "../evil" }, { "a/../../evil2" } })
      local ok, err, code = archive.extract(dir .. "/evil.tgz", dir .. "/out")
      assert.is_nil(ok)
      assert.equals(dir .. "/evil.tgz: ../evil: Path contains '..'", err)
      assert.equals("EARCHIVE", code)
      assert.same({ "ok.txt" }, assert(fs.list(dir .. "/out")))
      assert_nothing_outside()
    end)

    it("refuses absolute paths and hard links to them", function()
      for _, entries in ipairs({ { { evil } },
                                 { { "h", type = "hardlink", target = evil } },
                                 { { "h", type = "hardlink", target = "../src/top.txt" } } }) do
        python_tar(dir .. "/evil.tgz", entries)
        local ok, _, code = archive.extract(dir .. "/evil.tgz", dir .. "/out")
        assert.is_nil(ok)
        assert.equals("EARCHIVE", code)
        assert_nothing_outside()
      end
      assert.equals("top\n", support.read(dir .. "/src/top.txt"))
    end)

    it("refuses to write or hard-link through a symlink an entry made", function()
      local esc = { "esc", type = "symlink", target = dir .. "/src" }
      for _, entries in ipairs({ { esc, { "esc/top.txt" } },
                                 { esc, { "h", type = "hardlink", target = "esc/top.txt" }, { "h" } } }) do
        python_tar(dir .. "/evil.tgz", entries)
        local ok, err, code = archive.extract(dir .. "/evil.tgz", dir .. "/out")
        assert.is_nil(ok)
        assert.equals(dir .. "/evil.tgz: Cannot extract through symlink " .. dir .. "/out/esc/top.txt", err)
        assert.equals("EARCHIVE", code)
        assert.equals("top\n", support.read(dir .. "/src/top.txt"))
        assert_nothing_outside()
        support.remove_tree(dir .. "/out")
        assert(fs.mkdir(dir .. "/out"))
      end
    end)
  end)

  it("fails with EARCHIVE on corrupt or foreign input, with ENOENT on a missing one", function()
    assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "lib" }))
    local whole = support.read(dir .. "/a.tgz")
    support.write(dir .. "/cut.tgz", whole:sub(1, #whole // 2))
    support.write(dir .. "/text", ("not an archive\n"):rep(100))
    for _, name in ipairs({ "cut.tgz", "text" }) do
      local ok, err, code = archive.extract(dir .. "/" .. name, dir .. "/out")
      assert.is_nil(ok)
      assert.equals("EARCHIVE", code)
      assert.equals(1, err:find(dir .. "/" .. name .. ": ", 1, true))
      ok, err, code = archive.list(dir .. "/" .. name)
      assert.is_nil(ok)
      assert.equals("EARCHIVE", code)
    end
    assert.same({ nil, dir .. "/text: Unrecognized archive format", "EARCHIVE" },
                { archive.extract(dir .. "/text", dir .. "/never") })
    assert.is_nil(fs.lstat(dir .. "/never"))
    assert.same({ nil, dir .. "/gone.tgz: No such file or directory", "ENOENT" },
                { archive.list(dir .. "/gone.tgz") })
  end)

  it("extracts into a dest_dir whose parent is a symlink", function()
    assert(fs.mkdir(dir .. "/real"))
    assert(fs.symlink("real", dir .. "/via"))
    assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "lib" }))
    assert(archive.extract(dir .. "/a.tgz", dir .. "/via/out"))
    assert.equals("#!/bin/sh\necho run\n", support.read(dir .. "/real/out/lib/run.sh"))
  end)

  -- In a child orch (the same build: under ASan it checks for leaks at exit)
  -- with one pool thread, so the list queued behind the abandoned create
  -- ends only once that create's after_work has run and freed it.
  it("frees an abandoned wait's request and leaves no file", function()
    local res = support.orch("-e", ([[
      local archive = require("orch.core.archive")
      local t = require("orch.core.loop").spawn(function()
        local ok, err = pcall(table.sort, { 2, 1 }, function()
          return archive.create("$D/a.tgz", "$D/src", { "lib", "top.txt" })
        end)
        print(ok, err)
        print(archive.list("$D/missing.tgz"))
      end)
      print(t:wait())
    ]]):gsub("%$D", dir), { env = { UV_THREADPOOL_SIZE = "1" } })
    assert.equals("", res.stderr)
    assert.matches("^false\t.*cannot wait here", res.stdout)
    assert.matches("missing.tgz: No such file or directory\tENOENT\ntrue\n", res.stdout, 1, true)
    assert.same({ "src" }, assert(fs.list(dir)))
  end)

  it("runs in a task on the threadpool while another task keeps running", function()
    -- 8 MiB that gzip can't shrink: long enough for the other task to tick
    sh("head -c 8388608 /dev/urandom > " .. dir .. "/src/lib/big")
    local ticks, done = 0, false
    local ticker = loop.spawn(function()
      while not done do ticks = ticks + 1; loop.sleep(0.001) end
    end)
    local worker = loop.spawn(function()
      local before = ticks
      local c = assert(archive.create(dir .. "/a.tgz", dir .. "/src", { "lib" }))
      local during = ticks - before
      local x = assert(archive.extract(dir .. "/a.tgz", dir .. "/out"))
      local l = assert(archive.list(dir .. "/a.tgz"))
      done = true
      return c.bytes, x.bytes, #l, during
    end)
    local ok, cbytes, xbytes, n, during = worker:wait()
    assert.is_true(ok, cbytes)
    assert(ticker:wait())
    assert.equals(8388608 + 19 + 12000, cbytes)
    assert.equals(cbytes, xbytes)
    assert.equals(7, n)
    assert.is_true(during > 0, "the ticker never ran while create worked")
    assert.equals(fs.sha256(dir .. "/src/lib/big"), fs.sha256(dir .. "/out/lib/big"))
  end)
end)
