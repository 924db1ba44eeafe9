/*
** ssh.c: orch.core.ssh, libssh2 sessions driven by the event loop: connect
** and handshake, and exec channels. One session per host carries every
** operation concurrently; ssh_auth.c adds host keys and authentication,
** sftp.c the file operations. Policy (which key, which config) is Lua's
** (orch.ssh).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ssh.h"

#define READ_CHUNK 32768


/* ---- operations on the loop ---- */

int orch_ssh_buf_add (ssh_buf *b, const char *data, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 4096;
    char *p;
    while (cap - b->len < n) cap *= 2;
    if ((p = realloc(b->data, cap)) == NULL) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return 1;
}

void orch_ssh_op_free (ssh_op *o) {
  free(o->out.data);
  free(o->err_out.data);
  o->out.data = o->err_out.data = NULL;
  if (o->signame) { free(o->signame); o->signame = NULL; }
}

static void session_poll (ssh_session *s);
static int ssh_step_exec (ssh_op *o);

/* an exec op's phases */
enum { EX_OPEN, EX_EXEC, EX_IO, EX_CLOSE, EX_FREE };

void orch_ssh_op_unqueue (ssh_op *o) {
  ssh_op **pp;
  if (!o->queued) return;
  for (pp = &o->sess->waiting; *pp; pp = &(*pp)->next)
    if (*pp == o) { *pp = o->next; break; }
  o->queued = 0;
}

/* Closes cancelled execs' channels as the peer allows: 1 if one went. */
static int session_reap (ssh_session *s) {
  int i = 0, freed = 0;
  while (i < s->ndead) {
    /* 0 or EAGAIN: close errors are libssh2's to ignore, it frees anyway */
    if (libssh2_channel_free(s->dead[i]) == LIBSSH2_ERROR_EAGAIN) { i++; continue; }
    s->dead[i] = s->dead[--s->ndead];
    freed = 1;
  }
  return freed;
}

/*
** What an op that will never step again leaves in libssh2 goes to its
** session: an exec channel is closed in the background and an SFTP
** flight's answers are dropped as they come (the session stays usable); a
** handshake or authentication cut short leaves the session's own state, so
** nothing works any more.
*/
static void session_adopt (ssh_session *s, ssh_op *o, int cancelled) {
  orch_sftp_detach(s, o);
  if (o->ch) {
    if (s->ndead == s->capdead) {
      int cap = s->capdead ? s->capdead * 2 : 4;
      LIBSSH2_CHANNEL **d = realloc(s->dead, sizeof *d * (size_t)cap);
      if (d == NULL) {   /* session_free frees the channel */
        if (s->broken < SSH_BROKEN) s->broken = SSH_BROKEN;
        return;
      }
      s->dead = d;
      s->capdead = cap;
    }
    s->dead[s->ndead++] = o->ch;
    o->ch = NULL;
  }
  if (cancelled && !o->sftp && o->step != ssh_step_exec && s->broken < SSH_BROKEN)
    s->broken = SSH_BROKEN;
}

/* Every waiting op fails with err (the socket is gone, or can't be polled). */
static void session_fail_waiting (ssh_session *s, int err) {
  while (s->waiting) {
    ssh_op *o = s->waiting;
    s->waiting = o->next;
    o->queued = 0;
    o->status = OP_FAIL;
    o->err = err;
    session_adopt(s, o, 0);
    orch_wake(&o->w);
  }
}

/* An exec op is opening its channel: libssh2 opens one channel at a time
** (the next caller would take the one on its way), so the SFTP channel's
** early start and the spare wait behind it. */
static int session_opening (ssh_session *s) {
  ssh_op *o;
  for (o = s->waiting; o; o = o->next)
    if (o->step == ssh_step_exec && o->phase == EX_OPEN) return 1;
  return 0;
}

LIBSSH2_CHANNEL *orch_ssh_channel (ssh_session *s) {
  LIBSSH2_CHANNEL *ch = s->spare;
  if (ch) {
    s->spare = NULL;
    s->ahead++;
    return ch;
  }
  return libssh2_channel_open_session(s->s);
}

/*
** Keeps a channel open ahead of the next command, so that it costs one
** round trip (the exec request and its answer), not two: a channel's open
** must be answered before anything can be asked on it. Opened behind
** whatever else waits, once the SFTP channel is not opening; a server
** that refuses it (its MaxSessions reached) gets no spare from then on.
*/
static void session_open_spare (ssh_session *s) {
  LIBSSH2_CHANNEL *ch;
  if (!s->want_spare || s->spare || s->s == NULL || orch_ssh_unusable(s) || orch_sftp_opening(s)) return;
  ch = libssh2_channel_open_session(s->s);
  if (ch) s->spare = ch;
  else if (libssh2_session_last_errno(s->s) != LIBSSH2_ERROR_EAGAIN) s->want_spare = 0;
}

/*
** Retry every waiting op. libssh2 reads whatever arrives for any channel
** while serving one op, so data for another may now sit in its buffers
** with nothing left on the socket to wake us: keep passing while anything
** moves or the socket gave anything.
*/
static void ssh_drive (ssh_session *s) {
  int progress;
  do {
    ssh_op **pp = &s->waiting;
    unsigned reads = s->reads;
    progress = 0;
    while (*pp) {
      ssh_op *o = *pp;
      int r, bad = orch_ssh_unusable(s);
      o->moved = 0;
      if (bad) { o->err = bad; r = OP_FAIL; }
      else r = o->step(o);
      if (o->moved) progress = 1;
      if (r == OP_AGAIN) { pp = &o->next; continue; }
      *pp = o->next;
      o->queued = 0;
      o->status = r;
      progress = 1;
      orch_wake(&o->w);
    }
    if (s->ndead && session_reap(s)) progress = 1;
    if (!session_opening(s)) {
      orch_sftp_advance(s);
      session_open_spare(s);
    }
    if (s->reads != reads) progress = 1;
  } while (progress && (s->waiting || s->ndead));
  session_poll(s);
}

static void on_poll (uv_poll_t *h, int status, int events) {
  ssh_session *s = h->data;
  if (status < 0) {  /* the socket is gone: every waiting op fails */
    session_fail_waiting(s, LIBSSH2_ERROR_SOCKET_DISCONNECT);
    s->ndead = 0;     /* session_free frees them */
    session_poll(s);
    return;
  }
  ssh_drive(s);
}

/*
** Listen for what libssh2 says it is blocked on (readable by default).
** Channels closing in the background keep polling but not the loop alive.
*/
static void session_poll (ssh_session *s) {
  int events = 0, dirs, rc;
  if (s->fd < 0) return;
  if (s->waiting == NULL && s->ndead == 0) {
    uv_poll_stop(&s->poll);   /* cannot fail */
    return;
  }
  dirs = s->s ? libssh2_session_block_directions(s->s) : 0;
  if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND) events |= UV_READABLE;
  if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) events |= UV_WRITABLE;
  if (s->waiting && s->waiting->phase < 0) events = UV_WRITABLE;  /* a TCP connect */
  if (events == 0) events = UV_READABLE;
  if ((rc = uv_poll_start(&s->poll, events, on_poll)) != 0) {
    /* nothing would wake the waiting ops: they fail now, with the reason */
    session_fail_waiting(s, SSH_ERRNO(-rc));
    s->ndead = 0;
    return;
  }
  if (s->waiting) uv_ref((uv_handle_t *)&s->poll);
  else uv_unref((uv_handle_t *)&s->poll);
}

static void on_deadline (uv_timer_t *t);

/* The deadline timer, set for the earliest deadline of a waiting op. */
static void session_arm_deadline (ssh_session *s) {
  uint64_t first = 0, now;
  ssh_op *o;
  if (s->fd < 0) return;
  for (o = s->waiting; o; o = o->next)
    if (o->deadline && (first == 0 || o->deadline < first)) first = o->deadline;
  if (first == 0) { uv_timer_stop(&s->deadline); return; }   /* cannot fail */
  now = uv_now(orch_uv());
  /* a timer that won't start leaves the op to the keepalive's watch */
  (void)uv_timer_start(&s->deadline, on_deadline, first > now ? first - now : 0, 0);
}

/* Ops past their deadline fail; an exec's channel closes in the background
** (the session stays usable, as after a cancel). */
static void on_deadline (uv_timer_t *t) {
  ssh_session *s = t->data;
  uint64_t now = uv_now(orch_uv());
  ssh_op **pp = &s->waiting;
  while (*pp) {
    ssh_op *o = *pp;
    if (!o->deadline || o->deadline > now) { pp = &o->next; continue; }
    *pp = o->next;
    o->queued = 0;
    session_adopt(s, o, 1);
    o->status = OP_FAIL;
    o->err = SSH_ERR_DEADLINE;
    orch_wake(&o->w);
  }
  session_arm_deadline(s);
  session_poll(s);
}

void orch_ssh_op_cancel (orch_wait *w) {
  ssh_op *o = (ssh_op *)w;
  ssh_session *s = o->sess;
  int queued = o->queued;
  session_adopt(s, o, 1);
  orch_ssh_op_unqueue(o);
  orch_ssh_op_free(o);
  if (queued) session_poll(s);
}

int orch_ssh_op_run (lua_State *L, ssh_op *o, lua_KFunction k) {
  ssh_session *s = o->sess;
  int r, bad = orch_ssh_unusable(s);
  if (bad) { o->err = bad; r = OP_FAIL; }
  else r = o->step(o);
  if (r != OP_AGAIN) {
    o->status = r;
    if (s->waiting) ssh_drive(s);   /* our reads may have fed theirs */
    return k(L, LUA_OK, (lua_KContext)o);
  }
  o->queued = 1;
  o->next = NULL;
  /* silence while nothing waited says nothing about the peer */
  if (s->waiting == NULL) s->last_recv = uv_now(orch_uv());
  {
    ssh_op **pp = &s->waiting;
    while (*pp) pp = &(*pp)->next;
    *pp = o;
  }
  if (o->deadline) session_arm_deadline(s);
  ssh_drive(s);   /* may finish o already: orch_await then calls k at once */
  return orch_await(L, &o->w, (lua_KContext)o, k);
}

ssh_op *orch_ssh_op_new (lua_State *L, ssh_session *sess, ssh_step step) {
  ssh_op *o = lua_newuserdatauv(L, sizeof *o, 0);
  memset(o, 0, sizeof *o);
  orch_wait_init(&o->w);
  o->w.cancel = orch_ssh_op_cancel;
  o->sess = sess;
  o->step = step;
  return o;
}

ssh_session *orch_ssh_check (lua_State *L, int idx) {
  ssh_session **box = luaL_checkudata(L, idx, SESSION_MT);
  if (*box == NULL || (*box)->s == NULL)
    luaL_error(L, "attempt to use a closed SSH session");
  return *box;
}

static const char *ssh_error_code (int err) {
  switch (err) {
    case LIBSSH2_ERROR_SOCKET_DISCONNECT: return "EDISCONNECTED";
    case LIBSSH2_ERROR_SOCKET_SEND: case LIBSSH2_ERROR_SOCKET_RECV: return "ESOCKET";
    case LIBSSH2_ERROR_TIMEOUT: return "ETIMEDOUT";
    case LIBSSH2_ERROR_AUTHENTICATION_FAILED: case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
      return "EAUTH";
    case LIBSSH2_ERROR_FILE: return "EKEYFILE";
    case LIBSSH2_ERROR_SFTP_PROTOCOL: return "ESFTP";
    case LIBSSH2_ERROR_CHANNEL_FAILURE: return "ECHANNEL";
    case LIBSSH2_ERROR_KEX_FAILURE: return "EKEX";
    default: return "ESSH";
  }
}

int orch_ssh_op_fail (lua_State *L, ssh_op *o, const char *what) {
  const char *msg = NULL;
  if (o->err < 0 && o->err > -10000 && o->sess->s && o->err != LIBSSH2_ERROR_SOCKET_DISCONNECT)
    libssh2_session_last_error(o->sess->s, (char **)&msg, NULL, 0);
  if (o->err == SSH_ERR_DEADLINE)
    return orch_failmsg(L, "ETIMEDOUT", "%s: %s: no answer within its timeout (the host or the network "
                        "stalled)", o->sess->label, what);
  if (o->err == SSH_ERR_DEAD)
    return orch_failmsg(L, "EHOSTDOWN", "%s: %s: the host stopped answering (no reply to keepalives for "
                        "%d s); the session is closed", o->sess->label, what, (int)(o->sess->alive_ms / 1000));
  if (o->err == SSH_ERR_BROKEN)
    return orch_failmsg(L, "EBROKEN", "%s: %s: session unusable after a cancelled handshake; "
                        "reconnect", o->sess->label, what);
  if (o->err <= -10000)  /* -errno, offset so it can't be taken for libssh2's */
    return orch_failmsg(L, orch_errname(-o->err - 10000), "%s: %s: %s", o->sess->label, what,
                        strerror(-o->err - 10000));
  if (o->err == LIBSSH2_ERROR_SOCKET_DISCONNECT)
    msg = "connection closed";
  return orch_failmsg(L, ssh_error_code(o->err), "%s: %s: %s", o->sess->label, what,
                      msg && *msg ? msg : "failed");
}


/* ---- resolving a name (uv_getaddrinfo: the loop never blocks on DNS) ---- */

typedef struct resolve_req {
  orch_wait w;
  uv_getaddrinfo_t req;
  int status;
  char addr[INET6_ADDRSTRLEN];
  int live;     /* the waiter is still there to read the result */
} resolve_req;

static void on_resolved (uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_req *r = req->data;
  if (!r->live) { free(r); if (res) uv_freeaddrinfo(res); return; }
  r->status = status;
  if (status == 0 && res) {
    if (res->ai_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, r->addr, sizeof r->addr);
    else
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, r->addr, sizeof r->addr);
  }
  if (res) uv_freeaddrinfo(res);
  orch_wake(&r->w);
}

static void resolve_cancel (orch_wait *w) {
  ((resolve_req *)w)->live = 0;  /* freed when libuv answers */
}

static int ssh_resolved (lua_State *L, int status, lua_KContext ctx) {
  resolve_req *r = (resolve_req *)ctx;
  const char *name = lua_tostring(L, 1);
  int st = r->status;
  if (st == 0) lua_pushstring(L, r->addr);
  free(r);
  if (st != 0) return orch_failmsg(L, "ERESOLVE", "%s: cannot resolve: %s", name, uv_strerror(st));
  return 1;
}

/* ssh.resolve(name) -> an address string (IP literals come straight back) */
static int ssh_resolve (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  unsigned char buf[sizeof(struct in6_addr)];
  struct addrinfo hints;
  resolve_req *r;
  int rc;
  if (inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1) {
    lua_settop(L, 1);
    return 1;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) return luaL_error(L, "out of memory");
  orch_wait_init(&r->w);
  r->w.cancel = resolve_cancel;
  r->live = 1;
  r->req.data = r;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  rc = uv_getaddrinfo(orch_uv(), &r->req, on_resolved, name, NULL, &hints);
  if (rc != 0) {
    free(r);
    return orch_failmsg(L, "ERESOLVE", "%s: cannot resolve: %s", name, uv_strerror(rc));
  }
  return orch_await(L, &r->w, (lua_KContext)r, ssh_resolved);
}


/* ---- sessions: connect and handshake ---- */

static void session_closed (uv_handle_t *h) {
  ssh_session *s = h->data;
  if (--s->handles == 0) {
    free((char *)s->label);
    free(s);
  }
}

/* What libssh2 reads and writes once we have said goodbye: nothing, at
** once, so that closing what is left never waits for the peer. */
static ssize_t session_dead_recv (libssh2_socket_t fd, void *buf, size_t len, int flags,
                                  void **abstract) {
  return -ECONNRESET;
}

static ssize_t session_dead_send (libssh2_socket_t fd, const void *buf, size_t len, int flags,
                                  void **abstract) {
  return -ECONNRESET;
}

/* What libssh2 reads, with the time bytes last came in (the keepalive's
** watch for a peer that stopped answering), and round trips: bytes in
** after bytes out is one (a burst either way counts once). */
static ssize_t session_recv (libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract) {
  ssh_session *s = *abstract;
  ssize_t n = recv(fd, buf, len, flags);
  if (n < 0) return -errno;
  if (n > 0) {
    s->last_recv = uv_now(orch_uv());
    s->reads++;
    if (s->sent) { s->round_trips++; s->sent = 0; }
  }
  return n;
}

static ssize_t session_send (libssh2_socket_t fd, const void *buf, size_t len, int flags,
                             void **abstract) {
  ssize_t n = send(fd, buf, len, flags);
  if (n < 0) return -errno;
  if (n > 0) ((ssh_session *)*abstract)->sent = 1;
  return n;
}

/*
** Ends the SSH conversation and frees it; the struct goes with its handles.
** Never waits: one non-blocking try at the goodbye (a peer that is gone
** or slow does without), then libssh2 frees the channels, the SFTP
** subsystem and the session over a socket that fails at once.
*/
static void session_shutdown (ssh_session *s) {
  if (s->s) {
    libssh2_session_set_blocking(s->s, 0);
    /* best effort: EAGAIN or an error both mean the peer does without */
    (void)libssh2_session_disconnect(s->s, "orch: done");
    libssh2_session_callback_set(s->s, LIBSSH2_CALLBACK_RECV, (void *)session_dead_recv);
    libssh2_session_callback_set(s->s, LIBSSH2_CALLBACK_SEND, (void *)session_dead_send);
    /* it fails to send, frees and returns an error: the one result it
    ** could have that matters, EAGAIN, needs I/O that can't block now */
    (void)libssh2_session_free(s->s);
    s->s = NULL;
  }
  orch_sftp_free(s);
  free(s->dead);    /* session_free freed the channels */
  s->dead = NULL;
  s->ndead = s->capdead = 0;
  s->waiting = NULL;  /* their memory is Lua's: never touched again */
  if (s->fd >= 0) {
    uv_close((uv_handle_t *)&s->poll, session_closed);
    uv_close((uv_handle_t *)&s->timer, session_closed);
    uv_close((uv_handle_t *)&s->deadline, session_closed);
    close(s->fd);
    s->fd = -1;
  }
}

static int ssh_step_connect (ssh_op *o) {
  ssh_session *s = o->sess;
  int rc;
  if (o->phase == -1) {             /* TCP connect in progress */
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr == EINPROGRESS || soerr == EALREADY) return OP_AGAIN;
    if (soerr != 0) { o->err = SSH_ERRNO(soerr); return OP_FAIL; }
    {  /* still connecting? a zero-length send says */
      struct sockaddr_storage peer;
      socklen_t plen = sizeof peer;
      if (getpeername(s->fd, (struct sockaddr *)&peer, &plen) != 0) {
        if (errno == ENOTCONN) return OP_AGAIN;
        o->err = SSH_ERRNO(errno);
        return OP_FAIL;
      }
    }
    o->phase = 0;
    o->moved = 1;
    s->round_trips = 1;   /* TCP's SYN and its answer */
  }
  rc = libssh2_session_handshake(s->s, s->fd);
  if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
  if (rc != 0) { o->err = rc; return OP_FAIL; }
  return OP_DONE;
}

static void on_connect_timeout (uv_timer_t *t) {
  ssh_session *s = t->data;
  ssh_op *o = s->waiting;
  if (o && o->step == ssh_step_connect) {
    orch_ssh_op_unqueue(o);
    o->status = OP_FAIL;
    o->err = SSH_ERRNO(ETIMEDOUT);
    orch_wake(&o->w);
    session_poll(s);
  }
}

static int ssh_connected (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  ssh_session *s = o->sess;
  uv_timer_stop(&s->timer);   /* cannot fail */
  if (o->status != OP_DONE) {
    int n = orch_ssh_op_fail(L, o, o->phase < 0 ? "cannot connect" : "SSH handshake failed");
    session_shutdown(s);
    *(ssh_session **)lua_touserdata(L, 4) = NULL;
    return n;
  }
  lua_pushvalue(L, 4);
  return 1;
}

/*
** ssh.session(address, port [, timeout]) -> session, handshaken but not
** yet authenticated (its host key still to be checked: see hostkey()).
*/
static int ssh_session_new (lua_State *L) {
  const char *addr = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  double timeout = luaL_optnumber(L, 3, 10);
  struct sockaddr_storage sa;
  socklen_t salen;
  ssh_session **box, *s;
  ssh_op *o;
  int one = 1, idle = 30, intvl = 10, cnt = 3, rc;
  lua_settop(L, 3);
  memset(&sa, 0, sizeof sa);
  if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&sa)->sin_addr) == 1) {
    ((struct sockaddr_in *)&sa)->sin_family = AF_INET;
    ((struct sockaddr_in *)&sa)->sin_port = htons(port);
    salen = sizeof(struct sockaddr_in);
  } else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&sa)->sin6_addr) == 1) {
    ((struct sockaddr_in6 *)&sa)->sin6_family = AF_INET6;
    ((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
    salen = sizeof(struct sockaddr_in6);
  } else {
    return luaL_argerror(L, 1, "an IP address (use ssh.resolve for names)");
  }
  box = lua_newuserdatauv(L, sizeof *box, 0);     /* [addr, port, t, box] */
  *box = NULL;
  luaL_setmetatable(L, SESSION_MT);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->fd = -1;
  {
    char label[INET6_ADDRSTRLEN + 16];
    snprintf(label, sizeof label, "%s:%d", addr, port);
    s->label = strdup(label);
  }
  if (s->label == NULL) { free(s); return luaL_error(L, "out of memory"); }
  s->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) { int e = errno; free((char *)s->label); free(s); return orch_fail(L, addr, e); }
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* a peer that vanishes is noticed in about a minute, not never */
  setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  if ((rc = uv_timer_init(orch_uv(), &s->timer)) != 0) {
    close(s->fd);
    free((char *)s->label);
    free(s);
    return orch_failmsg(L, orch_errname(-rc), "%s: cannot start a timer: %s", addr,
                        uv_strerror(rc));
  }
  s->timer.data = s;
  s->handles = 1;
  if ((rc = uv_timer_init(orch_uv(), &s->deadline)) != 0) {
    close(s->fd);
    uv_close((uv_handle_t *)&s->timer, session_closed);   /* frees s */
    return orch_failmsg(L, orch_errname(-rc), "%s: cannot start a timer: %s", addr, uv_strerror(rc));
  }
  s->deadline.data = s;
  s->handles = 2;
  if ((rc = uv_poll_init(orch_uv(), &s->poll, s->fd)) != 0) {
    close(s->fd);
    uv_close((uv_handle_t *)&s->timer, session_closed);
    uv_close((uv_handle_t *)&s->deadline, session_closed);   /* the last frees s */
    return orch_failmsg(L, orch_errname(-rc), "%s: cannot poll the socket: %s", addr,
                        uv_strerror(rc));
  }
  s->poll.data = s;
  s->handles = 3;
  *box = s;
  s->s = libssh2_session_init_ex(NULL, NULL, NULL, s);
  if (s->s == NULL) { session_shutdown(s); *box = NULL; return luaL_error(L, "out of memory"); }
  libssh2_session_callback_set(s->s, LIBSSH2_CALLBACK_RECV, (void *)session_recv);
  libssh2_session_callback_set(s->s, LIBSSH2_CALLBACK_SEND, (void *)session_send);
  libssh2_session_set_blocking(s->s, 0);
  o = orch_ssh_op_new(L, s, ssh_step_connect);             /* [addr, port, t, box, op] */
  o->phase = -1;
  if (connect(s->fd, (struct sockaddr *)&sa, salen) != 0 && errno != EINPROGRESS) {
    o->err = SSH_ERRNO(errno);
    o->status = OP_FAIL;
    return ssh_connected(L, LUA_OK, (lua_KContext)o);
  }
  if ((rc = uv_timer_start(&s->timer, on_connect_timeout, (uint64_t)(timeout * 1000), 0)) != 0) {
    o->err = SSH_ERRNO(-rc);
    o->status = OP_FAIL;
    return ssh_connected(L, LUA_OK, (lua_KContext)o);
  }
  return orch_ssh_op_run(L, o, ssh_connected);
}


/* ---- exec channels ---- */

static int ssh_drain (ssh_op *o, int ext) {
  char buf[READ_CHUNK];
  for (;;) {
    ssize_t n = ext ? libssh2_channel_read_stderr(o->ch, buf, sizeof buf)
                    : libssh2_channel_read(o->ch, buf, sizeof buf);
    if (n == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
    if (n < 0) { o->err = (int)n; return OP_FAIL; }
    if (n == 0) return OP_DONE;
    o->moved = 1;
    if (!orch_ssh_buf_add(ext ? &o->err_out : &o->out, buf, (size_t)n)) {
      o->err = LIBSSH2_ERROR_ALLOC;
      return OP_FAIL;
    }
  }
}

/* A failure once the channel is open: it is still closed and freed. */
static int ssh_exec_abort (ssh_op *o, int err) {
  o->err = err;
  o->phase = EX_FREE;
  return ssh_step_exec(o);
}

static int ssh_step_exec (ssh_op *o) {
  LIBSSH2_SESSION *ss = o->sess->s;
  int rc;
  switch (o->phase) {
    case EX_OPEN:
      o->ch = orch_ssh_channel(o->sess);
      if (o->ch == NULL) {
        rc = libssh2_session_last_errno(ss);
        if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
        o->err = rc;
        return OP_FAIL;
      }
      o->sess->channels++;
      o->phase = EX_EXEC;
      o->moved = 1;
      /* fall through */
    case EX_EXEC:
      rc = libssh2_channel_exec(o->ch, o->a);
      /* A command with no stdin gets its EOF at once, behind the request,
      ** not after the answer: a server that closes the channel only once
      ** it has our EOF then needn't wait a round trip for it. */
      if (rc == LIBSSH2_ERROR_EAGAIN && o->data && o->len == 0 && libssh2_channel_send_eof(o->ch) == 0)
        o->data = NULL;
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      if (rc != 0) return ssh_exec_abort(o, rc);
      o->phase = EX_IO;
      o->moved = 1;
      /* fall through */
    case EX_IO: {
      int r1, r2;
      while (o->data && o->off < o->len) {   /* stdin, as the window allows */
        ssize_t n = libssh2_channel_write(o->ch, o->data + o->off, o->len - o->off);
        if (n == LIBSSH2_ERROR_EAGAIN) break;
        if (n < 0) return ssh_exec_abort(o, (int)n);
        o->off += (size_t)n;
        o->moved = 1;
      }
      if (o->data && o->off == o->len) {
        rc = libssh2_channel_send_eof(o->ch);
        if (rc == 0) o->data = NULL;
        else if (rc != LIBSSH2_ERROR_EAGAIN) return ssh_exec_abort(o, rc);
      }
      r1 = ssh_drain(o, 0);
      r2 = ssh_drain(o, 1);
      if (r1 == OP_FAIL || r2 == OP_FAIL) return ssh_exec_abort(o, o->err);
      if (!libssh2_channel_eof(o->ch) || o->data) return OP_AGAIN;
      o->phase = EX_CLOSE;
    }
      /* fall through */
    case EX_CLOSE:
      rc = libssh2_channel_close(o->ch);
      if (rc == 0) rc = libssh2_channel_wait_closed(o->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      /* no exit status without the close: a gone peer is no exit 0 */
      if (rc != 0) return ssh_exec_abort(o, rc);
      o->code = libssh2_channel_get_exit_status(o->ch);
      rc = libssh2_channel_get_exit_signal(o->ch, &o->signame, NULL, NULL, NULL, NULL, NULL);
      if (rc != 0) return ssh_exec_abort(o, rc);
      o->phase = EX_FREE;
      /* fall through */
    case EX_FREE:
      rc = libssh2_channel_free(o->ch);   /* 0 or EAGAIN: it frees whatever the close did */
      if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
      o->ch = NULL;
      return o->err ? OP_FAIL : OP_DONE;
  }
  return OP_FAIL;
}

static int ssh_executed (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  if (o->status != OP_DONE) {
    int n = orch_ssh_op_fail(L, o, "exec failed");
    orch_ssh_op_free(o);
    return n;
  }
  lua_createtable(L, 0, 4);
  if (o->signame) {
    lua_pushstring(L, o->signame);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, o->code);
    lua_setfield(L, -2, "code");
  }
  lua_pushlstring(L, o->out.data ? o->out.data : "", o->out.len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, o->err_out.data ? o->err_out.data : "", o->err_out.len);
  lua_setfield(L, -2, "stderr");
  orch_ssh_op_free(o);
  return 1;
}

/*
** sess:exec(cmd [, stdin [, keep_open [, seconds]]]) -> { code | signal,
** stdout, stderr }. The command's stdin gets the data, then EOF (at once
** without data, as a local command reads /dev/null); keep_open leaves it
** open until the channel closes. With seconds, the exec fails (ETIMEDOUT)
** when it is not done by then, whatever the network does.
*/
static int ssh_exec (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  lua_Number secs = luaL_optnumber(L, 5, 0);
  ssh_op *o;
  luaL_checkstring(L, 2);
  luaL_optstring(L, 3, NULL);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 5, "seconds must be 0 (none) to 1e9");
  lua_settop(L, 4);
  o = orch_ssh_op_new(L, s, ssh_step_exec);
  s->want_spare = 1;   /* a host that runs one command likely runs more */
  if (secs > 0) o->deadline = uv_now(orch_uv()) + (uint64_t)(secs * 1000);
  o->a = lua_tostring(L, 2);
  o->data = lua_tolstring(L, 3, &o->len);
  if (o->data == NULL && !lua_toboolean(L, 4)) o->data = "";
  return orch_ssh_op_run(L, o, ssh_executed);
}


/* ---- the session object ---- */

/*
** A keepalive that can't be sent (the peer is gone) stops the timer: the
** next operation meets the same error and reports it. Each asks for a
** reply: while operations wait, a peer silent for alive_ms (count
** keepalives unanswered, as OpenSSH's ServerAliveCountMax) is dead; they
** fail at once and the session is closed for good.
*/
static void on_keepalive (uv_timer_t *t) {
  ssh_session *s = t->data;
  int next = 0, rc = s->s ? libssh2_keepalive_send(s->s, &next) : 0;
  if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) { uv_timer_stop(t); return; }   /* cannot fail */
  if (s->waiting && s->alive_ms && uv_now(orch_uv()) - s->last_recv > s->alive_ms) {
    s->broken = SSH_DEAD;
    session_fail_waiting(s, SSH_ERR_DEAD);
    session_poll(s);
  } else if (s->waiting) {
    session_poll(s);   /* the keepalive may wait to go out */
  }
}

/* sess:keepalive(seconds [, count]): a keepalive every `seconds`; a peer
** that answers none of `count` in a row (default 3) while work waits is dead */
static int ssh_keepalive (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  lua_Integer secs = luaL_checkinteger(L, 2);
  lua_Integer count = luaL_optinteger(L, 3, 3);
  int rc;
  luaL_argcheck(L, secs > 0 && secs <= 86400, 2, "seconds must be 1..86400");
  luaL_argcheck(L, count > 0 && count <= 1000, 3, "count must be 1..1000");
  s->alive_ms = (uint64_t)secs * (uint64_t)count * 1000;
  libssh2_keepalive_config(s->s, 1, (unsigned)secs);
  rc = uv_timer_start(&s->timer, on_keepalive, (uint64_t)secs * 1000, (uint64_t)secs * 1000);
  if (rc != 0)
    return orch_failmsg(L, orch_errname(-rc), "%s: keepalive: %s", s->label, uv_strerror(rc));
  uv_unref((uv_handle_t *)&s->timer);  /* keeps nothing alive */
  lua_pushboolean(L, 1);
  return 1;
}

/* sess:label([name]) -> the name the session's errors give (the host's
** inventory name, once connected; "address:port" until then), or sets it */
static int ssh_label (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  char *label;
  if (lua_isnoneornil(L, 2)) { lua_pushstring(L, s->label); return 1; }
  label = strdup(luaL_checkstring(L, 2));
  if (label == NULL) return luaL_error(L, "out of memory");
  free((char *)s->label);
  s->label = label;
  return 0;
}

/* sess:stats() -> { channels, sftp_ops, round_trips, channels_ahead }:
** what each host cost, and how many channels were open before they were
** asked for (the spare's) */
static int ssh_stats (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, s->round_trips);
  lua_setfield(L, -2, "round_trips");
  lua_pushinteger(L, s->channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, s->sftp_ops);
  lua_setfield(L, -2, "sftp_ops");
  lua_pushinteger(L, s->ahead);
  lua_setfield(L, -2, "channels_ahead");
  return 1;
}

/*
** sess:alive() -> whether the session can still carry work, seen without
** a round trip: not found broken or dead, and its TCP connection not
** closed by the peer. TCP_INFO's state says so even when bytes that came
** in while the session was idle (keepalive answers) still wait unread.
*/
static int ssh_alive (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  int ok = s->fd >= 0 && !orch_ssh_unusable(s);
  if (ok && getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
    ok = ti.tcpi_state == TCP_ESTABLISHED;
  lua_pushboolean(L, ok);
  return 1;
}

/* At collection no op can be waiting (each holds the session on its
** stack) but at lua_close, when their memory may already be gone. */
static int ssh_gc (lua_State *L) {
  ssh_session **box = luaL_checkudata(L, 1, SESSION_MT);
  if (*box) {
    session_shutdown(*box);
    *box = NULL;
  }
  return 0;
}

/* What the ops a close cut short point at: the real one is freed first. */
static ssh_session closed_session = { .fd = -1, .label = "closed session" };

/* sess:close(): operations other tasks still wait on fail, not hang */
static int ssh_close (lua_State *L) {
  ssh_session **box = luaL_checkudata(L, 1, SESSION_MT);
  ssh_session *s = *box;
  ssh_op *o;
  if (s == NULL) return 0;
  for (o = s->waiting; o; o = o->next) o->sess = &closed_session;
  /* their channels and handles go with the session, now */
  session_fail_waiting(s, LIBSSH2_ERROR_SOCKET_DISCONNECT);
  return ssh_gc(L);
}

static int ssh_tostring (lua_State *L) {
  ssh_session **box = luaL_checkudata(L, 1, SESSION_MT);
  if (*box) lua_pushfstring(L, "orch.ssh.session (%s)", (*box)->label);
  else lua_pushliteral(L, "orch.ssh.session (closed)");
  return 1;
}

static const luaL_Reg session_meta[] = {
  {"__gc", ssh_gc}, {"__close", ssh_close}, {"__tostring", ssh_tostring}, {NULL, NULL}
};
static const luaL_Reg session_methods[] = {
  {"exec", ssh_exec}, {"alive", ssh_alive}, {"keepalive", ssh_keepalive}, {"label", ssh_label}, {"stats", ssh_stats},
  {"close", ssh_close}, {NULL, NULL}
};
static const luaL_Reg ssh_funcs[] = {
  {"session", ssh_session_new}, {"resolve", ssh_resolve}, {NULL, NULL}
};

int luaopen_orch_core_ssh (lua_State *L) {
  if (libssh2_init(0) != 0) return luaL_error(L, "orch.core.ssh: libssh2 failed to initialise");
  orch_newclass(L, SESSION_MT, session_meta, session_methods);
  luaL_getmetatable(L, SESSION_MT);        /* [mt] */
  lua_getfield(L, -1, "__index");          /* [mt, methods] */
  orch_ssh_auth_methods(L);
  orch_ssh_sftp_methods(L);
  lua_pop(L, 2);
  luaL_newlib(L, ssh_funcs);
  return 1;
}
