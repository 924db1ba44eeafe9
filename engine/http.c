/*
** http.c: orch.core.http, an HTTP server on the event loop for webhooks:
** libmicrohttpd parses, Lua accepts and answers each complete request.
*/
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "orch.h"

#define SERVER_MT "orch.http.server"
#define REQUEST_MT "orch.http.request"
#define DRAIN_MS 1000          /* how long close lets its 503s go out */
#define DISCARD_MAX (1 << 20)  /* read past max_body, to answer 413 */

typedef struct buffer { char *data; size_t len, cap; } buffer;

/*
** An exchange is one request: made when MHD parses its request line, freed
** when MHD is done with it (on_completed), whatever Lua still holds. Once
** complete it is suspended, QUEUED for accept, ACCEPTED by Lua, then
** ANSWERED and resumed.
*/
enum { EX_READING, EX_QUEUED, EX_ACCEPTED, EX_ANSWERED };
enum { SRV_OPEN, SRV_DRAINING, SRV_STOPPED };

typedef struct exchange {
  struct server *srv;
  struct MHD_Connection *conn;
  struct exchange *prev, *next;  /* the server's suspended ones, oldest first */
  struct request *req;           /* the Lua request that owes the answer */
  int state, oom;
  char *uri, *method;            /* method set: the headers are in */
  char remote[64];
  buffer headers;                /* "name\0value\0"..., names lower-cased */
  buffer body;
  size_t seen;                   /* body bytes received */
  struct MHD_Response *resp;     /* the answer, until MHD takes it */
  unsigned status;
} exchange;

typedef struct request { exchange *ex; int answered; } request;

/*
** A connection, from MHD's notify: the time by which its next request
** must be in, head and body (0 while one is with Lua). MHD's own timeout
** counts idle time, and a client that sends a byte now and then is never
** idle: this deadline is what ends one that never finishes.
*/
typedef struct conntrack {
  struct conntrack *prev, *next;
  int fd;
  uint64_t deadline;       /* uv_now() ms, or 0 */
} conntrack;

static conntrack *http_track (struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

typedef struct server {
  orch_wait w;             /* first: the cancel hook casts back */
  int waiting;             /* a task is in accept */
  int state;
  int refs;                /* libuv handles not yet closed + the Lua object */
  int port, queued;
  int err;                 /* the libuv error that stopped the server, or 0 */
  size_t max_body;
  uint64_t request_ms;     /* how long a request may take to arrive */
  conntrack *conns;        /* every open connection */
  uint64_t drain_until;    /* uv_now() ms */
  struct MHD_Daemon *mhd;
  uv_poll_t poll;          /* on MHD's epoll fd */
  uv_timer_t timer;        /* MHD's timeouts, and runs after a resume */
  exchange *head, *tail;   /* suspended, owed an answer */
  char address[64];
} server;

static int http_buf_add (buffer *b, const char *s, size_t n) {
  if (n == 0) return 1;
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 256;
    char *d;
    while (cap - b->len < n) cap *= 2;
    if ((d = realloc(b->data, cap)) == NULL) return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 1;
}

static void http_buf_free (buffer *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* "127.0.0.1:8080" or "[::1]:8080" */
static void http_format_addr (const struct sockaddr *sa, char *out, size_t n) {
  int v6 = sa->sa_family == AF_INET6;
  char ip[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  getnameinfo(sa, v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
              ip, sizeof ip, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  snprintf(out, n, v6 ? "[%s]:%s" : "%s:%s", ip, port);
}


/* ---- the daemon on the loop ---- */

static void server_release (server *s) {
  if (--s->refs == 0) free(s);
}

static void on_handle_closed (uv_handle_t *h) {
  server_release(h->data);
}

static void on_timer (uv_timer_t *t);
static void server_stop (server *s);

/*
** Runs MHD again in ms. A timer that won't start (it fails only on a
** closing handle) would leave requests unanswered: the server stops,
** and accept says why.
*/
static void http_arm (server *s, uint64_t ms) {
  int r = uv_timer_start(&s->timer, on_timer, ms, 0);
  if (r == 0) return;
  s->err = r;
  server_stop(s);
  if (s->waiting) orch_wake(&s->w);
}

/* MHD acts on a resume only in its next MHD_run. */
static void server_kick (server *s) {
  if (s->state != SRV_STOPPED) http_arm(s, 0);
}

static void http_unlink_exchange (server *s, exchange *ex) {
  if (ex->prev) ex->prev->next = ex->next; else s->head = ex->next;
  if (ex->next) ex->next->prev = ex->prev; else s->tail = ex->prev;
  ex->prev = ex->next = NULL;
  if (ex->state == EX_QUEUED) s->queued--;
}

static struct MHD_Response *http_text_response (const char *text) {
  return MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
}

/* Gives a suspended exchange its answer; MHD sends it once resumed. */
static void http_answer (exchange *ex, unsigned status, struct MHD_Response *resp) {
  http_unlink_exchange(ex->srv, ex);
  if (ex->req) { ex->req->ex = NULL; ex->req = NULL; }
  ex->state = EX_ANSWERED;
  ex->status = status;
  ex->resp = resp;
  MHD_resume_connection(ex->conn);
  server_kick(ex->srv);
}

static enum MHD_Result http_queue_answer (struct MHD_Connection *c, unsigned status,
                                     struct MHD_Response *resp) {
  enum MHD_Result r;
  if (resp == NULL) return MHD_NO;   /* out of memory: drop the connection */
  r = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);        /* MHD keeps its own reference */
  return r;
}

/* The only place MHD shows the raw URI, query and all. */
static void *on_uri (void *cls, const char *uri, struct MHD_Connection *c) {
  exchange *ex = calloc(1, sizeof *ex);
  const union MHD_ConnectionInfo *ci;
  if (ex == NULL) return NULL;
  ex->srv = cls;
  ex->conn = c;
  if ((ex->uri = strdup(uri)) == NULL) { free(ex); return NULL; }
  ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) http_format_addr(ci->client_addr, ex->remote, sizeof ex->remote);
  return ex;
}

/* Copied, so that Lua later reads our memory, never MHD's. */
static enum MHD_Result on_header (void *cls, enum MHD_ValueKind kind,
                                  const char *name, const char *value) {
  exchange *ex = cls;
  size_t i = ex->headers.len;
  if (value == NULL) value = "";
  if (!http_buf_add(&ex->headers, name, strlen(name) + 1)
      || !http_buf_add(&ex->headers, value, strlen(value) + 1)) {
    ex->oom = 1;
    return MHD_NO;
  }
  for (; ex->headers.data[i]; i++)
    if (ex->headers.data[i] >= 'A' && ex->headers.data[i] <= 'Z') ex->headers.data[i] += 32;
  return MHD_YES;
}

/*
** Called on the headers, on each body chunk, once at the end, and again
** after a resume. A complete request is suspended until Lua answers, so a
** slow handler holds only its own connection.
*/
static enum MHD_Result on_request (void *cls, struct MHD_Connection *c,
    const char *url, const char *method, const char *version,
    const char *data, size_t *size, void **ctx) {
  server *s = cls;
  exchange *ex = *ctx;
  if (ex == NULL) return MHD_NO;     /* on_uri ran out of memory */
  if (ex->state == EX_ANSWERED) {
    struct MHD_Response *resp = ex->resp;
    ex->resp = NULL;
    return http_queue_answer(c, ex->status, resp);
  }
  if (s->state != SRV_OPEN) return http_queue_answer(c, 503, http_text_response("server closed\n"));
  if (ex->method == NULL) {
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    /* Refused before the body is read (and before any 100 Continue). */
    if (cl && strtoull(cl, NULL, 10) > s->max_body)
      return http_queue_answer(c, 413, http_text_response("request body too large\n"));
    if ((ex->method = strdup(method)) == NULL) return MHD_NO;
    MHD_get_connection_values(c, MHD_HEADER_KIND, on_header, ex);
    return ex->oom ? MHD_NO : MHD_YES;
  }
  if (*size > 0) {
    /* A chunked body has no length up front, and MHD 0.9.75 answers only
    ** once the body is in: the rest is read and dropped, up to a point. */
    ex->seen += *size;
    if (ex->seen > s->max_body) {
      http_buf_free(&ex->body);
      if (ex->seen - s->max_body > DISCARD_MAX) return MHD_NO;
    } else if (!http_buf_add(&ex->body, data, *size)) {
      return MHD_NO;
    }
    *size = 0;
    return MHD_YES;
  }
  if (ex->seen > s->max_body)
    return http_queue_answer(c, 413, http_text_response("request body too large\n"));
  {
    conntrack *t = http_track(c);
    if (t) t->deadline = 0;   /* it is in: Lua takes its time */
  }
  ex->state = EX_QUEUED;
  ex->prev = s->tail;
  if (s->tail) s->tail->next = ex; else s->head = ex;
  s->tail = ex;
  s->queued++;
  MHD_suspend_connection(c);
  if (s->waiting) orch_wake(&s->w);
  return MHD_YES;
}

/* Connections come and go: each is tracked for its deadline. */
static void on_connection (void *cls, struct MHD_Connection *c, void **socket_ctx,
                           enum MHD_ConnectionNotificationCode code) {
  server *s = cls;
  conntrack *t = *socket_ctx;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL || (t = calloc(1, sizeof *t)) == NULL) return;   /* untracked: MHD's timeout still holds */
    t->fd = ci->connect_fd;
    t->deadline = uv_now(orch_uv()) + s->request_ms;
    t->next = s->conns;
    if (s->conns) s->conns->prev = t;
    s->conns = t;
    *socket_ctx = t;
  } else if (t != NULL) {
    if (t->prev) t->prev->next = t->next; else s->conns = t->next;
    if (t->next) t->next->prev = t->prev;
    free(t);
    *socket_ctx = NULL;
  }
}

static void on_completed (void *cls, struct MHD_Connection *c, void **ctx,
                          enum MHD_RequestTerminationCode toe) {
  exchange *ex = *ctx;
  conntrack *t = http_track(c);
  server *s = cls;
  /* kept alive: its next request has the same time to arrive */
  if (t) t->deadline = uv_now(orch_uv()) + s->request_ms;
  if (ex == NULL) return;
  *ctx = NULL;
  if (ex->state == EX_QUEUED || ex->state == EX_ACCEPTED) http_unlink_exchange(ex->srv, ex);
  if (ex->req) ex->req->ex = NULL;
  if (ex->resp) MHD_destroy_response(ex->resp);
  http_buf_free(&ex->headers);
  http_buf_free(&ex->body);
  free(ex->uri);
  free(ex->method);
  free(ex);
}

static void server_stop (server *s) {
  if (s->state == SRV_STOPPED) return;
  s->state = SRV_STOPPED;
  uv_poll_stop(&s->poll);    /* before MHD closes the fd it watches; cannot fail */
  MHD_stop_daemon(s->mhd);   /* on_completed frees what is left */
  s->mhd = NULL;
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

static unsigned http_connections (server *s) {
  const union MHD_DaemonInfo *di =
    MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return di ? di->num_connections : 0;
}

/*
** Ends the connections past their deadline: shutdown, not close, as MHD
** owns the socket; its next read sees the end and it closes as usual.
** Returns the ms until the next deadline, or 0 if none is set.
*/
static uint64_t http_expire (server *s) {
  uint64_t now = uv_now(orch_uv()), next = 0;
  conntrack *t;
  for (t = s->conns; t; t = t->next) {
    if (t->deadline == 0) continue;
    if (t->deadline <= now) {
      shutdown(t->fd, SHUT_RDWR);
      t->deadline = 0;
    } else if (next == 0 || t->deadline - now < next) {
      next = t->deadline - now;
    }
  }
  return next;
}

/* MHD does its work, then says when it next needs to run. */
static void server_run (server *s) {
  MHD_UNSIGNED_LONG_LONG ms = 0;
  unsigned before;
  uint64_t expiry;
  int timed;
  if (s->state == SRV_STOPPED) return;
  before = http_connections(s);
  MHD_run(s->mhd);
  timed = MHD_get_timeout(s->mhd, &ms) == MHD_YES;
  if ((expiry = http_expire(s)) != 0 && (!timed || expiry < ms)) { ms = expiry; timed = 1; }
  /* At max_connections MHD stops watching the listen socket, and watches
  ** it again only at the start of a run: run again once one has gone. */
  if (http_connections(s) < before) { ms = 0; timed = 1; }
  if (s->state == SRV_DRAINING) {
    uint64_t now = uv_now(orch_uv());
    if (http_connections(s) == 0 || now >= s->drain_until) {
      server_stop(s);
      return;
    }
    if (!timed || ms > s->drain_until - now) { ms = s->drain_until - now; timed = 1; }
  }
  if (timed) http_arm(s, ms);
  else uv_timer_stop(&s->timer);   /* cannot fail */
}

static void on_poll (uv_poll_t *p, int status, int events) {
  server_run(p->data);
}

static void on_timer (uv_timer_t *t) {
  server_run(t->data);
}

/*
** Stops listening at once (the port is free when this returns), answers
** 503 to every request still owed an answer, wakes accept, and lets the
** loop send those before MHD stops.
*/
static void server_close (server *s) {
  MHD_socket fd;
  if (s->state != SRV_OPEN) return;
  s->state = SRV_DRAINING;
  s->drain_until = uv_now(orch_uv()) + DRAIN_MS;
  if ((fd = MHD_quiesce_daemon(s->mhd)) != MHD_INVALID_SOCKET) close(fd);
  while (s->head) {
    struct MHD_Response *resp = http_text_response("server closed\n");
    if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    http_answer(s->head, 503, resp);
  }
  if (s->waiting) orch_wake(&s->w);
  server_kick(s);
}


/* ---- Lua: the server ---- */

static server *http_checkserver (lua_State *L) {
  server **box = luaL_checkudata(L, 1, SERVER_MT);
  luaL_argcheck(L, *box != NULL, 1, "server is released");
  return *box;
}

/* A typo in an option is a bug in the caller: raise, naming it. */
static lua_Integer http_opt_integer (lua_State *L, const char *name, lua_Integer dflt, lua_Integer min) {
  lua_Integer v = dflt;
  if (lua_getfield(L, 1, name) != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "%s must be an integer, got %s", name,
                                          luaL_typename(L, -1)));
    if ((v = lua_tointeger(L, -1)) < min)
      luaL_argerror(L, 1, lua_pushfstring(L, "%s must be at least %d", name, (int)min));
  }
  lua_pop(L, 1);
  return v;
}

static void http_check_options (lua_State *L) {
  static const char *const known[] = {"host", "port", "max_body", "timeout",
                                      "max_connections", "max_per_address", "request_timeout", NULL};
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int i = 0;
    while (known[i] && (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), known[i])))
      i++;
    if (known[i] == NULL)
      luaL_error(L, "http.listen: unknown option '%s'", luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
}

/* A bound, listening, non-blocking socket, or -1 with errno set. */
static int http_listen_on (const struct sockaddr *sa, socklen_t len, int backlog) {
  int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  /* Rebinding while old connections sit in TIME_WAIT; a listener still
  ** holding the port is refused all the same. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, sa, len) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

/*
** http.listen{ host = "127.0.0.1", port = 0, max_body = 1 MiB, timeout = 30,
**   max_connections = 64, max_per_address = 8, request_timeout = 10 }
**   -> server | nil, "host:port: reason", "CODE"
** timeout is MHD's, for idle connections; request_timeout bounds the time
** a request (head and body) takes to arrive, however it trickles in; one
** client address holds at most max_per_address connections, so room is
** left for the others.
** We bind the socket ourselves, so errno reaches the caller intact. MHD
** runs without threads: the loop drives it through its epoll fd.
*/
static int http_listen (lua_State *L) {
  struct addrinfo hints, *ai;
  struct sockaddr_storage ss;
  socklen_t len;
  server **box, *s;
  const char *host;
  lua_Integer port, max_body, timeout, max_conns, per_address, request_timeout;
  int fd, r;
  char subject[80], service[8];
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  http_check_options(L);
  if (lua_getfield(L, 1, "host") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
    return luaL_argerror(L, 1, lua_pushfstring(L, "host must be a string, got %s",
                                               luaL_typename(L, -1)));
  host = lua_isnil(L, -1) ? "127.0.0.1" : lua_tostring(L, -1);   /* [opts, host] */
  port = http_opt_integer(L, "port", 0, 0);
  max_body = http_opt_integer(L, "max_body", 1048576, 0);
  timeout = http_opt_integer(L, "timeout", 30, 1);
  max_conns = http_opt_integer(L, "max_connections", 64, 1);
  per_address = http_opt_integer(L, "max_per_address", 8, 1);
  request_timeout = http_opt_integer(L, "request_timeout", 10, 1);
  luaL_argcheck(L, port <= 65535, 1, "port must be 0..65535");
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;   /* never a lookup */
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof service, "%d", (int)port);
  if (getaddrinfo(host, service, &hints, &ai) != 0)
    return luaL_error(L, "host must be a numeric IP address, got '%s'", host);
  memcpy(&ss, ai->ai_addr, len = ai->ai_addrlen);
  freeaddrinfo(ai);
  http_format_addr((struct sockaddr *)&ss, subject, sizeof subject);
  box = lua_newuserdatauv(L, sizeof *box, 1);    /* [opts, host, box] */
  *box = NULL;
  luaL_setmetatable(L, SERVER_MT);
  if ((fd = http_listen_on((struct sockaddr *)&ss, len, (int)max_conns)) < 0)
    return orch_fail(L, subject, errno);
  if ((s = calloc(1, sizeof *s)) == NULL) { close(fd); return luaL_error(L, "out of memory"); }
  getsockname(fd, (struct sockaddr *)&ss, &len);   /* port 0: the one we got */
  http_format_addr((struct sockaddr *)&ss, s->address, sizeof s->address);
  s->port = atoi(strrchr(s->address, ':') + 1);
  s->max_body = (size_t)max_body;
  s->request_ms = (uint64_t)request_timeout * 1000;
  s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME
                            | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
    0, NULL, NULL, on_request, s,
    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)timeout,
    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_conns,
    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_address,
    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
    MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
    MHD_OPTION_END);
  r = s->mhd ? uv_poll_init(orch_uv(), &s->poll,
                 MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd) : UV_EINVAL;
  if (r != 0) {
    if (s->mhd) MHD_stop_daemon(s->mhd); else close(fd);  /* MHD closes fd */
    free(s);
    return orch_failmsg(L, orch_errname(-r), "%s: cannot start the server: %s",
                        subject, uv_strerror(r));
  }
  s->poll.data = s;
  s->refs = 3;                                   /* poll, timer, box */
  *box = s;
  if ((r = uv_timer_init(orch_uv(), &s->timer)) != 0) {
    s->refs = 2;   /* no timer to close */
    s->state = SRV_STOPPED;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
  } else {
    s->timer.data = s;
    if ((r = uv_poll_start(&s->poll, UV_READABLE, on_poll)) != 0) server_stop(s);
  }
  if (r != 0)   /* the box releases s */
    return orch_failmsg(L, orch_errname(-r), "%s: cannot start the server: %s", subject,
                        uv_strerror(r));
  server_kick(s);
  lua_createtable(L, 0, 1);                      /* [.., box, fields] */
  lua_pushinteger(L, s->port);
  lua_setfield(L, -2, "port");
  lua_setiuservalue(L, -2, 1);                   /* [.., box] */
  return 1;
}

static void server_cancel (orch_wait *w) {
  ((server *)w)->waiting = 0;
}

/* [.., t] -> [.., t]: t[name] = the string */
static void http_set_string (lua_State *L, const char *name, const char *str, size_t len) {
  lua_pushlstring(L, str, len);
  lua_setfield(L, -2, name);
}

/* [..] -> [.., headers]: repeated names joined with ", " as HTTP allows */
static void http_push_headers (lua_State *L, const buffer *b) {
  const char *p = b->data, *end = b->data + b->len;
  lua_newtable(L);
  while (p && p < end) {
    const char *value = p + strlen(p) + 1;
    lua_pushstring(L, p);                        /* [.., h, name] */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) lua_pushstring(L, value);
    else lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), value);
    lua_remove(L, -2);                           /* [.., h, name, value] */
    lua_rawset(L, -3);
    p = value + strlen(value) + 1;
  }
}

/* [..] -> [.., req]: the oldest queued request, now owed by Lua */
static int http_push_request (lua_State *L, server *s) {
  exchange *ex;
  const char *q;
  request *r = lua_newuserdatauv(L, sizeof *r, 1);
  r->ex = NULL;
  r->answered = 0;
  luaL_setmetatable(L, REQUEST_MT);
  /* Collection runs no MHD code, so ex stays valid across allocations;
  ** linked first, so that an error below leaves __gc to answer it. */
  for (ex = s->head; ex->state != EX_QUEUED; ex = ex->next) {}
  s->queued--;
  ex->state = EX_ACCEPTED;
  ex->req = r;
  r->ex = ex;
  lua_createtable(L, 0, 6);                      /* [.., req, fields] */
  q = strchr(ex->uri, '?');
  http_set_string(L, "path", ex->uri, q ? (size_t)(q - ex->uri) : strlen(ex->uri));
  if (q) http_set_string(L, "query", q + 1, strlen(q + 1));
  http_set_string(L, "body", ex->body.data ? ex->body.data : "", ex->body.len);
  http_set_string(L, "method", ex->method, strlen(ex->method));
  http_set_string(L, "remote", ex->remote, strlen(ex->remote));
  http_push_headers(L, &ex->headers);
  lua_setfield(L, -2, "headers");
  lua_setiuservalue(L, -2, 1);                   /* [.., req] */
  http_buf_free(&ex->body);
  http_buf_free(&ex->headers);
  return 1;
}

/* nil, "closed", "CLOSED", or why the loop could no longer drive MHD */
static int http_closed (lua_State *L, server *s) {
  if (s->err)
    return orch_failmsg(L, orch_errname(-s->err), "%s: stopped: %s", s->address,
                        uv_strerror(s->err));
  return orch_failmsg(L, "CLOSED", "closed");
}

static int server_accepted (lua_State *L, int status, lua_KContext ctx) {
  server *s = http_checkserver(L);
  s->waiting = 0;
  if (s->state != SRV_OPEN) return http_closed(L, s);
  return http_push_request(L, s);   /* woken by an arrival: one is queued */
}

/* srv:accept() -> request | nil, "closed" | nil, "busy" (another waits) */
static int server_accept (lua_State *L) {
  server *s = http_checkserver(L);
  if (s->state != SRV_OPEN) return http_closed(L, s);
  if (s->queued > 0) return http_push_request(L, s);
  if (s->waiting) return orch_failmsg(L, "BUSY", "busy");
  orch_wait_init(&s->w);
  s->w.cancel = server_cancel;
  s->waiting = 1;
  return orch_await(L, &s->w, 0, server_accepted);
}

static int server_close_method (lua_State *L) {
  server_close(http_checkserver(L));
  return 0;
}

static int server_gc (lua_State *L) {
  server **box = luaL_checkudata(L, 1, SERVER_MT);
  server *s = *box;
  if (s == NULL) return 0;
  *box = NULL;
  s->waiting = 0;   /* only in lua_close can a waiter's thread be gone first */
  server_close(s);
  server_release(s);
  return 0;
}

static int server_address (lua_State *L) {
  lua_pushstring(L, http_checkserver(L)->address);
  return 1;
}

/* srv:pending() -> requests that arrived and wait for accept */
static int server_pending (lua_State *L) {
  lua_pushinteger(L, http_checkserver(L)->queued);
  return 1;
}

static int server_tostring (lua_State *L) {
  server **box = luaL_checkudata(L, 1, SERVER_MT);
  lua_pushfstring(L, "orch.http.server (%s)", *box ? (*box)->address : "released");
  return 1;
}

/* ---- Lua: the request ---- */

/* 0 when a header is not two strings, or MHD refuses it (a line break,
** or one it sets itself): [.., name] is left for the message. */
static int http_add_headers (lua_State *L, int idx, struct MHD_Response *resp) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {                     /* [.., name, value] */
    int ok = lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING
          && MHD_add_response_header(resp, lua_tostring(L, -2), lua_tostring(L, -1)) == MHD_YES;
    lua_pop(L, 1);
    if (!ok) return 0;
  }
  return 1;
}

/* req:respond(status, body?, headers?) -> true | nil, "closed" (server closed first) */
static int request_respond (lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  lua_Integer status = luaL_checkinteger(L, 2);
  size_t len;
  const char *body = luaL_optlstring(L, 3, "", &len);
  struct MHD_Response *resp;
  luaL_argcheck(L, status >= 100 && status <= 599, 2, "not an HTTP status");
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  if (r->answered) return luaL_error(L, "request already answered");
  if (r->ex == NULL) return orch_failmsg(L, "CLOSED", "closed");
  resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL) return luaL_error(L, "out of memory");
  if (!lua_isnoneornil(L, 4) && !http_add_headers(L, 4, resp)) {
    MHD_destroy_response(resp);                  /* before raising: no leak */
    return luaL_error(L, "header %s refused: names and values must be strings, "
                      "without line breaks or ones MHD sets itself",
                      luaL_tolstring(L, -1, NULL));
  }
  r->answered = 1;
  http_answer(r->ex, (unsigned)status, resp);
  lua_pushboolean(L, 1);
  return 1;
}

/* Dropped unanswered: the client gets a 500, not a hang. */
static int request_gc (lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  if (r->ex) {
    r->answered = 1;
    http_answer(r->ex, 500, http_text_response("no response\n"));
  }
  return 0;
}

/* Fields (user value 1: srv.port, req.path...) first, then methods (upvalue 1). */
static int http_index_fields (lua_State *L) {
  lua_getiuservalue(L, 1, 1);                    /* [req, key, fields] */
  lua_pushvalue(L, 2);
  if (lua_istable(L, -2) && lua_rawget(L, -2) != LUA_TNIL) return 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}


/* Like orch_newclass, but __index is fn with the methods as upvalue 1. */
static void http_new_class (lua_State *L, const char *name, const luaL_Reg *meta,
                       const luaL_Reg *methods, lua_CFunction index) {
  luaL_newmetatable(L, name);                    /* [mt] */
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);                               /* [mt, methods] */
  luaL_setfuncs(L, methods, 0);
  lua_pushcclosure(L, index, 1);                 /* [mt, index] */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

static const luaL_Reg server_meta[] = {
  {"__gc", server_gc}, {"__close", server_close_method},
  {"__tostring", server_tostring}, {NULL, NULL}
};
static const luaL_Reg server_methods[] = {
  {"accept", server_accept}, {"close", server_close_method},
  {"address", server_address}, {"pending", server_pending}, {NULL, NULL}
};
static const luaL_Reg request_meta[] = {
  {"__gc", request_gc}, {"__close", request_gc}, {NULL, NULL}
};
static const luaL_Reg request_methods[] = {{"respond", request_respond}, {NULL, NULL}};
static const luaL_Reg http_funcs[] = {
  {"listen", http_listen},
  {NULL, NULL}
};

int luaopen_orch_core_http (lua_State *L) {
  http_new_class(L, SERVER_MT, server_meta, server_methods, http_index_fields);
  http_new_class(L, REQUEST_MT, request_meta, request_methods, http_index_fields);
  luaL_newlib(L, http_funcs);
  return 1;
}
