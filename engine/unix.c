/*
** unix.c: orch.core.unix, local stream sockets on the event loop, for
** orch's own processes to talk to each other (the SSH connection keeper,
** host/persist.lua). What travels is messages: a 4-byte big-endian length,
** then that many bytes. A socket is made mode 0600: only its user can
** connect, and the caller puts it in a folder only that user can enter.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "orch.h"

#define STREAM_MT "orch.unix.stream"
#define LISTENER_MT "orch.unix.listener"
#define MAX_MESSAGE (1u << 30)   /* a sanity bound: a larger length is a garbled stream */

/* ---- streams ---- */

typedef struct stream {
  orch_wait w;             /* first: the cancel hook casts back */
  int waiting;             /* a task is in recv */
  int reading;             /* uv_read_start is on */
  int ended;               /* the peer closed, or reading failed (err) */
  int err;                 /* the libuv error that ended it, or 0 for EOF */
  int refs;                /* the handle (until closed) + the Lua object */
  uv_pipe_t pipe;
  char *buf;               /* bytes received and not yet returned */
  size_t len, cap;
} stream;

typedef struct write_req { uv_write_t req; stream *s; char data[]; } write_req;

static void stream_release (stream *s) {
  if (--s->refs > 0) return;
  free(s->buf);
  free(s);
}

static void on_stream_closed (uv_handle_t *h) {
  stream_release(h->data);
}

/* The length the message at the head of the buffer says it has (the
** buffer holds its 4 bytes of length). */
static size_t stream_head (const stream *s) {
  const unsigned char *p = (const unsigned char *)s->buf;
  return ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
}

/* The length of the complete message at the head of the buffer, or -1. */
static long long stream_ready (const stream *s) {
  size_t n;
  if (s->len < 4) return -1;
  n = stream_head(s);
  return s->len - 4 >= n ? (long long)n : -1;
}

static void on_alloc (uv_handle_t *h, size_t hint, uv_buf_t *out) {
  stream *s = h->data;
  if (s->cap - s->len < 65536) {
    size_t cap = s->cap ? s->cap * 2 : 65536;
    char *d;
    while (cap - s->len < 65536) cap *= 2;
    if ((d = realloc(s->buf, cap)) == NULL) { *out = uv_buf_init(NULL, 0); return; }
    s->buf = d;
    s->cap = cap;
  }
  *out = uv_buf_init(s->buf + s->len, (unsigned)(s->cap - s->len));
}

static void stream_stop_reading (stream *s) {
  if (s->reading) uv_read_stop((uv_stream_t *)&s->pipe);
  s->reading = 0;
}

static void on_read (uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  stream *s = h->data;
  (void)b;
  if (n > 0) s->len += (size_t)n;
  else if (n < 0) {   /* UV_EOF, or a failure; UV_ENOBUFS when on_alloc had no memory */
    s->ended = 1;
    s->err = n == UV_EOF ? 0 : (int)n;
  }
  if (s->len >= 4 && stream_head(s) > MAX_MESSAGE) { s->ended = 1; s->err = UV_EPROTO; }
  if (s->ended || stream_ready(s) >= 0) {
    stream_stop_reading(s);
    if (s->waiting) orch_wake(&s->w);
  }
}

/* [..] -> [.., stream]; the pipe initialised, not yet connected */
static stream *stream_new (lua_State *L) {
  stream **box = lua_newuserdatauv(L, sizeof *box, 0);
  stream *s;
  *box = NULL;
  luaL_setmetatable(L, STREAM_MT);
  s = calloc(1, sizeof *s);
  if (s == NULL) luaL_error(L, "out of memory");
  uv_pipe_init(orch_uv(), &s->pipe, 0);
  s->pipe.data = s;
  s->refs = 2;
  *box = s;
  return s;
}

static stream *stream_check (lua_State *L) {
  stream **box = luaL_checkudata(L, 1, STREAM_MT);
  if (*box == NULL) luaL_error(L, "the stream is closed");
  return *box;
}

/* nil, "closed by the other end" | "why", CODE */
static int stream_ended (lua_State *L, stream *s) {
  if (s->err)
    return orch_failmsg(L, orch_errname(-s->err), "%s", uv_strerror(s->err));
  return orch_failmsg(L, "EOF", "closed by the other end");
}

/* [.., stream] -> [.., message]: the head message, taken out of the buffer */
static int stream_push_message (lua_State *L, stream *s, size_t n) {
  lua_pushlstring(L, s->buf + 4, n);
  s->len -= 4 + n;
  memmove(s->buf, s->buf + 4 + n, s->len);
  return 1;
}

/* A wait holds a reference: a close while it waits (by another task)
** frees the stream only once the wait is over. */
static void stream_cancel (orch_wait *w) {
  stream *s = (stream *)w;
  s->waiting = 0;
  stream_stop_reading(s);
  stream_release(s);
}

static int stream_received (lua_State *L, int status, lua_KContext ctx) {
  stream *s = (stream *)ctx;
  long long len = stream_ready(s);
  int n;
  (void)status;
  s->waiting = 0;
  if (*(stream **)luaL_checkudata(L, 1, STREAM_MT) == NULL)   /* closed by another task */
    n = orch_failmsg(L, "CLOSED", "closed");
  else if (len >= 0) n = stream_push_message(L, s, (size_t)len);
  else n = stream_ended(L, s);
  stream_release(s);
  return n;
}

/* stream:recv() -> message | nil, why, CODE ("EOF" once the other end closed) */
static int stream_recv (lua_State *L) {
  stream *s = stream_check(L);
  long long n = stream_ready(s);
  int r;
  if (n >= 0) return stream_push_message(L, s, (size_t)n);
  if (s->ended) return stream_ended(L, s);
  if (s->waiting) return orch_failmsg(L, "EBUSY", "another task is receiving on this stream");
  if ((r = uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read)) != 0) {
    s->ended = 1;
    s->err = r;
    return stream_ended(L, s);
  }
  s->reading = 1;
  orch_wait_init(&s->w);
  s->w.cancel = stream_cancel;
  s->waiting = 1;
  s->refs++;
  return orch_await(L, &s->w, (lua_KContext)s, stream_received);
}

static void on_written (uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  if (status < 0 && !w->s->ended) { w->s->ended = 1; w->s->err = status; }
  stream_release(w->s);
  free(w);
}

/* stream:send(message) -> true | nil, why, CODE. It does not wait: libuv
** writes queued messages in order, and a failure shows on the next call. */
static int stream_send (lua_State *L) {
  stream *s = stream_check(L);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  write_req *w;
  uv_buf_t b;
  int r;
  if (n > MAX_MESSAGE) return luaL_argerror(L, 2, "message too large");
  if (s->ended && s->err) return stream_ended(L, s);
  if ((w = malloc(sizeof *w + 4 + n)) == NULL) return luaL_error(L, "out of memory");
  w->s = s;
  w->data[0] = (char)(n >> 24); w->data[1] = (char)(n >> 16);
  w->data[2] = (char)(n >> 8); w->data[3] = (char)n;
  memcpy(w->data + 4, data, n);
  b = uv_buf_init(w->data, (unsigned)(4 + n));
  if ((r = uv_write(&w->req, (uv_stream_t *)&s->pipe, &b, 1, on_written)) != 0) {
    free(w);
    return orch_failmsg(L, orch_errname(-r), "%s", uv_strerror(r));
  }
  s->refs++;
  lua_pushboolean(L, 1);
  return 1;
}

/* wake: a task waiting in recv gets "closed" (not in __gc: only in
** lua_close can the stream go while a task waits on it, and then the
** task is gone too) */
static int stream_free (lua_State *L, int wake) {
  stream **box = luaL_checkudata(L, 1, STREAM_MT);
  stream *s = *box;
  if (s == NULL) return 0;
  *box = NULL;
  if (s->waiting) {
    if (wake) orch_wake(&s->w);   /* its continuation says "closed" and lets go */
    else { s->waiting = 0; stream_release(s); }   /* lua_close: the waiter is gone */
  }
  stream_stop_reading(s);
  uv_close((uv_handle_t *)&s->pipe, on_stream_closed);
  stream_release(s);
  return 0;
}

static int stream_gc (lua_State *L) { return stream_free(L, 0); }
static int stream_close_method (lua_State *L) { return stream_free(L, 1); }

/* ---- addresses ---- */

static void unix_address (lua_State *L, const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path)
    luaL_error(L, "%s: the socket's path is longer than %d bytes", path, (int)sizeof sa->sun_path - 1);
  strcpy(sa->sun_path, path);
}

/*
** unix.connect(path) -> stream | nil, "path: why", CODE
** A local connect either succeeds or is refused at once, so it is made
** here without waiting on the loop.
*/
static int unix_connect (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct sockaddr_un sa;
  stream *s;
  int fd, r;
  unix_address(L, path, &sa);
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) return orch_fail(L, path, errno);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int err = errno;
    close(fd);
    return orch_fail(L, path, err);
  }
  s = stream_new(L);
  if ((r = uv_pipe_open(&s->pipe, fd)) != 0) {
    close(fd);
    lua_pop(L, 1);   /* __gc closes the pipe */
    return orch_failmsg(L, orch_errname(-r), "%s: %s", path, uv_strerror(r));
  }
  return 1;
}

/* ---- listeners ---- */

typedef struct listener {
  orch_wait w;
  int waiting;
  int pending;             /* connections to accept */
  int err;
  int refs;
  uv_pipe_t pipe;
} listener;

static void listener_release (listener *l) {
  if (--l->refs == 0) free(l);
}

static void on_listener_closed (uv_handle_t *h) {
  listener_release(h->data);
}

static void on_connection (uv_stream_t *h, int status) {
  listener *l = h->data;
  if (status < 0) l->err = status;
  else l->pending++;
  if (l->waiting) orch_wake(&l->w);
}

static listener *listener_check (lua_State *L) {
  listener **box = luaL_checkudata(L, 1, LISTENER_MT);
  if (*box == NULL) luaL_error(L, "the listener is closed");
  return *box;
}

/*
** unix.listen(path) -> listener | nil, "path: why", CODE
** The socket is made mode 0600 before anyone can connect: it is bound
** under a umask that leaves the group and others nothing.
*/
static int unix_listen (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct sockaddr_un sa;
  listener **box, *l;
  mode_t old;
  int r;
  unix_address(L, path, &sa);
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, LISTENER_MT);
  if ((l = calloc(1, sizeof *l)) == NULL) return luaL_error(L, "out of memory");
  uv_pipe_init(orch_uv(), &l->pipe, 0);
  l->pipe.data = l;
  l->refs = 2;
  *box = l;
  old = umask(077);
  r = uv_pipe_bind(&l->pipe, path);
  umask(old);
  if (r == 0) r = uv_listen((uv_stream_t *)&l->pipe, 128, on_connection);
  if (r != 0) return orch_failmsg(L, orch_errname(-r), "%s: %s", path, uv_strerror(r));
  return 1;
}

/* As a stream's, a wait holds a reference. */
static void listener_cancel (orch_wait *w) {
  ((listener *)w)->waiting = 0;
  listener_release((listener *)w);
}

static int listener_accepted (lua_State *L, int status, lua_KContext ctx);

/* listener:accept() -> stream | nil, why, CODE ("CLOSED" once closed) */
static int listener_accept (lua_State *L) {
  listener *l = listener_check(L);
  stream *s;
  int r;
  if (l->err) return orch_failmsg(L, orch_errname(-l->err), "%s", uv_strerror(l->err));
  if (l->pending == 0) {
    if (l->waiting) return orch_failmsg(L, "EBUSY", "another task is accepting");
    orch_wait_init(&l->w);
    l->w.cancel = listener_cancel;
    l->waiting = 1;
    l->refs++;
    return orch_await(L, &l->w, (lua_KContext)l, listener_accepted);
  }
  l->pending--;
  s = stream_new(L);
  if ((r = uv_accept((uv_stream_t *)&l->pipe, (uv_stream_t *)&s->pipe)) != 0) {
    lua_pop(L, 1);
    return orch_failmsg(L, orch_errname(-r), "%s", uv_strerror(r));
  }
  return 1;
}

static int listener_accepted (lua_State *L, int status, lua_KContext ctx) {
  listener *l = (listener *)ctx;
  int closed = *(listener **)luaL_checkudata(L, 1, LISTENER_MT) == NULL;
  (void)status;
  l->waiting = 0;
  listener_release(l);
  if (closed) return orch_failmsg(L, "CLOSED", "closed");   /* by another task */
  return listener_accept(L);
}

/* wake: as stream_free */
static int listener_free (lua_State *L, int wake) {
  listener **box = luaL_checkudata(L, 1, LISTENER_MT);
  listener *l = *box;
  if (l == NULL) return 0;
  *box = NULL;
  if (l->waiting) {
    if (wake) orch_wake(&l->w);
    else { l->waiting = 0; listener_release(l); }
  }
  uv_close((uv_handle_t *)&l->pipe, on_listener_closed);
  listener_release(l);
  return 0;
}

static int listener_gc (lua_State *L) { return listener_free(L, 0); }
static int listener_close_method (lua_State *L) { return listener_free(L, 1); }

static const luaL_Reg stream_meta[] = {
  {"__gc", stream_gc}, {"__close", stream_close_method}, {NULL, NULL}
};
static const luaL_Reg stream_methods[] = {
  {"recv", stream_recv}, {"send", stream_send}, {"close", stream_close_method}, {NULL, NULL}
};
static const luaL_Reg listener_meta[] = {
  {"__gc", listener_gc}, {"__close", listener_close_method}, {NULL, NULL}
};
static const luaL_Reg listener_methods[] = {
  {"accept", listener_accept}, {"close", listener_close_method}, {NULL, NULL}
};
static const luaL_Reg unix_funcs[] = {
  {"connect", unix_connect}, {"listen", unix_listen}, {NULL, NULL}
};

int luaopen_orch_core_unix (lua_State *L) {
  orch_newclass(L, STREAM_MT, stream_meta, stream_methods);
  orch_newclass(L, LISTENER_MT, listener_meta, listener_methods);
  luaL_newlib(L, unix_funcs);
  return 1;
}
