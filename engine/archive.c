/*
** archive.c: orch.core.archive, tar.gz create/extract/list with libarchive,
** the I/O done on libuv's threadpool so the loop keeps running other tasks.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "orch.h"

#define BOX_MT "orch.archive.request"

enum { OP_CREATE, OP_EXTRACT, OP_LIST };

struct item { char *path; mode_t type; lua_Integer size; int mode; };

/*
** One call's request: filled on the loop thread, used by one pool thread,
** read back on the loop thread, never by two at once. An abandoned wait (an
** error, an interrupt) can't stop a running worker, so the request lives
** until after_work, which frees it then.
*/
struct areq {
  orch_wait w;                  /* first: the cancel hook casts back */
  uv_work_t work;
  int op, finished;             /* finished: after_work has run */
  atomic_int abandoned;         /* read by the worker between entries */
  char *dest, *base, *src, **paths;
  size_t npaths, nitems, cap;
  mode_t mode;                  /* create: the new file's mode */
  struct archive *a, *disk;     /* made on the loop thread, see extract */
  lua_Integer files, bytes;
  struct item *items;           /* list */
  const char *code;             /* NULL: success */
  char msg[PATH_MAX + 512];
};

/* Holds the request while Lua code may raise (argument checks, pushing
** results), so __gc frees it then; NULL while the worker owns it. */
struct box { struct areq *req; };

static void areq_free (struct areq *req) {
  size_t i;
  if (req->a) archive_free(req->a);
  if (req->disk) archive_free(req->disk);
  for (i = 0; i < req->npaths; i++) free(req->paths[i]);
  for (i = 0; i < req->nitems; i++) free(req->items[i].path);
  free(req->paths); free(req->items);
  free(req->dest); free(req->base); free(req->src);
  free(req);
}

static int box_gc (lua_State *L) {
  struct box *b = luaL_checkudata(L, 1, BOX_MT);
  if (b->req) { areq_free(b->req); b->req = NULL; }
  return 0;
}

/* ---- failures, kept as text by the worker (no Lua there); all return -1 ---- */

static int areq_errno (struct areq *req, const char *subject, int err) {
  char buf[256];
  snprintf(req->msg, sizeof req->msg, "%s: %s", subject, strerror_r(err, buf, sizeof buf));
  req->code = orch_errname(err);
  return -1;
}

/* libarchive's message, copied now: the handle owns the string. Its errno
** is a system one (ENOSPC) or its private marker of bad data (EILSEQ, EINVAL
** or -1 on Linux, archive_private.h), which is EARCHIVE. */
static int areq_archerr (struct areq *req, struct archive *a, const char *subject) {
  const char *s = archive_error_string(a), *code = orch_errname(archive_errno(a));
  char buf[256];
  int sys = archive_errno(a) != EILSEQ && archive_errno(a) != EINVAL &&
            strcmp(code, "EUNKNOWN") != 0;
  req->code = sys ? code : "EARCHIVE";
  snprintf(req->msg, sizeof req->msg, "%s: %s%s%s", subject, s ? s : "unknown error",
           sys ? ": " : "", sys ? strerror_r(archive_errno(a), buf, sizeof buf) : "");
  return -1;
}

static int areq_join (struct areq *req, char *out, const char *dir, const char *name) {
  if (snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX) return 0;
  return areq_errno(req, name, ENAMETOOLONG);
}

/* Relative and without a ".." component: NULL, or why not. */
static const char *unsafe_path (const char *p) {
  const char *s;
  if (*p == '/') return "Path is absolute";
  for (s = p; (s = strstr(s, "..")) != NULL; s += 2)
    if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
      return "Path contains '..'";
  return NULL;
}

/* ---- create (pool thread) ---- */

/* One entry from its lstat: header, then a regular file's data. */
static int create_entry (struct areq *req, struct archive_entry *e, const char *path,
                         const char *name, const struct stat *st) {
  char buf[65536];
  int fd = -1, err = 0;
  off_t left = st->st_size;
  if (S_ISSOCK(st->st_mode)) return 0;  /* tar has no socket type */
  archive_entry_clear(e);
  archive_entry_copy_stat(e, st);
  archive_entry_copy_pathname(e, name);
  if (S_ISLNK(st->st_mode)) {
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) return areq_errno(req, path, errno);
    buf[n] = '\0';
    archive_entry_copy_symlink(e, buf);
  }
  if (!S_ISREG(st->st_mode)) archive_entry_set_size(e, 0);
  /* opened first: an unreadable file fails before its header is out */
  else if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
    return areq_errno(req, path, errno);
  if (archive_write_header(req->a, e) < ARCHIVE_WARN) err = -1;
  /* a file grown since lstat is cut at the header's size; one shrunk is
     padded with zeros by finish_entry */
  while (!err && fd >= 0 && left > 0) {
    ssize_t n = read(fd, buf, left < (off_t)sizeof buf ? (size_t)left : sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { err = n < 0 ? errno : 0; break; }
    if (archive_write_data(req->a, buf, (size_t)n) < 0) err = -1;
    left -= n;
  }
  if (fd >= 0) close(fd);
  if (err > 0) return areq_errno(req, path, err);
  if (err < 0 || archive_write_finish_entry(req->a) < ARCHIVE_WARN)
    return areq_archerr(req, req->a, req->dest);
  if (!S_ISDIR(st->st_mode)) req->files++;
  if (S_ISREG(st->st_mode)) req->bytes += st->st_size - left;
  return 0;
}

/* Sorted by name: the same tree gives the same archive. */
static int fts_byname (const FTSENT **x, const FTSENT **y) {
  return strcmp((*x)->fts_name, (*y)->fts_name);
}

/* rel and, for a directory, all below it; FTS_PHYSICAL stores links, never
** follows them; FTS_NOCHDIR: the process's cwd is shared. */
static int create_tree (struct areq *req, struct archive_entry *e, const char *rel) {
  char full[PATH_MAX], name[PATH_MAX], *argv[2] = {full, NULL};
  size_t flen;
  FTS *fts;
  FTSENT *f;
  int r = 0;
  if (areq_join(req, full, req->base, rel) != 0) return -1;
  flen = strlen(full);
  if ((fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, fts_byname)) == NULL)
    return areq_errno(req, full, errno);
  while (r == 0 && (f = fts_read(fts)) != NULL) {
    if (atomic_load(&req->abandoned)) r = areq_errno(req, req->dest, ECANCELED);
    else if (f->fts_info == FTS_DP) continue;
    else if (f->fts_info == FTS_NS || f->fts_info == FTS_DNR || f->fts_info == FTS_ERR)
      r = areq_errno(req, f->fts_path, f->fts_errno);
    else if (f->fts_pathlen > flen && snprintf(name, sizeof name, "%s%s", rel,
             f->fts_path + flen) >= (int)sizeof name)
      r = areq_errno(req, f->fts_path, ENAMETOOLONG);
    else r = create_entry(req, e, f->fts_accpath, f->fts_pathlen > flen ? name : rel,
                          f->fts_statp);
  }
  fts_close(fts);
  return r;
}

/* Atomic: a temp file beside dest, fsync'd, renamed over it. */
static void create_work (struct areq *req) {
  const char *slash = strrchr(req->dest, '/'), *fname = slash ? slash + 1 : req->dest;
  int dlen = (int)(fname - req->dest), fd, r = 0;
  char tmp[PATH_MAX], dir[PATH_MAX];
  struct archive_entry *e = NULL;
  size_t i;
  /* a long name is cut so the temp name still fits NAME_MAX */
  if (snprintf(tmp, sizeof tmp, "%.*s.%.200s.orch-XXXXXX", dlen, req->dest, fname)
      >= (int)sizeof tmp) { areq_errno(req, req->dest, ENAMETOOLONG); return; }
  if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) { areq_errno(req, req->dest, errno); return; }
  if (fchmod(fd, req->mode) != 0) r = areq_errno(req, req->dest, errno);
  else if (archive_write_open_fd(req->a, fd) != ARCHIVE_OK) r = areq_archerr(req, req->a, req->dest);
  else if ((e = archive_entry_new()) == NULL) r = areq_errno(req, req->dest, ENOMEM);
  for (i = 0; r == 0 && i < req->npaths; i++) r = create_tree(req, e, req->paths[i]);
  archive_entry_free(e);
  /* close writes the tar and gzip trailers, so it comes before fsync; after
     a failure too, into the doomed temp file: archive_write_free skips it
     on a failed handle and leaks zlib's state */
  if (archive_write_close(req->a) != ARCHIVE_OK && r == 0) r = areq_archerr(req, req->a, req->dest);
  if (r == 0 && fsync(fd) != 0) r = areq_errno(req, req->dest, errno);
  if (close(fd) != 0 && r == 0) r = areq_errno(req, req->dest, errno);
  if (r == 0 && rename(tmp, req->dest) != 0) r = areq_errno(req, req->dest, errno);
  if (r != 0) { unlink(tmp); return; }
  /* the rename survives a crash once its directory is synced (best effort:
     some filesystems refuse fsync on a directory) */
  snprintf(dir, sizeof dir, "%.*s", dlen ? dlen : 1, dlen ? req->dest : ".");
  if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) { fsync(fd); close(fd); }
}

/* ---- extract and list (pool thread) ---- */

/* mkdir -p; the umask applies, as for any directory we make. */
static int mkdir_p (struct areq *req, const char *path) {
  char buf[PATH_MAX];
  size_t i, len = strlen(path);
  if (len >= sizeof buf) return areq_errno(req, path, ENAMETOOLONG);
  memcpy(buf, path, len + 1);
  for (i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return areq_errno(req, path, errno);
    buf[i] = i < len ? '/' : '\0';
  }
  return 0;
}

static int read_open (struct areq *req, int *fd) {
  if ((*fd = open(req->src, O_RDONLY | O_CLOEXEC)) < 0) return areq_errno(req, req->src, errno);
  if (archive_read_open_fd(req->a, *fd, 65536) != ARCHIVE_OK) return areq_archerr(req, req->a, req->src);
  return 0;
}

/* out = root/name, if an archive's name is safe there. */
static int safe_join (struct areq *req, char *out, const char *root, const char *name) {
  const char *why = name ? unsafe_path(name) : "Pathname can't be read";
  if (why == NULL) return areq_join(req, out, root, name);
  req->code = "EARCHIVE";
  snprintf(req->msg, sizeof req->msg, "%s: %s: %s", req->src, name ? name : "?", why);
  return -1;
}

/* Not archive_read_extract2: it turns a refused entry into a warning and
** goes on, where a refusal here must fail the whole extract. */
static int extract_entry (struct areq *req, struct archive_entry *e) {
  const void *buf;
  size_t len;
  la_int64_t off;
  int r;
  if (archive_write_header(req->disk, e) < ARCHIVE_WARN) return areq_archerr(req, req->disk, req->src);
  while ((r = archive_read_data_block(req->a, &buf, &len, &off)) == ARCHIVE_OK || r == ARCHIVE_WARN)
    if (archive_write_data_block(req->disk, buf, len, off) < ARCHIVE_WARN)
      return areq_archerr(req, req->disk, req->src);
  if (r != ARCHIVE_EOF) return areq_archerr(req, req->a, req->src);
  if (archive_write_finish_entry(req->disk) < ARCHIVE_WARN) return areq_archerr(req, req->disk, req->src);
  return 0;
}

/*
** Each name is checked, then prefixed with dest_dir's real path: no chdir,
** the process's cwd is shared. NOABSOLUTEPATHS can't go to libarchive (the
** prefix is absolute), so safe_join does its job. SECURE_SYMLINKS refuses
** to write through a link, one an earlier entry made included; realpath
** keeps it from refusing dest_dir's own parents (/var/run -> /run).
*/
static void extract_work (struct areq *req) {
  char root[PATH_MAX], path[PATH_MAX];
  struct archive_entry *e;
  const char *link;
  int fd = -1, r;
  /* opened first: a missing or foreign src leaves no dest_dir behind */
  if (read_open(req, &fd) != 0 || mkdir_p(req, req->dest) != 0) goto done;
  if (!realpath(req->dest, root)) { areq_errno(req, req->dest, errno); goto done; }
  while ((r = archive_read_next_header(req->a, &e)) != ARCHIVE_EOF) {
    if (r < ARCHIVE_WARN) { areq_archerr(req, req->a, req->src); break; }
    if (atomic_load(&req->abandoned)) { areq_errno(req, req->src, ECANCELED); break; }
    if (safe_join(req, path, root, archive_entry_pathname(e)) != 0) break;
    archive_entry_copy_pathname(e, path);
    if ((link = archive_entry_hardlink(e)) != NULL) {
      if (safe_join(req, path, root, link) != 0) break;
      archive_entry_copy_hardlink(e, path);
    }
    if (extract_entry(req, e) != 0) break;
    if (archive_entry_filetype(e) != AE_IFDIR) req->files++;
    if (archive_entry_filetype(e) == AE_IFREG) req->bytes += archive_entry_size(e);
  }
  /* close sets directories' modes and times, deferred until their contents
     are in; after a failure too, for what was extracted */
  if (archive_write_close(req->disk) != ARCHIVE_OK && !req->code)
    areq_archerr(req, req->disk, req->dest);
done:
  archive_read_close(req->a);  /* done with fd before it is closed */
  if (fd >= 0) close(fd);
}

/* Reads every header (a whole gzip stream to inflate): in the pool too. */
static void list_work (struct areq *req) {
  struct archive_entry *e;
  struct item *it;
  int fd = -1, r;
  if (read_open(req, &fd) == 0)
    while ((r = archive_read_next_header(req->a, &e)) != ARCHIVE_EOF) {
      const char *name = archive_entry_pathname(e);
      if (r < ARCHIVE_WARN) { areq_archerr(req, req->a, req->src); break; }
      if (req->nitems == req->cap) {
        size_t cap = req->cap ? req->cap * 2 : 64;
        void *p = realloc(req->items, cap * sizeof *it);
        if (!p) { areq_errno(req, req->src, ENOMEM); break; }
        req->items = p; req->cap = cap;
      }
      it = &req->items[req->nitems];
      if ((it->path = strdup(name ? name : "")) == NULL) { areq_errno(req, req->src, ENOMEM); break; }
      req->nitems++;
      it->type = archive_entry_filetype(e);
      it->size = archive_entry_size(e);
      it->mode = archive_entry_perm(e);
    }
  archive_read_close(req->a);
  if (fd >= 0) close(fd);
}

/* ---- the loop thread: requests, waits, results ---- */

static void on_work (uv_work_t *w) {
  struct areq *req = w->data;
  if (req->op == OP_CREATE) create_work(req);
  else if (req->op == OP_EXTRACT) extract_work(req);
  else list_work(req);
}

static void on_after_work (uv_work_t *w, int status) {
  struct areq *req = w->data;
  req->finished = 1;
  if (atomic_load(&req->abandoned)) areq_free(req);
  else orch_wake(&req->w);
}

/* Abandoned: the worker stops at its next entry; after_work frees. */
static void areq_cancel (orch_wait *w) {
  struct areq *req = (struct areq *)w;
  if (req->finished) { areq_free(req); return; }
  atomic_store(&req->abandoned, 1);
  /* succeeds only if not yet started; else the worker sees `abandoned` */
  (void)uv_cancel((uv_req_t *)&req->work);
}

/* The names orch.core.fs's stat uses. */
static const char *type_name (mode_t t) {
  return t == AE_IFREG ? "file" : t == AE_IFDIR ? "directory" : t == AE_IFLNK ? "link"
       : t == AE_IFIFO ? "fifo" : t == AE_IFCHR ? "char" : t == AE_IFBLK ? "block" : "unknown";
}

static void set_int (lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* The box is at 1; pushing may raise, so it owns the request meanwhile. */
static int on_done (lua_State *L, int status, lua_KContext ctx) {
  struct areq *req = (struct areq *)ctx;
  struct box *b = luaL_checkudata(L, 1, BOX_MT);
  size_t i;
  int n = 1;
  b->req = req;
  if (req->code) n = orch_failmsg(L, req->code, "%s", req->msg);
  else if (req->op == OP_LIST) {
    lua_createtable(L, (int)req->nitems, 0);   /* [box, .., t] */
    for (i = 0; i < req->nitems; i++) {
      lua_createtable(L, 0, 4);
      lua_pushstring(L, req->items[i].path);
      lua_setfield(L, -2, "path");
      lua_pushstring(L, type_name(req->items[i].type));
      lua_setfield(L, -2, "type");
      set_int(L, "size", req->items[i].size);
      set_int(L, "mode", req->items[i].mode);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  } else {
    lua_createtable(L, 0, 2);                  /* [box, .., res] */
    set_int(L, "files", req->files);
    set_int(L, "bytes", req->bytes);
  }
  areq_free(req);
  b->req = NULL;
  return n;
}

/* [args..] -> [box, args..]: a new request, owned by the box. */
static struct areq *areq_new (lua_State *L, int op) {
  struct box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->req = NULL;
  luaL_setmetatable(L, BOX_MT);
  lua_insert(L, 1);
  if ((b->req = calloc(1, sizeof *b->req)) == NULL) luaL_error(L, "out of memory");
  b->req->op = op;
  return b->req;
}

static char *dup_arg (lua_State *L, const char *s, size_t len) {
  char *d = strndup(s, len);
  if (!d) luaL_error(L, "out of memory");
  return d;
}

/* Hands the request to the pool and waits; on_done pushes the results. */
static int areq_start (lua_State *L, struct areq *req) {
  struct box *b = luaL_checkudata(L, 1, BOX_MT);
  int r;
  if (!req->a || (req->op == OP_EXTRACT && !req->disk)) return luaL_error(L, "out of memory");
  orch_wait_init(&req->w);
  req->w.cancel = areq_cancel;
  req->work.data = req;
  if ((r = uv_queue_work(orch_uv(), &req->work, on_work, on_after_work)) != 0)
    return luaL_error(L, "archive: %s", uv_strerror(r));
  b->req = NULL;
  return orch_await(L, &req->w, (lua_KContext)req, on_done);
}

/* Tar in any of its dialects, plain or gzip'd (what create writes); no
** filter that would run an external program from a pool thread. */
static struct archive *new_reader (void) {
  struct archive *a = archive_read_new();
  if (a) { archive_read_support_format_tar(a); archive_read_support_filter_gzip(a); }
  return a;
}

/* archive.create(dest, base_dir, paths) -> { files, bytes } */
static int archive_create (lua_State *L) {
  const char *dest = luaL_checkstring(L, 1), *base = luaL_checkstring(L, 2), *p, *why;
  struct areq *req;
  lua_Integer i, n;
  size_t len;
  mode_t mask;
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  n = luaL_len(L, 3);
  req = areq_new(L, OP_CREATE);                /* [box, dest, base, paths] */
  req->dest = dup_arg(L, dest, strlen(dest));
  req->base = dup_arg(L, base, strlen(base));
  if ((req->paths = calloc((size_t)n + 1, sizeof *req->paths)) == NULL)
    return luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++, lua_pop(L, 1)) {
    if (lua_geti(L, 4, i) != LUA_TSTRING)
      return luaL_argerror(L, 3, lua_pushfstring(L, "paths[%d] must be a string", (int)i));
    p = lua_tolstring(L, -1, &len);
    if (len == 0 || (why = unsafe_path(p)) != NULL)
      return luaL_argerror(L, 3, lua_pushfstring(L, "paths[%d] '%s': %s", (int)i, p,
                                                 len ? why : "empty path"));
    while (len > 1 && p[len - 1] == '/') len--;  /* "dir/" names entries "dir/x" */
    req->paths[req->npaths++] = dup_arg(L, p, len);
  }
  /* the mode open(O_CREAT, 0666) would give; read here: umask is global */
  mask = umask(0);
  umask(mask);
  req->mode = 0666 & ~mask;
  /* pax_restricted: plain ustar unless a name or size needs pax headers */
  if ((req->a = archive_write_new()) != NULL &&
      (archive_write_add_filter_gzip(req->a) != ARCHIVE_OK ||
       archive_write_set_format_pax_restricted(req->a) != ARCHIVE_OK))
    return luaL_error(L, "archive: %s", archive_error_string(req->a));
  return areq_start(L, req);
}

/* archive.extract(src, dest_dir) -> { files, bytes } */
static int archive_extract (lua_State *L) {
  const char *src = luaL_checkstring(L, 1), *dest = luaL_checkstring(L, 2);
  struct areq *req;
  lua_settop(L, 2);
  req = areq_new(L, OP_EXTRACT);               /* [box, src, dest] */
  req->src = dup_arg(L, src, strlen(src));
  req->dest = dup_arg(L, dest, strlen(dest));
  req->a = new_reader();
  /* made here: archive_write_disk_new reads the umask by setting it, which
     would race with this thread's own file calls if done in the pool */
  if ((req->disk = archive_write_disk_new()) != NULL)
    archive_write_disk_set_options(req->disk, ARCHIVE_EXTRACT_SECURE_NODOTDOT |
      ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM);
  return areq_start(L, req);
}

/* archive.list(src) -> { { path, type, size, mode }, ... } in archive order */
static int archive_list (lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  struct areq *req;
  lua_settop(L, 1);
  req = areq_new(L, OP_LIST);                  /* [box, src] */
  req->src = dup_arg(L, src, strlen(src));
  req->a = new_reader();
  return areq_start(L, req);
}

static const luaL_Reg box_meta[] = {{"__gc", box_gc}, {NULL, NULL}};
static const luaL_Reg archive_funcs[] = {{"create", archive_create},
  {"extract", archive_extract}, {"list", archive_list}, {NULL, NULL}};

int luaopen_orch_core_archive (lua_State *L) {
  orch_newclass(L, BOX_MT, box_meta, NULL);
  luaL_newlib(L, archive_funcs);     /* [archive] */
  return 1;
}
