/*
** sftp.c: file operations over SFTP version 3 (draft-ietf-secsh-filexfer-02),
** spoken by orch itself on a libssh2 channel. libssh2's own SFTP layer waits
** for each answer before it sends the next request; here a task sends a
** flight of requests at once (sess:sftp{...}) and gets every answer back in
** one round trip. Requests carry ids, so flights of concurrent tasks share
** the channel, and the answers to a cancelled flight are dropped on arrival:
** a cancel leaves the channel usable.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ssh.h"

/* packet types */
enum {
  FXP_INIT = 1, FXP_VERSION = 2, FXP_OPEN = 3, FXP_CLOSE = 4, FXP_READ = 5, FXP_WRITE = 6,
  FXP_LSTAT = 7, FXP_FSTAT = 8, FXP_SETSTAT = 9, FXP_FSETSTAT = 10, FXP_OPENDIR = 11,
  FXP_READDIR = 12, FXP_REMOVE = 13, FXP_MKDIR = 14, FXP_RMDIR = 15, FXP_REALPATH = 16,
  FXP_STAT = 17, FXP_RENAME = 18, FXP_READLINK = 19, FXP_SYMLINK = 20,
  FXP_STATUS = 101, FXP_HANDLE = 102, FXP_DATA = 103, FXP_NAME = 104, FXP_ATTRS = 105,
  FXP_EXTENDED = 200, FXP_EXTENDED_REPLY = 201
};

/* status codes (version 3 has these only) */
enum { FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, FX_FAILURE, FX_BAD_MESSAGE,
       FX_NO_CONNECTION, FX_CONNECTION_LOST, FX_OP_UNSUPPORTED };

/* attribute flags, open flags */
#define ATTR_SIZE 0x1u
#define ATTR_UIDGID 0x2u
#define ATTR_PERMISSIONS 0x4u
#define ATTR_ACMODTIME 0x8u
#define ATTR_EXTENDED 0x80000000u
#define FXF_READ 0x1u
#define FXF_WRITE 0x2u
#define FXF_APPEND 0x4u
#define FXF_CREAT 0x8u
#define FXF_TRUNC 0x10u
#define FXF_EXCL 0x20u

/* OpenSSH's sftp-server refuses a message over 256 KiB */
#define MAX_PACKET (256 * 1024)
#define MAX_DATA (MAX_PACKET - 1024)

/* the connection's phases */
enum { SC_OPEN, SC_START, SC_VERSION, SC_READY, SC_FAILED };

typedef struct sftp_pending { uint32_t id; ssh_op *op; int slot; } sftp_pending;

struct sftp_conn {
  LIBSSH2_CHANNEL *ch;
  int phase;
  int err;                  /* why it failed (SC_FAILED) */
  uint32_t next_id;
  ssh_buf out;              /* packets not sent yet, from `sent` on */
  size_t sent;
  ssh_buf in;               /* bytes received, short of a whole packet */
  sftp_pending *pend;       /* requests sent, waiting for their answer */
  int npend, cappend;
  int posix_rename;         /* the server has posix-rename@openssh.com */
};

/* One request of a flight: what it was, for the answer and its message. */
struct sftp_slot {
  int kind;                 /* the request's packet type (FXP_EXTENDED: posix-rename) */
  const char *what;         /* the path named in a failure (a Lua string) */
  int type;                 /* the answer's packet type, 0 while none */
  uint32_t status;
  size_t off, len;          /* its payload, in o->out */
};


/* ---- encoding ---- */

static void put_u32 (luaL_Buffer *b, uint32_t v) {
  char c[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v };
  luaL_addlstring(b, c, 4);
}

static void put_u64 (luaL_Buffer *b, uint64_t v) {
  put_u32(b, (uint32_t)(v >> 32));
  put_u32(b, (uint32_t)v);
}

static void put_str (luaL_Buffer *b, const char *s, size_t n) {
  put_u32(b, (uint32_t)n);
  luaL_addlstring(b, s, n);
}

/* What a request says, read from its table before any of it is encoded
** (a luaL_Buffer allows nothing else on the stack while it grows). */
typedef struct sftp_args {
  int kind;
  const char *a, *b;        /* paths or handles (Lua strings, kept by the flight's table) */
  size_t alen, blen;
  const char *what;
  uint64_t off;
  uint32_t n, flags;        /* read length; open flags or attribute flags */
  uint32_t mode, uid, gid;
} sftp_args;

static const char *const kinds[] = {
  "stat", "lstat", "fstat", "open", "close", "read", "write", "setstat", "fsetstat", "mkdir",
  "rmdir", "remove", "rename", "posix_rename", "readlink", "realpath", "symlink", "opendir",
  "readdir", NULL
};
static const int kind_types[] = {
  FXP_STAT, FXP_LSTAT, FXP_FSTAT, FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE, FXP_SETSTAT,
  FXP_FSETSTAT, FXP_MKDIR, FXP_RMDIR, FXP_REMOVE, FXP_RENAME, FXP_EXTENDED, FXP_READLINK,
  FXP_REALPATH, FXP_SYMLINK, FXP_OPENDIR, FXP_READDIR
};

/* { mode =, uid =, gid = } at idx into a's attribute flags and values */
static void attrs_arg (lua_State *L, int idx, sftp_args *a) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "mode");
  if (!lua_isnil(L, -1)) { a->flags |= ATTR_PERMISSIONS; a->mode = (uint32_t)luaL_checkinteger(L, -1); }
  lua_getfield(L, idx, "uid");
  lua_getfield(L, idx, "gid");
  if (!lua_isnil(L, -2) || !lua_isnil(L, -1)) {   /* SFTP sets both or neither */
    a->flags |= ATTR_UIDGID;
    a->uid = (uint32_t)luaL_checkinteger(L, -2);
    a->gid = (uint32_t)luaL_checkinteger(L, -1);
  }
  lua_pop(L, 3);
}

static uint32_t open_flags (lua_State *L, int idx) {
  const char *m = luaL_checkstring(L, idx);
  uint32_t f = 0;
  for (; *m; m++) switch (*m) {
    case 'r': f |= FXF_READ; break;
    case 'w': f |= FXF_WRITE | FXF_CREAT | FXF_TRUNC; break;
    case 'a': f |= FXF_WRITE | FXF_CREAT | FXF_APPEND; break;
    case 'x': f |= FXF_EXCL; break;
    default: luaL_argerror(L, idx, "open mode: r, w, a, x");
  }
  return f;
}

/* The request table on top: its arguments into a (popping nothing). */
static void request_args (lua_State *L, int i, sftp_args *a) {
  int t = lua_gettop(L);
  if (!lua_istable(L, t)) luaL_error(L, "sftp: request %d is not a table", i);
  memset(a, 0, sizeof *a);
  lua_rawgeti(L, t, 1);
  a->kind = luaL_checkoption(L, -1, NULL, kinds);
  lua_rawgeti(L, t, 2);
  a->a = luaL_checklstring(L, -1, &a->alen);
  lua_getfield(L, t, "what");
  a->what = lua_isnil(L, -1) ? a->a : luaL_checkstring(L, -1);
  lua_rawgeti(L, t, 3);
  lua_rawgeti(L, t, 4);                               /* [.., t, kind, a, what, 3, 4] */
  switch (kind_types[a->kind]) {
    case FXP_OPEN:
      a->n = open_flags(L, -2);
      a->mode = (uint32_t)luaL_optinteger(L, -1, 0644);
      break;
    case FXP_READ:
      a->off = (uint64_t)luaL_checkinteger(L, -2);
      a->n = (uint32_t)luaL_checkinteger(L, -1);
      if (a->n > MAX_DATA) luaL_error(L, "sftp: request %d: a read of at most %d bytes", i, MAX_DATA);
      break;
    case FXP_WRITE:
      a->off = (uint64_t)luaL_checkinteger(L, -2);
      a->b = luaL_checklstring(L, -1, &a->blen);
      if (a->blen > MAX_DATA) luaL_error(L, "sftp: request %d: a write of at most %d bytes", i, MAX_DATA);
      break;
    case FXP_SETSTAT: case FXP_FSETSTAT: attrs_arg(L, t + 4, a); break;
    case FXP_MKDIR: a->mode = (uint32_t)luaL_optinteger(L, -2, 0755); break;
    case FXP_RENAME: case FXP_EXTENDED: case FXP_SYMLINK:
      a->b = luaL_checklstring(L, -2, &a->blen);
      break;
  }
  lua_settop(L, t);
}

/* The packet for a, with id, added to b. */
static void encode (luaL_Buffer *b, const sftp_args *a, uint32_t id) {
  int type = kind_types[a->kind];
  char head[9];
  size_t len = 5;           /* type and id */
  /* the length first: sum what follows */
  switch (type) {
    case FXP_OPEN: len += 4 + a->alen + 4 + 4 + 4; break;
    case FXP_READ: len += 4 + a->alen + 8 + 4; break;
    case FXP_WRITE: len += 4 + a->alen + 8 + 4 + a->blen; break;
    case FXP_SETSTAT: case FXP_FSETSTAT:
      len += 4 + a->alen + 4 + ((a->flags & ATTR_UIDGID) ? 8 : 0) + ((a->flags & ATTR_PERMISSIONS) ? 4 : 0);
      break;
    case FXP_MKDIR: len += 4 + a->alen + 4 + 4; break;
    case FXP_RENAME: case FXP_SYMLINK: len += 4 + a->alen + 4 + a->blen; break;
    case FXP_EXTENDED: len += 4 + 24 + 4 + a->alen + 4 + a->blen; break;
    default: len += 4 + a->alen; break;
  }
  head[0] = (char)(len >> 24); head[1] = (char)(len >> 16); head[2] = (char)(len >> 8);
  head[3] = (char)len; head[4] = (char)type;
  head[5] = (char)(id >> 24); head[6] = (char)(id >> 16); head[7] = (char)(id >> 8); head[8] = (char)id;
  luaL_addlstring(b, head, 9);
  switch (type) {
    case FXP_OPEN:
      put_str(b, a->a, a->alen);
      put_u32(b, a->n);
      put_u32(b, ATTR_PERMISSIONS);
      put_u32(b, a->mode);
      break;
    case FXP_READ:
      put_str(b, a->a, a->alen);
      put_u64(b, a->off);
      put_u32(b, a->n);
      break;
    case FXP_WRITE:
      put_str(b, a->a, a->alen);
      put_u64(b, a->off);
      put_str(b, a->b, a->blen);
      break;
    case FXP_SETSTAT: case FXP_FSETSTAT:
      put_str(b, a->a, a->alen);
      put_u32(b, a->flags);
      if (a->flags & ATTR_UIDGID) { put_u32(b, a->uid); put_u32(b, a->gid); }
      if (a->flags & ATTR_PERMISSIONS) put_u32(b, a->mode);
      break;
    case FXP_MKDIR:
      put_str(b, a->a, a->alen);
      put_u32(b, ATTR_PERMISSIONS);
      put_u32(b, a->mode);
      break;
    case FXP_RENAME:
      put_str(b, a->a, a->alen);
      put_str(b, a->b, a->blen);
      break;
    /* OpenSSH takes SYMLINK's two paths in the opposite order to the
    ** draft (its sftp-server.c says so): the target first */
    case FXP_SYMLINK:
      put_str(b, a->b, a->blen);
      put_str(b, a->a, a->alen);
      break;
    case FXP_EXTENDED:
      put_str(b, "posix-rename@openssh.com", 24);
      put_str(b, a->a, a->alen);
      put_str(b, a->b, a->blen);
      break;
    default:
      put_str(b, a->a, a->alen);
      break;
  }
}


/* ---- decoding ---- */

typedef struct reader { const unsigned char *p; size_t left; int bad; } reader;

static uint32_t get_u32 (reader *r) {
  uint32_t v;
  if (r->left < 4) { r->bad = 1; r->left = 0; return 0; }
  v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
  r->p += 4;
  r->left -= 4;
  return v;
}

static uint64_t get_u64 (reader *r) {
  uint64_t hi = get_u32(r);
  return hi << 32 | get_u32(r);
}

static const char *get_str (reader *r, size_t *n) {
  const char *s;
  *n = get_u32(r);
  if (r->bad || *n > r->left) { r->bad = 1; r->left = 0; *n = 0; return ""; }
  s = (const char *)r->p;
  r->p += *n;
  r->left -= *n;
  return s;
}

typedef struct attrs { uint32_t flags, uid, gid, perm, mtime; uint64_t size; } attrs;

static void get_attrs (reader *r, attrs *at) {
  memset(at, 0, sizeof *at);
  at->flags = get_u32(r);
  if (at->flags & ATTR_SIZE) at->size = get_u64(r);
  if (at->flags & ATTR_UIDGID) { at->uid = get_u32(r); at->gid = get_u32(r); }
  if (at->flags & ATTR_PERMISSIONS) at->perm = get_u32(r);
  if (at->flags & ATTR_ACMODTIME) { (void)get_u32(r); at->mtime = get_u32(r); }
  if (at->flags & ATTR_EXTENDED) {
    uint32_t i, n = get_u32(r);
    for (i = 0; i < n && !r->bad; i++) { size_t l; get_str(r, &l); get_str(r, &l); }
  }
}


/* ---- the connection ---- */

static sftp_conn *conn_of (ssh_session *s) {
  if (s->sftp == NULL) s->sftp = calloc(1, sizeof *s->sftp);
  return s->sftp;
}

void orch_sftp_free (ssh_session *s) {
  sftp_conn *c = s->sftp;
  if (c == NULL) return;
  free(c->out.data);
  free(c->in.data);
  free(c->pend);
  free(c);
  s->sftp = NULL;   /* its channel goes with the session */
}

static int conn_fail (sftp_conn *c, int err) {
  c->phase = SC_FAILED;
  c->err = err;
  return -1;
}

static int conn_wait_for (sftp_conn *c, uint32_t id, ssh_op *o, int slot) {
  if (c->npend == c->cappend) {
    int cap = c->cappend ? c->cappend * 2 : 16;
    sftp_pending *p = realloc(c->pend, sizeof *p * (size_t)cap);
    if (p == NULL) return 0;
    c->pend = p;
    c->cappend = cap;
  }
  c->pend[c->npend].id = id;
  c->pend[c->npend].op = o;
  c->pend[c->npend].slot = slot;
  c->npend++;
  return 1;
}

/* A handle that came back to a flight that was cancelled: closed, unheard. */
static void conn_close_unheard (sftp_conn *c, const char *h, size_t n) {
  uint32_t id = c->next_id++;
  unsigned char head[13];
  size_t len = 9 + n;
  head[0] = (unsigned char)(len >> 24); head[1] = (unsigned char)(len >> 16);
  head[2] = (unsigned char)(len >> 8); head[3] = (unsigned char)len; head[4] = FXP_CLOSE;
  head[5] = (unsigned char)(id >> 24); head[6] = (unsigned char)(id >> 16);
  head[7] = (unsigned char)(id >> 8); head[8] = (unsigned char)id;
  head[9] = (unsigned char)(n >> 24); head[10] = (unsigned char)(n >> 16);
  head[11] = (unsigned char)(n >> 8); head[12] = (unsigned char)n;
  if (orch_ssh_buf_add(&c->out, (char *)head, 13) && orch_ssh_buf_add(&c->out, h, n))
    (void)conn_wait_for(c, id, NULL, 0);   /* (out of memory: the handle stays open) */
}

/* The server's VERSION: which extensions it has. */
static void conn_version (sftp_conn *c, reader *r) {
  (void)get_u32(r);
  while (r->left && !r->bad) {
    size_t nl, dl;
    const char *name = get_str(r, &nl);
    (void)get_str(r, &dl);
    if (nl == 24 && memcmp(name, "posix-rename@openssh.com", 24) == 0) c->posix_rename = 1;
  }
  c->phase = SC_READY;
}

/* One whole packet: the answer goes to the flight that waits for it. */
static int conn_dispatch (sftp_conn *c, const unsigned char *p, size_t len) {
  reader r = { p + 1, len - 1, 0 };
  int type = p[0], i;
  uint32_t id;
  if (type == FXP_VERSION) { conn_version(c, &r); return 0; }
  id = get_u32(&r);
  for (i = 0; i < c->npend && c->pend[i].id != id; i++) ;
  if (r.bad || i == c->npend) return conn_fail(c, LIBSSH2_ERROR_SFTP_PROTOCOL);
  {
    sftp_pending pd = c->pend[i];
    c->pend[i] = c->pend[--c->npend];
    if (pd.op == NULL) {
      if (type == FXP_HANDLE) { size_t n; const char *h = get_str(&r, &n); conn_close_unheard(c, h, n); }
      return 0;
    }
    {
      struct sftp_slot *sl = &pd.op->slots[pd.slot];
      sl->type = type;
      if (type == FXP_STATUS) sl->status = get_u32(&r);
      sl->off = pd.op->out.len;
      sl->len = r.left;
      if (!orch_ssh_buf_add(&pd.op->out, (const char *)r.p, r.left)) return conn_fail(c, LIBSSH2_ERROR_ALLOC);
      pd.op->nanswered++;
      pd.op->moved = 1;
    }
  }
  return 0;
}

/* Sends what waits to go, reads what came, hands the answers out:
** 1 when anything moved, 0 when not, -1 when the channel failed. */
static int conn_pump (sftp_conn *c) {
  char buf[32768];
  size_t at = 0;
  int moved = 0;
  while (c->sent < c->out.len) {
    ssize_t n = libssh2_channel_write(c->ch, c->out.data + c->sent, c->out.len - c->sent);
    if (n == LIBSSH2_ERROR_EAGAIN) break;
    if (n < 0) return conn_fail(c, (int)n);
    c->sent += (size_t)n;
    moved = 1;
  }
  if (c->sent == c->out.len) c->sent = c->out.len = 0;
  for (;;) {
    ssize_t n = libssh2_channel_read(c->ch, buf, sizeof buf);
    if (n == LIBSSH2_ERROR_EAGAIN) break;
    if (n < 0) return conn_fail(c, (int)n);
    if (n == 0) {
      if (libssh2_channel_eof(c->ch)) return conn_fail(c, LIBSSH2_ERROR_SOCKET_DISCONNECT);
      break;
    }
    if (!orch_ssh_buf_add(&c->in, buf, (size_t)n)) return conn_fail(c, LIBSSH2_ERROR_ALLOC);
    moved = 1;
  }
  while (c->in.len - at >= 5) {
    const unsigned char *p = (const unsigned char *)c->in.data + at;
    size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (len == 0 || len > MAX_PACKET + 1024) return conn_fail(c, LIBSSH2_ERROR_SFTP_PROTOCOL);
    if (c->in.len - at < 4 + len) break;
    if (conn_dispatch(c, p + 4, len) < 0) return -1;
    at += 4 + len;
  }
  if (at) {
    memmove(c->in.data, c->in.data + at, c->in.len - at);
    c->in.len -= at;
  }
  return moved;
}

/* Opens the channel and starts the subsystem as the peer allows:
** 1 when ready, 0 to wait, -1 failed (c->err). */
static int conn_advance (ssh_session *s, sftp_conn *c) {
  int rc;
  switch (c->phase) {
    case SC_OPEN:
      c->ch = orch_ssh_channel(s);
      if (c->ch == NULL) {
        rc = libssh2_session_last_errno(s->s);
        return rc == LIBSSH2_ERROR_EAGAIN ? 0 : conn_fail(c, rc);
      }
      c->phase = SC_START;
      /* fall through */
    case SC_START: {
      static const char init[9] = { 0, 0, 0, 5, FXP_INIT, 0, 0, 0, 3 };
      rc = libssh2_channel_subsystem(c->ch, "sftp");
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      if (rc != 0) return conn_fail(c, rc);
      if (!orch_ssh_buf_add(&c->out, init, sizeof init)) return conn_fail(c, LIBSSH2_ERROR_ALLOC);
      c->phase = SC_VERSION;
    }
      /* fall through */
    case SC_VERSION:
      if (conn_pump(c) < 0) return -1;
      return c->phase == SC_READY ? 1 : c->phase == SC_FAILED ? -1 : 0;
    case SC_READY: return 1;
    default: return -1;
  }
}

/* Starts the channel ahead of the first flight, driven by whatever else
** waits on the session meanwhile (a connection's first command). */
void orch_sftp_advance (ssh_session *s) {
  if (s->sftp && s->sftp->phase < SC_READY) (void)conn_advance(s, s->sftp);
}

int orch_sftp_opening (ssh_session *s) {
  return s->sftp && s->sftp->phase == SC_OPEN;
}

/* A flight that will never be heard: its answers are dropped on arrival. */
void orch_sftp_detach (ssh_session *s, ssh_op *o) {
  sftp_conn *c = s->sftp;
  int i;
  if (c == NULL || !o->sftp) return;
  for (i = 0; i < c->npend; i++)
    if (c->pend[i].op == o) c->pend[i].op = NULL;
}


/* ---- flights ---- */

static int sftp_step (ssh_op *o) {
  ssh_session *s = o->sess;
  sftp_conn *c = s->sftp;
  int r = conn_advance(s, c);
  if (r < 0) { o->err = c->err; return OP_FAIL; }
  if (r == 0) return OP_AGAIN;
  if (!o->phase) {   /* ready: the flight goes out, its ids counted from c->next_id */
    int i;
    for (i = 0; i < o->nslots; i++)
      if (!conn_wait_for(c, o->first_id + (uint32_t)i, o, i)) { o->err = LIBSSH2_ERROR_ALLOC; return OP_FAIL; }
    if (!orch_ssh_buf_add(&c->out, o->data, o->len)) { o->err = LIBSSH2_ERROR_ALLOC; return OP_FAIL; }
    o->phase = 1;
    o->moved = 1;
  }
  if ((r = conn_pump(c)) < 0) { orch_sftp_detach(s, o); o->err = c->err; return OP_FAIL; }
  if (r > 0) o->moved = 1;
  return o->nanswered == o->nslots ? OP_DONE : OP_AGAIN;
}

static const char *sftp_code (uint32_t st) {
  switch (st) {
    case FX_NO_SUCH_FILE: return "ENOENT";
    case FX_PERMISSION_DENIED: return "EACCES";
    case FX_OP_UNSUPPORTED: return "ENOTSUP";
    default: return "EFAILURE";
  }
}

static const char *sftp_message (uint32_t st) {
  switch (st) {
    case FX_NO_SUCH_FILE: return "No such file or directory";
    case FX_PERMISSION_DENIED: return "Permission denied";
    case FX_OP_UNSUPPORTED: return "Operation not supported by the server";
    default: return "failed (the server gives no reason over SFTP)";
  }
}

static const char *sftp_type_of (uint32_t perm) {
  switch (perm & 0170000) {
    case 0100000: return "file";
    case 0040000: return "directory";
    case 0120000: return "link";
    case 0010000: return "fifo";
    case 0140000: return "socket";
    case 0020000: return "char";
    case 0060000: return "block";
    default: return "unknown";
  }
}

static void push_attrs (lua_State *L, const attrs *at) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, sftp_type_of(at->perm));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(at->perm & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)at->uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)at->gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)at->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)at->mtime);
  lua_setfield(L, -2, "mtime");
}

/* A NAME answer: readdir's entries ({ name, type }, without . and ..), or
** the one name of readlink and realpath. */
static int push_names (lua_State *L, reader *r, int list) {
  uint32_t i, n = get_u32(r);
  int k = 1;
  if (!list) {
    size_t l;
    const char *name = get_str(r, &l);
    if (n < 1 || r->bad) return 0;
    lua_pushlstring(L, name, l);
    return 1;
  }
  lua_createtable(L, (int)(n < 1024 ? n : 1024), 0);
  for (i = 0; i < n && !r->bad; i++) {
    size_t l, ll;
    attrs at;
    const char *name = get_str(r, &l);
    (void)get_str(r, &ll);
    get_attrs(r, &at);
    if (r->bad || (l == 1 && name[0] == '.') || (l == 2 && name[0] == '.' && name[1] == '.')) continue;
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, name, l);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, sftp_type_of(at.perm));
    lua_setfield(L, -2, "type");
    lua_rawseti(L, -2, k++);
  }
  if (r->bad) lua_pop(L, 1);   /* pushes nothing when it fails */
  return !r->bad;
}

/* [.., res, errs, codes]: slot i's answer as a value in res, or false
** there and its message and code in errs and codes. */
static void push_answer (lua_State *L, ssh_op *o, int i) {
  struct sftp_slot *sl = &o->slots[i];
  reader r = { (const unsigned char *)o->out.data + sl->off, sl->len, 0 };
  int ok = 1;
  switch (sl->type) {
    case FXP_STATUS:
      if (sl->status == FX_OK) lua_pushboolean(L, 1);
      else if (sl->status == FX_EOF) {   /* nothing more to read */
        if (sl->kind == FXP_READ) lua_pushliteral(L, ""); else lua_pushboolean(L, 0);
      } else {
        lua_pushboolean(L, 0);
        lua_rawseti(L, -4, i + 1);
        lua_pushfstring(L, "%s: %s: %s", o->sess->label, sl->what, sftp_message(sl->status));
        lua_rawseti(L, -3, i + 1);
        lua_pushstring(L, sftp_code(sl->status));
        lua_rawseti(L, -2, i + 1);
        return;
      }
      break;
    case FXP_HANDLE: case FXP_DATA: {
      size_t n;
      const char *d = get_str(&r, &n);
      lua_pushlstring(L, d, n);
      break;
    }
    case FXP_ATTRS: {
      attrs at;
      get_attrs(&r, &at);
      push_attrs(L, &at);
      break;
    }
    case FXP_NAME: ok = push_names(L, &r, sl->kind == FXP_READDIR); break;
    case FXP_EXTENDED_REPLY: lua_pushboolean(L, 1); break;
    default: ok = 0; break;
  }
  if (!ok || r.bad) {
    if (ok) lua_pop(L, 1);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -4, i + 1);
    lua_pushfstring(L, "%s: %s: a malformed SFTP answer", o->sess->label, sl->what);
    lua_rawseti(L, -3, i + 1);
    lua_pushliteral(L, "ESFTP");
    lua_rawseti(L, -2, i + 1);
    return;
  }
  lua_rawseti(L, -4, i + 1);
}

static int sftp_landed (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  int i;
  if (o->status != OP_DONE) {
    int n = orch_ssh_op_fail(L, o, o->nslots ? o->slots[0].what : "SFTP");
    orch_ssh_op_free(o);
    return n;
  }
  lua_createtable(L, o->nslots, 0);
  lua_newtable(L);
  lua_newtable(L);
  for (i = 0; i < o->nslots; i++) push_answer(L, o, i);
  orch_ssh_op_free(o);
  return 3;
}

/*
** sess:sftp({ {kind, ...}, ... } [, nowait]) -> answers, messages, codes: the requests
** go out together, answered in one round trip. answers[i] is request i's
** value: true (done), a handle (open, opendir), bytes (read; "" past the
** end), { type, mode, uid, gid, size, mtime } (stat, lstat, fstat), a
** path (readlink, realpath), { { name, type }.. } (readdir; false past the
** end); or false, with messages[i] ("host: path: why") and codes[i]
** (ENOENT, EACCES, ENOTSUP, EFAILURE). The server runs them in order, each
** whatever became of the others. A lost connection is nil, message, code.
**   {"stat"|"lstat"|"readlink"|"realpath"|"opendir"|"remove"|"rmdir", path}
**   {"open", path, "r"|"w"|"a" [.."x"], mode}   {"close"|"fstat"|"readdir", handle}
**   {"read", handle, offset, length}            {"write", handle, offset, bytes}
**   {"setstat", path, {mode=, uid=, gid=}}      {"fsetstat", handle, {...}}
**   {"mkdir", path, mode}  {"rename"|"posix_rename", from, to}  {"symlink", path, target}
** A request's `what` names its path in a message (for those on a handle).
** With nowait (a close no one needs to hear), nothing is returned: the
** requests go with the session's next flight and their answers are dropped.
** posix_rename replaces `to` atomically; a server without OpenSSH's
** extension for it answers ENOTSUP.
*/
static int sftp_flight (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  sftp_conn *c;
  luaL_Buffer b;
  ssh_op *o;
  int i, n;
  int nowait = lua_toboolean(L, 3);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  n = (int)luaL_len(L, 2);
  luaL_argcheck(L, n < 100000, 2, "at most 99999 requests in a flight");
  if ((c = conn_of(s)) == NULL) return luaL_error(L, "out of memory");
  o = orch_ssh_op_new(L, s, sftp_step);               /* [s, reqs, op] */
  o->sftp = 1;
  o->first_id = c->next_id;
  /* (Lua's memory, kept on this stack while the flight waits) */
  o->slots = lua_newuserdatauv(L, sizeof *o->slots * (size_t)(n ? n : 1), 0);
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    sftp_args a;
    lua_rawgeti(L, 2, i + 1);
    request_args(L, i + 1, &a);
    lua_pop(L, 1);
    o->slots[i].kind = kind_types[a.kind];
    o->slots[i].what = a.what;
    encode(&b, &a, o->first_id + (uint32_t)i);
  }
  luaL_pushresult(&b);                                /* [s, reqs, op, slots, packets] */
  o->data = lua_tolstring(L, 5, &o->len);
  o->nslots = n;
  c->next_id += (uint32_t)n;
  s->sftp_ops += n;
  if (nowait && c->phase == SC_READY) {   /* sent with the next flight, answers dropped */
    for (i = 0; i < n; i++)
      if (!conn_wait_for(c, o->first_id + (uint32_t)i, NULL, 0)) return luaL_error(L, "out of memory");
    if (!orch_ssh_buf_add(&c->out, o->data, o->len)) return luaL_error(L, "out of memory");
    return 0;
  }
  return orch_ssh_op_run(L, o, sftp_landed);
}

/* sess:sftp_start(): opens the SFTP channel in the background, while the
** session's next operation runs (its first answers cost no extra wait). */
static int sftp_start (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  if (conn_of(s) == NULL) return luaL_error(L, "out of memory");
  orch_sftp_advance(s);
  return 0;
}

static const luaL_Reg sftp_methods[] = {
  {"sftp", sftp_flight}, {"sftp_start", sftp_start}, {NULL, NULL}
};

/* [methods] -> [methods]: adds the SFTP methods to the session's */
void orch_ssh_sftp_methods (lua_State *L) {
  luaL_setfuncs(L, sftp_methods, 0);
}
