/*
** fs.c: orch.core.fs, local file primitives (stat, atomic write, mkdir -p,
** ownership, trees, hashing, locks).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>


#include "orch.h"

#define LOCK_MT  "orch.fs.lock"
#define GUARD_MT "orch.fs.guard"

/*
** What a function holds while it pushes Lua values, which may raise (out of
** memory): __gc releases it then. Pushed before it is filled.
*/
struct guard { int fd; int globbed; glob_t gl; FTS *fts; };

/* Idempotent: the function that filled it calls it, then __gc. */
static void guard_close (struct guard *g) {
  if (g->fd >= 0) { close(g->fd); g->fd = -1; }
  if (g->globbed) { globfree(&g->gl); g->globbed = 0; }
  if (g->fts) { fts_close(g->fts); g->fts = NULL; }
}

static int guard_gc (lua_State *L) {
  guard_close(luaL_checkudata(L, 1, GUARD_MT));
  return 0;
}

/* [] -> [guard] */
static struct guard *fs_guard (lua_State *L) {
  struct guard *g = lua_newuserdatauv(L, sizeof *g, 0);
  memset(g, 0, sizeof *g);
  g->fd = -1;
  luaL_setmetatable(L, GUARD_MT);
  return g;
}

/* The fail tuple, then the guard released (subject may point into it). */
static int fs_gfail (lua_State *L, struct guard *g, const char *subject, int err) {
  orch_fail(L, subject, err);
  guard_close(g);
  return 3;
}

/* ---- arguments ---- */

/* Reject unknown keys in an options table: a typo must not pass silently. */
static void fs_checkopts (lua_State *L, int arg, const char *const names[]) {
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i;
    lua_pop(L, 1);
    for (i = 0; names[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), names[i]) == 0)
        break;
    if (!names[i])
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'",
                                            luaL_tolstring(L, -1, NULL)));
  }
}

/* A mode at stack idx: integer, or octal string ("0644", "755"). */
static mode_t fs_mode (lua_State *L, int idx, int arg) {
  lua_Integer m = -1;
  if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx))
    m = lua_tointeger(L, idx);
  else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    char *end;
    if (*s >= '0' && *s <= '7') m = strtol(s, &end, 8);
    if (*s < '0' || *s > '7' || *end != '\0') m = -1;
  }
  if (m < 0 || m > 07777)
    luaL_argerror(L, arg, lua_pushfstring(L, "bad mode '%s' (octal string or "
                  "integer 0..07777 expected)", luaL_tolstring(L, idx, NULL)));
  return (mode_t)m;
}

/*
** A user (or group) at stack idx: nil (-1, unchanged), an id, or a name.
** An unknown name is the caller's data, not a bug: pushes the fail tuple
** and returns 3; else returns 0.
*/
static int fs_id (lua_State *L, int idx, int arg, int group, const char *path,
                  long *id) {
  const char *name;
  char *end;
  *id = -1;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: case LUA_TNONE: return 0;
    case LUA_TNUMBER:
      *id = lua_isinteger(L, idx) ? (long)lua_tointeger(L, idx) : -1;
      luaL_argcheck(L, *id >= 0, arg, group ? "bad group id" : "bad user id");
      return 0;
    case LUA_TSTRING: break;
    default:
      return luaL_typeerror(L, arg, group ? "group name or id" : "user name or id");
  }
  name = lua_tostring(L, idx);
  *id = strtol(name, &end, 10);
  if (*name >= '0' && *name <= '9' && *end == '\0') return 0;
  if (group) {
    struct group *gr = getgrnam(name);
    if (gr) { *id = (long)gr->gr_gid; return 0; }
  } else {
    struct passwd *pw = getpwnam(name);
    if (pw) { *id = (long)pw->pw_uid; return 0; }
  }
  return orch_failmsg(L, group ? "ENOGROUP" : "ENOUSER", "%s: no such %s '%s'",
                      path, group ? "group" : "user", name);
}

/* ---- small helpers ---- */

/* luaL_fileresult's shape: true, or the fail tuple naming the subject. */
static int fs_result (lua_State *L, int ok, const char *subject) {
  if (!ok) return orch_fail(L, subject, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static const char *fs_typename (mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "link";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  return "unknown";
}

/* Write all of data at offset; 0 or errno. */
static int fs_writeall (int fd, const char *data, size_t len) {
  off_t off = 0;
  while ((size_t)off < len) {
    ssize_t n = pwrite(fd, data + off, len - (size_t)off, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    off += n;
  }
  return 0;
}

/* ---- stat ---- */

static void fs_setint (lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/*
** getpwuid/getgrgid reread /etc/passwd and /etc/group on every call, which
** dominated stat-heavy runs (1,000 files: 4,000 opens and reads). Names
** found are cached by id; a miss is not, so a user created mid-run is seen.
*/
#define NAME_CACHE 64
struct name_entry { long id; char name[64]; };
static struct name_entry user_cache[NAME_CACHE], group_cache[NAME_CACHE];

static const char *fs_idname (struct name_entry *cache, long id, int group) {
  struct name_entry *e = &cache[(unsigned long)id % NAME_CACHE];
  const char *name = NULL;
  if (e->name[0] && e->id == id) return e->name;
  if (group) { struct group *gr = getgrgid((gid_t)id); if (gr) name = gr->gr_name; }
  else { struct passwd *pw = getpwuid((uid_t)id); if (pw) name = pw->pw_name; }
  if (name == NULL) return NULL;
  if (strlen(name) < sizeof e->name) {
    e->id = id;
    strcpy(e->name, name);
  }
  return name;
}

static int fs_dostat (lua_State *L, int link) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  const char *name;
  if ((link ? lstat(path, &st) : stat(path, &st)) != 0)
    return orch_fail(L, path, errno);
  lua_createtable(L, 0, 13);                   /* [t] */
  lua_pushstring(L, fs_typename(st.st_mode));
  lua_setfield(L, -2, "type");
  fs_setint(L, "mode", st.st_mode & 07777);
  fs_setint(L, "uid", st.st_uid);
  fs_setint(L, "gid", st.st_gid);
  fs_setint(L, "size", st.st_size);
  fs_setint(L, "nlink", (lua_Integer)st.st_nlink);
  fs_setint(L, "ino", (lua_Integer)st.st_ino);
  fs_setint(L, "dev", (lua_Integer)st.st_dev);
  lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  /* an id with no name (a container's files) is normal: user stays nil */
  if ((name = fs_idname(user_cache, (long)st.st_uid, 0)) != NULL) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "user");
  }
  if ((name = fs_idname(group_cache, (long)st.st_gid, 1)) != NULL) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "group");
  }
  if (S_ISLNK(st.st_mode)) {
    char buf[PATH_MAX];  /* Linux caps a link's target at PATH_MAX */
    ssize_t n = readlink(path, buf, sizeof buf);
    if (n >= 0) {
      lua_pushlstring(L, buf, (size_t)n);
      lua_setfield(L, -2, "target");
    }
  }
  return 1;
}

static int fs_stat (lua_State *L) { return fs_dostat(L, 0); }
static int fs_lstat (lua_State *L) { return fs_dostat(L, 1); }

/* ---- whole files ---- */

static int fs_read (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct guard *g = fs_guard(L);               /* [guard] */
  struct stat st;
  luaL_Buffer b;
  size_t chunk;
  if ((g->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(g->fd, &st) != 0)
    return fs_gfail(L, g, path, errno);
  /* a regular file's size lets the first read take it all */
  chunk = S_ISREG(st.st_mode) && (size_t)st.st_size >= LUAL_BUFFERSIZE
          ? (size_t)st.st_size + 1 : LUAL_BUFFERSIZE;
  luaL_buffinit(L, &b);                        /* [guard, box?] */
  for (;;) {
    ssize_t n = read(g->fd, luaL_prepbuffsize(&b, chunk), chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fs_gfail(L, g, path, errno);
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    chunk = LUAL_BUFFERSIZE * 4;
  }
  luaL_pushresult(&b);                         /* [guard, data] */
  guard_close(g);
  return 1;
}

/* fsync the directory holding a renamed entry, so the rename survives a crash. */
static int fs_syncdir (const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  int fd, err = 0;
  if (!slash) strcpy(dir, ".");
  else if (slash == path) strcpy(dir, "/");
  else if ((size_t)(slash - path) >= sizeof dir) return ENAMETOOLONG;
  else { memcpy(dir, path, (size_t)(slash - path)); dir[slash - path] = '\0'; }
  if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) return errno;
  if (fsync(fd) != 0) err = errno;
  close(fd);
  return err;
}

static const char *const write_opts[] = {"mode", "owner", "group", NULL};

/*
** Atomic: readers see the old content or the new, never a mix. The temp file
** gets its mode and owner before the rename, so the new file is never visible
** with the wrong permissions. Replaces a symlink at path (callers resolve it
** first if they mean to follow it), keeping its target's mode like Ansible.
*/
static int fs_write (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len, dirlen, namelen;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *name = strrchr(path, '/');
  int has_mode = 0, fd, r, err = 0;
  long uid = -1, gid = -1;
  mode_t mode = 0;
  struct stat st, tst;
  int exists, chown_set;
  char tmp[PATH_MAX];
  if (!lua_isnoneornil(L, 3)) {
    fs_checkopts(L, 3, write_opts);
    if (lua_getfield(L, 3, "mode") != LUA_TNIL) { mode = fs_mode(L, -1, 3); has_mode = 1; }
    lua_getfield(L, 3, "owner");
    if ((r = fs_id(L, -1, 3, 0, path, &uid)) != 0) return r;
    lua_getfield(L, 3, "group");
    if ((r = fs_id(L, -1, 3, 1, path, &gid)) != 0) return r;
  }
  name = name ? name + 1 : path;
  dirlen = (size_t)(name - path);
  namelen = strlen(name);
  if (namelen == 0) return orch_fail(L, path, EISDIR);
  /* a long name is cut so the temp name still fits NAME_MAX */
  if (snprintf(tmp, sizeof tmp, "%.*s.%.*s.orch-XXXXXX", (int)dirlen, path,
               (int)(namelen > 200 ? 200 : namelen), name) >= (int)sizeof tmp)
    return orch_fail(L, path, ENAMETOOLONG);
  exists = stat(path, &st) == 0;
  if (!has_mode) {
    if (exists) mode = st.st_mode & 07777;
    else {  /* what open(O_CREAT, 0666) would give; mkstemp uses 0600 */
      mode_t mask = umask(0);
      umask(mask);
      mode = 0666 & ~mask;
    }
  }
  chown_set = uid >= 0 || gid >= 0;  /* asked for: failing to set it fails */
  if (exists && uid < 0) uid = (long)st.st_uid;
  if (exists && gid < 0) gid = (long)st.st_gid;
  if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) return orch_fail(L, path, errno);
  err = fs_writeall(fd, data, len);
  if (!err && fstat(fd, &tst) != 0) err = errno;
  /* chown before chmod: chown clears setuid/setgid bits. Keeping an owner
     we may not set is best effort, as in Ansible; an asked-for one is not. */
  if (!err && ((uid >= 0 && (uid_t)uid != tst.st_uid) ||
               (gid >= 0 && (gid_t)gid != tst.st_gid)) &&
      fchown(fd, (uid_t)uid, (gid_t)gid) != 0 && (chown_set || errno != EPERM))
    err = errno;
  if (!err && fchmod(fd, mode) != 0) err = errno;
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    return orch_fail(L, path, err);
  }
  /* the new content is in place; only a real I/O error is worth reporting
     (some filesystems refuse fsync on a directory with EINVAL) */
  if ((err = fs_syncdir(path)) == EIO) return orch_fail(L, path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- directories and entries ---- */

/*
** mkdir -p. Directories it creates get mode (after mkdir, so the umask can't
** narrow it), deepest first, once the whole chain exists: a mode without
** owner write must not stop us creating the next level.
*/
static int fs_mkdir (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int has_mode = !lua_isnoneornil(L, 2);
  mode_t mode = has_mode ? fs_mode(L, 2, 2) : 0;
  char buf[PATH_MAX];
  size_t len = strlen(path), i, first = 0;  /* first: end of the first made */
  int err = 0, made = 0;
  struct stat st;
  if (len >= sizeof buf) return orch_fail(L, path, ENAMETOOLONG);
  luaL_argcheck(L, len > 0, 1, "empty path");
  memcpy(buf, path, len + 1);
  while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
  for (i = 1; i <= len && !err; i++) {
    char c = buf[i];
    if (c != '/' && c != '\0') continue;
    if (buf[i - 1] == '/') continue;  /* "a//b" */
    buf[i] = '\0';
    made = 0;
    if (stat(buf, &st) == 0) {
      if (!S_ISDIR(st.st_mode)) err = c ? ENOTDIR : EEXIST;
    } else if (errno != ENOENT) err = errno;
    else if (mkdir(buf, has_mode ? 0700 : 0777) == 0) {
      made = 1;
      if (!first) first = i;
    } else if (errno != EEXIST) err = errno;
    else if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
      err = c ? ENOTDIR : EEXIST;  /* lost a race to a non-directory */
    buf[i] = c;
  }
  for (i = len; has_mode && first && i >= first; i--) {
    char c = buf[i];
    if (c != '/' && c != '\0') continue;
    buf[i] = '\0';
    if (chmod(buf, mode) != 0 && !err) err = errno;
    buf[i] = c;
  }
  if (err) return orch_fail(L, path, err);
  lua_pushboolean(L, made);
  return 1;
}

static int fs_chmod (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return fs_result(L, chmod(path, fs_mode(L, 2, 2)) == 0, path);
}

static int fs_chown (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  long uid, gid;
  int r;
  if ((r = fs_id(L, 2, 2, 0, path, &uid)) != 0 || (r = fs_id(L, 3, 3, 1, path, &gid)) != 0)
    return r;
  return fs_result(L, chown(path, (uid_t)uid, (gid_t)gid) == 0, path);
}

static int fs_symlink (lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  return fs_result(L, symlink(target, path) == 0, path);
}

static int fs_readlink (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n < 0) return orch_fail(L, path, errno);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int fs_rename (lua_State *L) {
  const char *from = luaL_checkstring(L, 1);
  const char *to = luaL_checkstring(L, 2);
  if (rename(from, to) != 0) {
    int err = errno;
    return orch_failmsg(L, orch_errname(err), "%s -> %s: %s", from, to, strerror(err));
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int fs_realpath (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (!realpath(path, buf)) return orch_fail(L, path, errno);
  lua_pushstring(L, buf);
  return 1;
}

static int fs_cwd (lua_State *L) {
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) return orch_fail(L, "getcwd", errno);
  lua_pushstring(L, buf);
  return 1;
}

static int fs_tmpdir (lua_State *L) {
  const char *prefix = luaL_optstring(L, 1, "orch-");
  const char *base = getenv("TMPDIR");
  size_t blen;
  char buf[PATH_MAX];
  luaL_argcheck(L, strchr(prefix, '/') == NULL, 1, "prefix must not contain '/'");
  if (!base || !*base) base = "/tmp";
  blen = strlen(base);
  while (blen > 1 && base[blen - 1] == '/') blen--;
  if (snprintf(buf, sizeof buf, "%.*s/%sXXXXXX", (int)blen, base, prefix) >= (int)sizeof buf)
    return orch_fail(L, base, ENAMETOOLONG);
  if (!mkdtemp(buf)) return orch_fail(L, buf, errno);
  lua_pushstring(L, buf);
  return 1;
}

/* ---- trees ---- */

/* Byte order, not the locale's: the same tree lists the same everywhere. */
static int fs_byname (const FTSENT **a, const FTSENT **b) {
  return strcmp((*a)->fts_name, (*b)->fts_name);
}

/*
** FTS_PHYSICAL: symlinks are entries, never followed, so a link to a
** directory outside the tree is neither listed into nor removed through.
** FTS_NOCHDIR: the process's cwd is shared with everything else.
** [] -> [guard]
*/
static struct guard *fs_fts (lua_State *L, const char *path, int opts) {
  char *argv[2];
  struct guard *g = fs_guard(L);
  argv[0] = (char *)path; argv[1] = NULL;
  g->fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR | opts, fs_byname);
  return g;
}

static const char *const remove_opts[] = {"recursive", NULL};

/* true: removed; false: nothing was there. */
static int fs_remove (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int recursive = 0;
  struct stat st;
  struct guard *g;
  FTSENT *e;
  if (!lua_isnoneornil(L, 2)) {
    fs_checkopts(L, 2, remove_opts);
    lua_getfield(L, 2, "recursive");
    recursive = lua_toboolean(L, -1);
  }
  if (lstat(path, &st) != 0) {
    if (errno != ENOENT) return orch_fail(L, path, errno);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!S_ISDIR(st.st_mode) ? unlink(path) == 0 : rmdir(path) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!S_ISDIR(st.st_mode) || !recursive || (errno != ENOTEMPTY && errno != EEXIST))
    return orch_fail(L, path, errno);
  if (!(g = fs_fts(L, path, 0))->fts) return orch_fail(L, path, errno);
  for (errno = 0; (e = fts_read(g->fts)) != NULL; errno = 0) {
    int err = 0;
    switch (e->fts_info) {
      case FTS_D: continue;  /* emptied first, removed at FTS_DP */
      case FTS_DP: if (rmdir(e->fts_accpath) != 0) err = errno; break;
      case FTS_DNR: case FTS_ERR: case FTS_NS: err = e->fts_errno; break;
      default: if (unlink(e->fts_accpath) != 0) err = errno; break;
    }
    if (err && err != ENOENT)  /* ENOENT: someone else removed it first */
      return fs_gfail(L, g, e->fts_path, err);
  }
  if (errno) return fs_gfail(L, g, path, errno);
  guard_close(g);
  lua_pushboolean(L, 1);
  return 1;
}

/*
** list: names in dir; walk: { path = relative, type } for the whole tree,
** depth-first, parents first, sorted within a directory. A symlink given as
** the root is followed (FTS_COMFOLLOW, like find -H); links inside are not.
*/
static int fs_tree (lua_State *L, int walk) {
  const char *path = luaL_checkstring(L, 1);
  struct guard *g = fs_fts(L, path, FTS_COMFOLLOW);  /* [guard] */
  FTSENT *e;
  size_t rootlen = 0;
  lua_Integer n = 0;
  if (!g->fts) return orch_fail(L, path, errno);
  lua_newtable(L);                             /* [guard, t] */
  for (errno = 0; (e = fts_read(g->fts)) != NULL; errno = 0) {
    if (e->fts_info == FTS_DP) continue;
    if (e->fts_level == 0) {
      if (e->fts_info == FTS_NS || e->fts_info == FTS_ERR)
        return fs_gfail(L, g, path, e->fts_errno);
      if (e->fts_info != FTS_D) return fs_gfail(L, g, path, ENOTDIR);
      /* children are root + "/" + name; a trailing slash is not doubled */
      rootlen = e->fts_pathlen;
      if (e->fts_path[rootlen - 1] == '/') rootlen--;
      continue;
    }
    if (e->fts_info == FTS_DNR || e->fts_info == FTS_ERR ||
        (e->fts_info == FTS_NS && e->fts_errno != ENOENT))
      return fs_gfail(L, g, e->fts_path, e->fts_errno);
    if (e->fts_info == FTS_NS) continue;       /* vanished while we walked */
    if (!walk) {
      if (e->fts_info == FTS_D) fts_set(g->fts, e, FTS_SKIP);
      lua_pushstring(L, e->fts_name);
    } else {
      lua_createtable(L, 0, 2);
      lua_pushstring(L, e->fts_path + rootlen + 1);
      lua_setfield(L, -2, "path");
      lua_pushstring(L, fs_typename(e->fts_statp->st_mode));
      lua_setfield(L, -2, "type");
    }
    lua_rawseti(L, -2, ++n);
  }
  if (errno) return fs_gfail(L, g, path, errno);
  guard_close(g);
  return 1;
}

static int fs_list (lua_State *L) { return fs_tree(L, 0); }
static int fs_walk (lua_State *L) { return fs_tree(L, 1); }

/* Sorted matches (glob(3) sorts); no match is an empty list, not a failure. */
static int fs_glob (lua_State *L) {
  const char *pattern = luaL_checkstring(L, 1);
  struct guard *g = fs_guard(L);               /* [guard] */
  int r = glob(pattern, 0, NULL, &g->gl);
  size_t i;
  g->globbed = 1;
  if (r == GLOB_NOSPACE) return luaL_error(L, "glob: not enough memory");
  if (r == GLOB_ABORTED) return fs_gfail(L, g, pattern, EIO);
  lua_createtable(L, r == 0 ? (int)g->gl.gl_pathc : 0, 0);  /* [guard, t] */
  for (i = 0; r == 0 && i < g->gl.gl_pathc; i++) {
    lua_pushstring(L, g->gl.gl_pathv[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  guard_close(g);
  return 1;
}

/* ---- hashing ---- */

/*
** fs.sha256 and fs.sha256_data live in orch.core.digest, a module opened
** on first use (libcrypto's loading was a third of every start-up): these
** forward to it. [args] -> [results]
*/
static int fs_forward (lua_State *L) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orch.core.digest");
  lua_call(L, 1, 1);                               /* [args, digest] */
  lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(1)));
  lua_replace(L, -2);                              /* [args, fn] */
  lua_insert(L, 1);                                /* [fn, args] */
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* ---- locks ---- */

struct lock { int fd; };  /* fd < 0: released; user value 1: the path */

/* Idempotent: __close, __gc and :unlock() may all run. */
static int lock_release (lua_State *L) {
  struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  if (lk->fd >= 0) { close(lk->fd); lk->fd = -1; }  /* drops the flock */
  return 0;
}

static int lock_tostring (lua_State *L) {
  struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, "orch.fs.lock (%s, %s)", lua_tostring(L, -1),
                  lk->fd < 0 ? "released" : "held");
  return 1;
}

/* Replace the lock file's content: who holds it, for whoever finds it held. */
static int lock_write (lua_State *L) {
  struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int err = 0;
  luaL_argcheck(L, lk->fd >= 0, 1, "lock is released");
  if (ftruncate(lk->fd, 0) != 0) err = errno;
  if (!err) err = fs_writeall(lk->fd, data, len);
  if (err) {
    lua_getiuservalue(L, 1, 1);
    return orch_fail(L, lua_tostring(L, -1), err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A held lock is an answer, not a bug: fail, don't raise. */
static int fs_lock (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct lock *lk = lua_newuserdatauv(L, sizeof *lk, 1);
  lk->fd = -1;  /* valid before anything can fail */
  luaL_setmetatable(L, LOCK_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lk->fd < 0) return orch_fail(L, path, errno);
  if (flock(lk->fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(lk->fd); lk->fd = -1;
    if (err == EWOULDBLOCK)
      return orch_failmsg(L, "LOCKED", "%s: locked by another process", path);
    return orch_fail(L, path, err);
  }
  return 1;
}

static const luaL_Reg guard_meta[] = {{"__gc", guard_gc}, {NULL, NULL}};
static const luaL_Reg lock_meta[] = {{"__gc", lock_release},
  {"__close", lock_release}, {"__tostring", lock_tostring}, {NULL, NULL}};
static const luaL_Reg lock_methods[] = {{"unlock", lock_release},
  {"write", lock_write}, {NULL, NULL}};

static const luaL_Reg fs_funcs[] = {
  {"stat", fs_stat}, {"lstat", fs_lstat}, {"read", fs_read},
  {"write", fs_write}, {"mkdir", fs_mkdir}, {"chmod", fs_chmod},
  {"chown", fs_chown}, {"symlink", fs_symlink}, {"readlink", fs_readlink},
  {"rename", fs_rename}, {"realpath", fs_realpath}, {"cwd", fs_cwd},
  {"remove", fs_remove}, {"glob", fs_glob}, {"list", fs_list},
  {"walk", fs_walk}, {"tmpdir", fs_tmpdir}, {"lock", fs_lock},
  {NULL, NULL}
};

int luaopen_orch_core_fs (lua_State *L) {
  orch_newclass(L, GUARD_MT, guard_meta, NULL);
  orch_newclass(L, LOCK_MT, lock_meta, lock_methods);
  luaL_newlib(L, fs_funcs);        /* [fs] */
  lua_pushliteral(L, "sha256");
  lua_pushcclosure(L, fs_forward, 1);
  lua_setfield(L, -2, "sha256");
  lua_pushliteral(L, "sha256_data");
  lua_pushcclosure(L, fs_forward, 1);
  lua_setfield(L, -2, "sha256_data");
  return 1;
}
