/*
** sftp.c: file operations on an SSH session's SFTP channel: no remote
** process per operation, which is most of what makes a resource cheap. The
** channel serves one request at a time (libssh2 keeps per-request state),
** so operations from concurrent tasks take turns.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ssh.h"

#define CHUNK 65536

int orch_ssh_sftp_acquire (ssh_op *o) {
  ssh_session *s = o->sess;
  int bad = orch_ssh_unusable(s, SSH_SFTP_BROKEN);
  if (bad) { o->err = bad; return -1; }
  if (s->sftp_owner && s->sftp_owner != o) return 0;
  s->sftp_owner = o;
  if (s->sftp == NULL) {
    s->sftp = libssh2_sftp_init(s->s);
    if (s->sftp == NULL) {
      int rc = libssh2_session_last_errno(s->s);
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      o->err = rc;
      s->sftp_owner = NULL;
      return -1;
    }
  }
  return 1;
}

/* The common prologue: OP_AGAIN / OP_FAIL, or 0 to go on. */
#define ACQUIRE(o) do { \
    int a_ = orch_ssh_sftp_acquire(o); \
    if (a_ <= 0) return a_ < 0 ? OP_FAIL : OP_AGAIN; \
  } while (0)

/* A libssh2 result: again, or failed (recording the SFTP status), or ok. */
static int sftp_check (ssh_op *o, long rc) {
  if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
  if (rc < 0) {
    o->err = (int)rc;
    if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && o->sess->sftp)
      o->sftp_err = (int)libssh2_sftp_last_error(o->sess->sftp);
    return OP_FAIL;
  }
  return OP_DONE;
}

static const char *sftp_code (int st) {
  switch (st) {
    case LIBSSH2_FX_NO_SUCH_FILE: case LIBSSH2_FX_NO_SUCH_PATH: return "ENOENT";
    case LIBSSH2_FX_PERMISSION_DENIED: return "EACCES";
    case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "EEXIST";
    case LIBSSH2_FX_DIR_NOT_EMPTY: return "ENOTEMPTY";
    case LIBSSH2_FX_NOT_A_DIRECTORY: return "ENOTDIR";
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: case LIBSSH2_FX_QUOTA_EXCEEDED: return "ENOSPC";
    case LIBSSH2_FX_WRITE_PROTECT: return "EROFS";
    default: return "EFAILURE";
  }
}

static const char *sftp_message (int st) {
  switch (st) {
    case LIBSSH2_FX_NO_SUCH_FILE: case LIBSSH2_FX_NO_SUCH_PATH: return "No such file or directory";
    case LIBSSH2_FX_PERMISSION_DENIED: return "Permission denied";
    case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "File exists";
    case LIBSSH2_FX_DIR_NOT_EMPTY: return "Directory not empty";
    case LIBSSH2_FX_NOT_A_DIRECTORY: return "Not a directory";
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "No space left on device";
    default: return "failed (the server gives no reason over SFTP)";
  }
}

/* An open that gave no handle: again, or failed with the SFTP status. */
static int sftp_open_failed (ssh_op *o) {
  if (sftp_check(o, libssh2_session_last_errno(o->sess->s)) == OP_AGAIN) return OP_AGAIN;
  if (o->err != LIBSSH2_ERROR_SFTP_PROTOCOL) {
    o->err = LIBSSH2_ERROR_SFTP_PROTOCOL;
    o->sftp_err = (int)libssh2_sftp_last_error(o->sess->sftp);
  }
  return OP_FAIL;
}

/* nil, "host: path: reason", CODE for a failed SFTP op on path a */
static int sftp_fail (lua_State *L, ssh_op *o) {
  int n;
  if (o->err == LIBSSH2_ERROR_SFTP_PROTOCOL) {
    n = orch_failmsg(L, sftp_code(o->sftp_err), "%s: %s: %s", o->sess->label, o->a,
                     sftp_message(o->sftp_err));
  } else {
    n = orch_ssh_op_fail(L, o, o->a);
  }
  orch_ssh_op_free(o);
  return n;
}

/* [path..] -> [path.., op]: an SFTP op on the session at 1, path at 2 */
static ssh_op *sftp_new_op (lua_State *L, ssh_step step) {
  ssh_session *s = orch_ssh_check(L, 1);
  ssh_op *o = orch_ssh_op_new(L, s, step);
  o->sftp = 1;
  o->a = luaL_checkstring(L, 2);
  s->sftp_ops++;
  return o;
}


/* ---- stat ---- */

static int sftp_step_stat (ssh_op *o) {
  ACQUIRE(o);
  return sftp_check(o, libssh2_sftp_stat_ex(o->sess->sftp, o->a, (unsigned int)strlen(o->a),
                                       (int)o->flags, &o->attrs));
}

static const char *sftp_type_of (unsigned long perm) {
  switch (perm & LIBSSH2_SFTP_S_IFMT) {
    case LIBSSH2_SFTP_S_IFREG: return "file";
    case LIBSSH2_SFTP_S_IFDIR: return "directory";
    case LIBSSH2_SFTP_S_IFLNK: return "link";
    case LIBSSH2_SFTP_S_IFIFO: return "fifo";
    case LIBSSH2_SFTP_S_IFSOCK: return "socket";
    case LIBSSH2_SFTP_S_IFCHR: return "char";
    case LIBSSH2_SFTP_S_IFBLK: return "block";
    default: return "unknown";
  }
}

static int sftp_stated (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  LIBSSH2_SFTP_ATTRIBUTES *at = &o->attrs;
  if (o->status != OP_DONE) {
    if (o->err == LIBSSH2_ERROR_SFTP_PROTOCOL &&
        (o->sftp_err == LIBSSH2_FX_NO_SUCH_FILE || o->sftp_err == LIBSSH2_FX_NO_SUCH_PATH)) {
      lua_pushnil(L);   /* absent is an answer: nil alone */
      return 1;
    }
    return sftp_fail(L, o);
  }
  lua_createtable(L, 0, 6);
  lua_pushstring(L, sftp_type_of(at->permissions));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(at->permissions & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)at->uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)at->gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)at->filesize);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)at->mtime);
  lua_setfield(L, -2, "mtime");
  return 1;
}

/* sess:stat(path [, lstat]) -> { type, mode, uid, gid, size, mtime } | nil (absent) | fail */
static int sftp_stat (lua_State *L) {
  ssh_op *o;
  int link = lua_toboolean(L, 3);
  lua_settop(L, 2);
  o = sftp_new_op(L, sftp_step_stat);
  o->flags = link ? LIBSSH2_SFTP_LSTAT : LIBSSH2_SFTP_STAT;
  return orch_ssh_op_run(L, o, sftp_stated);
}


/* ---- whole files ---- */

enum { F_OPEN, F_IO, F_CLOSE };

static int sftp_step_read (ssh_op *o) {
  char buf[CHUNK];
  ACQUIRE(o);
  for (;;) switch (o->phase) {
    case F_OPEN:
      o->fh = libssh2_sftp_open_ex(o->sess->sftp, o->a, (unsigned int)strlen(o->a),
                                   LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE);
      if (o->fh == NULL) return sftp_open_failed(o);
      o->phase = F_IO;
      o->moved = 1;
      break;
    case F_IO: {
      ssize_t n = libssh2_sftp_read(o->fh, buf, sizeof buf);
      if (n == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      if (n < 0) { sftp_check(o, n); o->phase = F_CLOSE; o->code = 1; break; }
      if (n == 0) { o->phase = F_CLOSE; break; }
      o->moved = 1;
      if (!orch_ssh_buf_add(&o->out, buf, (size_t)n)) { o->err = LIBSSH2_ERROR_ALLOC; o->phase = F_CLOSE; o->code = 1; }
      break;
    }
    case F_CLOSE: {
      int rc = libssh2_sftp_close_handle(o->fh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      o->fh = NULL;   /* freed, whatever rc says */
      if (rc < 0 && !o->code) { sftp_check(o, rc); o->code = 1; }
      return o->code ? OP_FAIL : OP_DONE;   /* code flags an earlier failure */
    }
  }
}

static int sftp_read_done (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  if (o->status != OP_DONE) return sftp_fail(L, o);
  lua_pushlstring(L, o->out.data ? o->out.data : "", o->out.len);
  orch_ssh_op_free(o);
  return 1;
}

/* sess:read(path) -> content | fail */
static int sftp_read (lua_State *L) {
  lua_settop(L, 2);
  return orch_ssh_op_run(L, sftp_new_op(L, sftp_step_read), sftp_read_done);
}

static int sftp_step_write (ssh_op *o) {
  ACQUIRE(o);
  for (;;) switch (o->phase) {
    case F_OPEN:
      o->fh = libssh2_sftp_open_ex(o->sess->sftp, o->a, (unsigned int)strlen(o->a),
                                   o->flags, o->mode, LIBSSH2_SFTP_OPENFILE);
      if (o->fh == NULL) return sftp_open_failed(o);
      o->phase = F_IO;
      o->moved = 1;
      break;
    case F_IO:
      while (o->off < o->len) {
        ssize_t n = libssh2_sftp_write(o->fh, o->data + o->off, o->len - o->off);
        if (n == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
        if (n < 0) { sftp_check(o, n); o->phase = F_CLOSE; o->code = 1; break; }
        o->off += (size_t)n;
        o->moved = 1;
      }
      if (o->phase == F_IO) o->phase = F_CLOSE;
      break;
    case F_CLOSE: {
      int rc = libssh2_sftp_close_handle(o->fh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      o->fh = NULL;   /* freed, whatever rc says */
      if (rc < 0 && !o->code) { sftp_check(o, rc); o->code = 1; }
      return o->code ? OP_FAIL : OP_DONE;   /* code flags an earlier failure */
    }
  }
}

static int sftp_done_true (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  if (o->status != OP_DONE) return sftp_fail(L, o);
  orch_ssh_op_free(o);
  lua_pushboolean(L, 1);
  return 1;
}

/*
** sess:write(path, data, mode [, exclusive]) -> true | fail. Creates or
** truncates (with exclusive, fails if path exists): callers write a temp
** name and rename it into place.
*/
static int sftp_write (lua_State *L) {
  ssh_op *o;
  luaL_checkstring(L, 3);
  lua_settop(L, 5);
  o = sftp_new_op(L, sftp_step_write);
  o->data = lua_tolstring(L, 3, &o->len);
  o->mode = (long)luaL_optinteger(L, 4, 0644);
  o->flags = LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC;
  if (lua_toboolean(L, 5)) o->flags |= LIBSSH2_FXF_EXCL;
  return orch_ssh_op_run(L, o, sftp_done_true);
}


/* ---- small requests ---- */

enum { REQ_SETSTAT, REQ_RENAME, REQ_UNLINK, REQ_MKDIR, REQ_RMDIR, REQ_SYMLINK,
       REQ_READLINK, REQ_REALPATH };

static int sftp_step_request (ssh_op *o) {
  LIBSSH2_SFTP *sftp;
  unsigned int alen;
  long rc = 0;
  ACQUIRE(o);
  sftp = o->sess->sftp;
  alen = (unsigned int)strlen(o->a);
  switch (o->code) {
    case REQ_SETSTAT:
      rc = libssh2_sftp_stat_ex(sftp, o->a, alen, LIBSSH2_SFTP_SETSTAT, &o->attrs);
      break;
    case REQ_RENAME:
      rc = libssh2_sftp_rename_ex(sftp, o->a, alen, o->b, (unsigned int)strlen(o->b),
                                  LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
                                  LIBSSH2_SFTP_RENAME_NATIVE);
      break;
    case REQ_UNLINK: rc = libssh2_sftp_unlink_ex(sftp, o->a, alen); break;
    case REQ_MKDIR: rc = libssh2_sftp_mkdir_ex(sftp, o->a, alen, o->mode); break;
    case REQ_RMDIR: rc = libssh2_sftp_rmdir_ex(sftp, o->a, alen); break;
    /* OpenSSH takes SYMLINK's two paths in the opposite order to the
    ** draft (its sftp-server.c says so); libssh2 passes them through. */
    case REQ_SYMLINK:
      rc = libssh2_sftp_symlink_ex(sftp, o->b, (unsigned int)strlen(o->b), (char *)o->a, alen,
                                   LIBSSH2_SFTP_SYMLINK);
      break;
    case REQ_READLINK: case REQ_REALPATH: {
      char buf[4096];
      rc = libssh2_sftp_symlink_ex(sftp, o->a, alen, buf, sizeof buf,
                                   o->code == REQ_READLINK ? LIBSSH2_SFTP_READLINK : LIBSSH2_SFTP_REALPATH);
      if (rc > 0) {
        o->out.len = 0;
        rc = orch_ssh_buf_add(&o->out, buf, (size_t)rc) ? 0 : LIBSSH2_ERROR_ALLOC;
      }
      break;
    }
  }
  return sftp_check(o, rc);
}

static int sftp_request_done (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  if (o->status != OP_DONE) return sftp_fail(L, o);
  if (o->code == REQ_READLINK || o->code == REQ_REALPATH)
    lua_pushlstring(L, o->out.data ? o->out.data : "", o->out.len);
  else
    lua_pushboolean(L, 1);
  orch_ssh_op_free(o);
  return 1;
}

static int sftp_request (lua_State *L, int kind, int nargs) {
  ssh_op *o;
  lua_settop(L, nargs);
  o = sftp_new_op(L, sftp_step_request);
  o->code = kind;
  return orch_ssh_op_run(L, o, sftp_request_done);
}

/* sess:setstat(path, { mode =, uid =, gid = }) -> true | fail */
static int sftp_setstat (lua_State *L) {
  ssh_op *o;
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  o = sftp_new_op(L, sftp_step_request);                    /* [s, path, t, op] */
  o->code = REQ_SETSTAT;
  lua_getfield(L, 3, "mode");
  if (!lua_isnil(L, -1)) {
    o->attrs.flags |= LIBSSH2_SFTP_ATTR_PERMISSIONS;
    o->attrs.permissions = (unsigned long)luaL_checkinteger(L, -1);
  }
  lua_getfield(L, 3, "uid");
  lua_getfield(L, 3, "gid");
  if (!lua_isnil(L, -2) || !lua_isnil(L, -1)) {
    /* SFTP sets both or neither: the caller gives both */
    o->attrs.flags |= LIBSSH2_SFTP_ATTR_UIDGID;
    o->attrs.uid = (unsigned long)luaL_checkinteger(L, -2);
    o->attrs.gid = (unsigned long)luaL_checkinteger(L, -1);
  }
  lua_pop(L, 3);
  return orch_ssh_op_run(L, o, sftp_request_done);
}

/* sess:rename(from, to) -> true | fail (OpenSSH refuses if `to` exists) */
static int sftp_rename (lua_State *L) {
  ssh_op *o;
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  o = sftp_new_op(L, sftp_step_request);
  o->code = REQ_RENAME;
  o->b = lua_tostring(L, 3);
  return orch_ssh_op_run(L, o, sftp_request_done);
}

static int sftp_unlink (lua_State *L) { return sftp_request(L, REQ_UNLINK, 2); }
static int sftp_rmdir (lua_State *L) { return sftp_request(L, REQ_RMDIR, 2); }
static int sftp_readlink (lua_State *L) { return sftp_request(L, REQ_READLINK, 2); }
static int sftp_realpath (lua_State *L) { return sftp_request(L, REQ_REALPATH, 2); }

/* sess:mkdir(path [, mode]) -> true | fail */
static int sftp_mkdir (lua_State *L) {
  ssh_op *o;
  lua_Integer mode = luaL_optinteger(L, 3, 0755);
  lua_settop(L, 2);
  o = sftp_new_op(L, sftp_step_request);
  o->code = REQ_MKDIR;
  o->mode = (long)mode;
  return orch_ssh_op_run(L, o, sftp_request_done);
}

/* sess:symlink(target, path) -> true | fail */
static int sftp_symlink (lua_State *L) {
  ssh_op *o;
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  lua_insert(L, 2);                               /* [s, path, target] */
  o = sftp_new_op(L, sftp_step_request);
  o->code = REQ_SYMLINK;
  o->b = lua_tostring(L, 3);
  return orch_ssh_op_run(L, o, sftp_request_done);
}


/* ---- directories ---- */

static int sftp_step_list (ssh_op *o) {
  char name[1024];
  ACQUIRE(o);
  for (;;) switch (o->phase) {
    case F_OPEN:
      o->fh = libssh2_sftp_open_ex(o->sess->sftp, o->a, (unsigned int)strlen(o->a), 0, 0,
                                   LIBSSH2_SFTP_OPENDIR);
      if (o->fh == NULL) return sftp_open_failed(o);
      o->phase = F_IO;
      break;
    case F_IO: {
      LIBSSH2_SFTP_ATTRIBUTES at;
      int n = libssh2_sftp_readdir_ex(o->fh, name, sizeof name, NULL, 0, &at);
      if (n == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      if (n <= 0) { if (n < 0) { sftp_check(o, n); o->code = 1; } o->phase = F_CLOSE; break; }
      o->moved = 1;
      if (!(n == 1 && name[0] == '.') && !(n == 2 && name[0] == '.' && name[1] == '.')) {
        const char *type = sftp_type_of(at.permissions);
        if (!orch_ssh_buf_add(&o->out, name, (size_t)n) || !orch_ssh_buf_add(&o->out, "", 1)  /* NUL-separated */
            || !orch_ssh_buf_add(&o->err_out, type, strlen(type) + 1)) {
          o->err = LIBSSH2_ERROR_ALLOC;
          o->code = 1;
          o->phase = F_CLOSE;
        }
      }
      break;
    }
    case F_CLOSE: {
      int rc = libssh2_sftp_closedir(o->fh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      o->fh = NULL;   /* freed, whatever rc says */
      if (rc < 0 && !o->code) { sftp_check(o, rc); o->code = 1; }
      return o->code ? OP_FAIL : OP_DONE;
    }
  }
}

static int sftp_listed (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  size_t p = 0, q = 0;
  int i = 1;
  if (o->status != OP_DONE) return sftp_fail(L, o);
  lua_newtable(L);
  while (p < o->out.len) {
    size_t l = strlen(o->out.data + p), lt = strlen(o->err_out.data + q);
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, o->out.data + p, l);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, o->err_out.data + q, lt);
    lua_setfield(L, -2, "type");
    lua_rawseti(L, -2, i++);
    p += l + 1;
    q += lt + 1;
  }
  orch_ssh_op_free(o);
  return 1;
}

/* sess:list(dir) -> { { name, type }, ... } (unsorted, without . and ..) */
static int sftp_list (lua_State *L) {
  lua_settop(L, 2);
  return orch_ssh_op_run(L, sftp_new_op(L, sftp_step_list), sftp_listed);
}

static const luaL_Reg sftp_methods[] = {
  {"stat", sftp_stat}, {"read", sftp_read}, {"write", sftp_write}, {"setstat", sftp_setstat},
  {"rename", sftp_rename}, {"unlink", sftp_unlink}, {"mkdir", sftp_mkdir}, {"rmdir", sftp_rmdir},
  {"symlink", sftp_symlink}, {"readlink", sftp_readlink}, {"realpath", sftp_realpath},
  {"list", sftp_list}, {NULL, NULL}
};

/* [methods] -> [methods]: adds the SFTP methods to the session's */
void orch_ssh_sftp_methods (lua_State *L) {
  luaL_setfuncs(L, sftp_methods, 0);
}
