-- playbooks/providers/archive.lua: a worked example of a provider (see
-- "Writing a provider" in the README). The type `archive` unpacks a .tar.gz
-- from the control machine into a directory on the host, like Ansible's
-- unarchive, and remembers which archive it unpacked so a second run does
-- nothing. It reaches the host only through ctx.host, so the same code
-- works on the local machine and over SSH.
local fs = require("orch.core.fs")

-- The stamp file records the sha256 of the archive that was unpacked.
local STAMP = ".orch-archive"

return {
  archive = {
    -- Attributes, checked by the engine before any of this runs: a typo
    -- or a wrong type is an error naming the playbook's file:line.
    schema = {
      path  = { type = "string", required = true },  -- where to unpack
      src   = { type = "string", required = true },  -- beside the playbook, or in files/
      owner = { type = "string" },
      state = { type = "string", enum = { "present", "absent" }, default = "present" },
    },

    -- The current state, or nil when absent. One round trip; changes nothing.
    read = function(ctx, want)
      local st = ctx.host:stat(want.path)
      if not st then return nil end
      local stamp = ctx.host:read(want.path .. "/" .. STAMP)
      return { path = want.path, sha256 = stamp and stamp:match("^%x+") }
    end,

    -- What differs ({ attr, from, to } each); empty when converged. The
    -- engine shows these with --diff and stops here in --check.
    diff = function(ctx, want, have)
      local wanted = assert(fs.sha256(ctx.source(want.src, "files")))
      if have and have.sha256 == wanted then return {} end
      return { { attr = "src", from = have and have.sha256 and have.sha256:sub(1, 12), to = wanted:sub(1, 12) } }
    end,

    -- Make it so. Raise on failure: the engine reports it against the host.
    apply = function(ctx, want)
      local h = ctx.host
      local source = ctx.source(want.src, "files")
      local tmp, cleanup = assert(h:temp_file(assert(fs.read(source))))
      local ok, err = pcall(function()
        assert(h:mkdir(want.path, "0755"))
        h:exec({ "tar", "-xzf", tmp, "-C", want.path, "--no-same-owner" })
        if want.owner then h:exec({ "chown", "-R", "--", want.owner, want.path }) end
        assert(h:write(want.path .. "/" .. STAMP, assert(fs.sha256(source)) .. "\n"))
      end)
      cleanup()
      if not ok then error(err, 0) end
    end,

    -- state = "absent" with something there: the engine calls delete.
    delete = function(ctx, have)
      assert(ctx.host:remove(have.path, { recursive = true }))
    end,
  },
}
