/*
** proc.c: orch.core.proc, child processes on the event loop: argv, env,
** cwd, stdin data, captured or streamed output, and a timeout that kills
** the whole process group.
**
** Children start with posix_spawn (launch.c), not libuv's fork, which
** copied the page tables of all orch has mapped (Lua heap, SQLite, libssh2,
** libcrypto) only for the exec to throw them away: 2,000 runs of `true`
** took 2.6 s rather than 1.1 s. Exits come from a pidfd on the loop.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orch.h"
#include "launch.h"

#define PROC_MT "orch.proc"
#define READ_CHUNK 65536

extern char **environ;

typedef struct buffer { char *data; size_t len, cap, seen; } buffer;

enum { NOT_WAITING, WAIT_EXIT, WAIT_READ };

typedef struct proc {
  orch_wait w;             /* first: the cancel hook casts back */
  int waiting;
  uv_poll_t exit_watch;    /* the pidfd: readable once the child has exited */
  uv_pipe_t out, err, in;
  uv_timer_t timer;
  uv_write_t write_req;
  orch_child child;
  int refs;                /* handles not yet closed + the Lua object */
  int pid;                 /* also its group's id; the group outlives it */
  int pidfd;
  int exited, out_open, err_open, timer_open;
  int timed_out;
  int64_t status;
  int termsig;
  double timeout, grace;
  uint64_t started, ended; /* uv_hrtime */
  buffer stdout_buf, stderr_buf;
  char *input;             /* stdin data, until written */
} proc;

static void proc_release (proc *p) {
  if (--p->refs > 0) return;
  free(p->stdout_buf.data);
  free(p->stderr_buf.data);
  free(p->input);
  free(p);
}

static void on_closed (uv_handle_t *h) {
  proc_release(h->data);
}

static void proc_close_once (uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_closed);
}

static int proc_is_done (proc *p) {
  return p->exited && !p->out_open && !p->err_open;
}

static void proc_check_done (proc *p) {
  if (!proc_is_done(p)) return;
  if (p->timer_open) { p->timer_open = 0; proc_close_once((uv_handle_t *)&p->timer); }
  if (p->waiting != NOT_WAITING) orch_wake(&p->w);
}

static void on_watch_closed (uv_handle_t *h) {
  proc *p = h->data;
  close(p->pidfd);   /* libuv has stopped polling it */
  proc_release(p);
}

/*
** The pidfd is readable: the child has exited. Only we reap it (nothing
** else in orch spawns, so there is no SIGCHLD handler), hence no zombie
** and no pid reused under us before this waitpid.
*/
static void on_child_exit (uv_poll_t *h, int status, int events) {
  proc *p = h->data;
  int ws = 0;
  pid_t r;
  do r = waitpid(p->pid, &ws, WNOHANG); while (r < 0 && errno == EINTR);
  if (r == 0) return;   /* not yet: keep watching */
  orch_reaped(p->pid);
  p->exited = 1;
  if (r < 0) p->status = -1;   /* ECHILD: reaped by someone else, status lost */
  else if (WIFEXITED(ws)) p->status = WEXITSTATUS(ws);
  else if (WIFSIGNALED(ws)) p->termsig = WTERMSIG(ws);
  p->ended = uv_hrtime();
  /* After a timeout the rest of the group goes too, pipes and all. */
  if (p->timed_out) kill(-p->pid, SIGKILL);
  p->child.pid = 0;
  orch_child_remove(&p->child);
  uv_close((uv_handle_t *)h, on_watch_closed);
  proc_check_done(p);
}

static void on_alloc (uv_handle_t *h, size_t hint, uv_buf_t *b) {
  proc *p = h->data;
  buffer *buf = (h == (uv_handle_t *)&p->out) ? &p->stdout_buf : &p->stderr_buf;
  if (buf->cap - buf->len < READ_CHUNK) {
    size_t cap = buf->cap ? buf->cap * 2 : READ_CHUNK;
    char *data;
    while (cap - buf->len < READ_CHUNK) cap *= 2;
    data = realloc(buf->data, cap);
    if (data == NULL) { b->base = NULL; b->len = 0; return; }  /* UV_ENOBUFS */
    buf->data = data;
    buf->cap = cap;
  }
  b->base = buf->data + buf->len;
  b->len = buf->cap - buf->len;
}

static void on_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  proc *p = s->data;
  int is_out = (s == (uv_stream_t *)&p->out);
  if (nread > 0) {
    (is_out ? &p->stdout_buf : &p->stderr_buf)->len += nread;
  } else if (nread < 0) {   /* EOF, or an error that ends the stream alike */
    if (is_out) p->out_open = 0; else p->err_open = 0;
    proc_close_once((uv_handle_t *)s);
  }
  if (p->waiting == WAIT_READ && nread != 0) orch_wake(&p->w);
  proc_check_done(p);
}

static void on_written (uv_write_t *req, int status) {
  proc *p = req->data;
  free(p->input);
  p->input = NULL;
  proc_close_once((uv_handle_t *)&p->in);   /* EOF for the child's stdin */
}

/* Polite first (TERM), then KILL after the grace period. */
static void on_timeout (uv_timer_t *t) {
  proc *p = t->data;
  if (!p->timed_out) {
    p->timed_out = 1;
    if (!p->exited) {
      kill(-p->pid, SIGTERM);
      /* no grace period without a timer: KILL now */
      if (uv_timer_start(t, on_timeout, (uint64_t)(p->grace * 1000), 0) == 0) return;
    }
  }
  kill(-p->pid, SIGKILL);
  /* Exited but grandchildren hold the pipes: stop listening to them. */
  if (p->out_open) { p->out_open = 0; proc_close_once((uv_handle_t *)&p->out); }
  if (p->err_open) { p->err_open = 0; proc_close_once((uv_handle_t *)&p->err); }
  proc_check_done(p);
}


/* ---- spawning ---- */

static proc *proc_check (lua_State *L) {
  proc **box = luaL_checkudata(L, 1, PROC_MT);
  luaL_argcheck(L, *box != NULL, 1, "process object is released");
  return *box;
}

/*
** Pops the string (or number) at the top into the keep table at index
** keep, so that the returned chars outlive the spawn; NULL if not a string.
*/
static const char *proc_keep_top (lua_State *L, int keep) {
  const char *s;
  if (!lua_isstring(L, -1)) return NULL;
  s = lua_tostring(L, -1);
  lua_rawseti(L, keep, luaL_len(L, keep) + 1);
  return s;
}

/* [..] -> [.., array]: argv[i] from the table at idx (or sh -c). */
static char **proc_build_argv (lua_State *L, int opts, int keep) {
  lua_Integer i, n;
  char **argv;
  lua_getfield(L, opts, "cmd");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 1, lua_pushfstring(L, "cmd must be a string, got %s", luaL_typename(L, -1)));
    argv = lua_newuserdatauv(L, sizeof(char *) * 4, 0);
    lua_insert(L, -2);
    argv[0] = "/bin/sh"; argv[1] = "-c";
    argv[2] = (char *)proc_keep_top(L, keep);
    argv[3] = NULL;
    return argv;
  }
  lua_pop(L, 1);
  lua_getfield(L, opts, "argv");
  if (!lua_istable(L, -1))
    luaL_argerror(L, 1, "needs argv (a list of strings) or cmd (a shell string)");
  n = luaL_len(L, -1);
  if (n < 1) luaL_error(L, "argv is empty");   /* this wording is spec'd (proc_spec) */
  argv = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);  /* [.., t, a] */
  for (i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    if ((argv[i - 1] = (char *)proc_keep_top(L, keep)) == NULL)
      luaL_argerror(L, 1, lua_pushfstring(L, "argv[%d] must be a string, got %s", (int)i,
                                          luaL_typename(L, -1)));
  }
  argv[n] = NULL;
  lua_remove(L, -2);
  return argv;
}

/*
** [..] -> [.., array]: the parent's environment (unless clear_env) with
** the env table's entries added, or removed where they are false.
*/
static char **proc_build_env (lua_State *L, int opts, int keep) {
  int vars, n = 0, i;
  char **env;
  lua_newtable(L);                               /* [.., vars] */
  vars = lua_gettop(L);
  lua_getfield(L, opts, "clear_env");
  if (!lua_toboolean(L, -1)) {
    for (i = 0; environ[i]; i++) {
      const char *eq = strchr(environ[i], '=');
      if (eq == NULL) continue;
      lua_pushlstring(L, environ[i], eq - environ[i]);
      lua_pushstring(L, eq + 1);
      lua_rawset(L, vars);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, opts, "env");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_argerror(L, 1, "env must be a table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {                    /* [.., vars, env, k, v] */
      if (lua_type(L, -2) != LUA_TSTRING || strchr(lua_tostring(L, -2), '='))
        luaL_argerror(L, 1, "env: names must be strings without '='");
      if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
      } else if (!lua_isstring(L, -1)) {
        luaL_argerror(L, 1, lua_pushfstring(L, "env.%s must be a string, got %s",
                                            lua_tostring(L, -2), luaL_typename(L, -1)));
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);                         /* [.., vars, env, k, k, v] */
      lua_rawset(L, vars);
    }
  }
  lua_pop(L, 1);                                 /* [.., vars] */
  lua_pushnil(L);
  while (lua_next(L, vars)) { n++; lua_pop(L, 1); }
  env = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);  /* [.., vars, a] */
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, vars)) {
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    env[i++] = (char *)proc_keep_top(L, keep);
    lua_pop(L, 1);
  }
  env[i] = NULL;
  lua_remove(L, vars);                           /* [.., a] */
  return env;
}

static double proc_opt_number (lua_State *L, int opts, const char *name, double dflt) {
  double v;
  lua_getfield(L, opts, name);
  if (lua_isnil(L, -1)) v = dflt;
  else if (lua_isnumber(L, -1)) v = lua_tonumber(L, -1);
  else v = luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a number, got %s", name,
                                               luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}

static const char *proc_opt_string (lua_State *L, int opts, const char *name, size_t *len) {
  const char *s = NULL;
  lua_getfield(L, opts, name);        /* left on the stack: keeps s alive */
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a string, got %s", name,
                                          luaL_typename(L, -1)));
    s = lua_tolstring(L, -1, len);
  }
  return s;
}
/*
** Hands the parent end *fd to libuv, which closes it with the handle, and
** starts reading it unless it is stdin: 0 or a libuv error (*fd is left
** for the caller to close if libuv did not take it).
*/
static int proc_start_pipe (proc *p, uv_pipe_t *pipe, int *fd, int readable) {
  int r = uv_pipe_init(orch_uv(), pipe, 0);
  if (r != 0) return r;
  pipe->data = p;
  p->refs++;
  if ((r = uv_pipe_open(pipe, *fd)) == 0) {
    *fd = -1;
    if (!readable || (r = uv_read_start((uv_stream_t *)pipe, on_alloc, on_read)) == 0)
      return 0;
  }
  proc_close_once((uv_handle_t *)pipe);
  return r;
}

static void proc_close_fd (int *fd) {
  if (*fd >= 0) { close(*fd); *fd = -1; }
}

/*
** A pidfd on the child, polled by libuv: 0 or an errno. Without one the
** child can't be watched, so it is killed and reaped before we fail.
*/
static int proc_watch_child (proc *p) {
  int err;
  p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);   /* close-on-exec */
  if (p->pidfd < 0) err = errno;
  else if ((err = -uv_poll_init(orch_uv(), &p->exit_watch, p->pidfd)) != 0) close(p->pidfd);
  else {
    p->exit_watch.data = p;
    p->refs++;
    if ((err = -uv_poll_start(&p->exit_watch, UV_READABLE, on_child_exit)) == 0) return 0;
    uv_close((uv_handle_t *)&p->exit_watch, on_watch_closed);   /* closes the pidfd */
  }
  kill(-p->pid, SIGKILL);
  while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {}
  orch_reaped(p->pid);
  return err;
}

/*
** proc.spawn{ argv = {...} | cmd = "shell string", env =, clear_env =,
**   cwd =, stdin = "data", timeout = s, grace = s } -> process
** The child leads a new process group, so a timeout or an interrupt can
** kill everything it started.
*/
static int proc_spawn (lua_State *L) {
  char **argv, **env = NULL;
  int fds[NFDS] = {-1, -1, -1, -1, -1, -1};
  pid_t pid = 0;
  proc **box, *p;
  const char *cwd, *input;
  size_t input_len = 0;
  int keep, err;
  const char *what = NULL;   /* what libuv could not start */
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (orch_interrupted())
    return orch_failmsg(L, "INTERRUPTED", "not started: orch is interrupted");
  lua_newtable(L);                               /* [opts, keep] */
  keep = 2;
  argv = proc_build_argv(L, 1, keep);                 /* [opts, keep, argv] */
  lua_getfield(L, 1, "env");
  lua_getfield(L, 1, "clear_env");
  if (lua_isnil(L, -2) && !lua_toboolean(L, -1)) {
    lua_pop(L, 2);
    lua_pushnil(L);                              /* inherit ours as it is */
  } else {
    lua_pop(L, 2);
    env = proc_build_env(L, 1, keep);
  }                                              /* [opts, keep, argv, env] */
  cwd = proc_opt_string(L, 1, "cwd", NULL);           /* [.., cwd] */
  input = proc_opt_string(L, 1, "stdin", &input_len); /* [.., cwd, stdin] */
  if (cwd) {
    struct stat st;
    if (stat(cwd, &st) != 0) return orch_fail(L, cwd, errno);
    if (!S_ISDIR(st.st_mode)) return orch_fail(L, cwd, ENOTDIR);
  }
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, PROC_MT);
  p = calloc(1, sizeof *p);
  if (p == NULL) return luaL_error(L, "out of memory");
  p->refs = 1;                                   /* the Lua object */
  p->timeout = proc_opt_number(L, 1, "timeout", 0);
  p->grace = proc_opt_number(L, 1, "grace", 2);
  if (input) {
    p->input = malloc(input_len ? input_len : 1);
    if (p->input == NULL) { free(p); return luaL_error(L, "out of memory"); }
    memcpy(p->input, input, input_len);
  }

  p->started = uv_hrtime();
  err = orch_open_pipes(fds, input != NULL);
  if (err == 0) err = orch_spawn(&pid, argv, env ? env : environ, cwd, fds);
  proc_close_fd(&fds[IN_R]);                          /* the child has its own */
  proc_close_fd(&fds[OUT_W]);
  proc_close_fd(&fds[ERR_W]);
  if (err == 0) {
    p->pid = pid;
    err = proc_watch_child(p);
  }
  if (err != 0) {
    proc_close_fd(&fds[IN_W]);
    proc_close_fd(&fds[OUT_R]);
    proc_close_fd(&fds[ERR_R]);
    proc_release(p);
    return orch_failmsg(L, orch_errname(err), "%s: %s", argv[0], uv_strerror(-err));
  }
  *box = p;
  p->child.pid = p->pid;
  orch_child_add(&p->child);
  if ((err = uv_timer_init(orch_uv(), &p->timer)) != 0) what = "a timer";
  else {
    p->timer.data = p;
    p->refs++;
    p->timer_open = 1;
  }
  if (!what && (err = proc_start_pipe(p, &p->out, &fds[OUT_R], 1)) != 0) what = "stdout";
  if (!what) p->out_open = 1;
  if (!what && (err = proc_start_pipe(p, &p->err, &fds[ERR_R], 1)) != 0) what = "stderr";
  if (!what) p->err_open = 1;
  if (!what && input) {
    if ((err = proc_start_pipe(p, &p->in, &fds[IN_W], 0)) == 0) {
      uv_buf_t b = uv_buf_init(p->input, (unsigned)input_len);
      p->write_req.data = p;
      if ((err = uv_write(&p->write_req, (uv_stream_t *)&p->in, &b, 1, on_written)) != 0)
        proc_close_once((uv_handle_t *)&p->in);
    }
    if (err != 0) what = "stdin";
  }
  if (!what && p->timeout > 0
      && (err = uv_timer_start(&p->timer, on_timeout, (uint64_t)(p->timeout * 1000), 0)) != 0)
    what = "the timeout";
  if (what) {
    /* Unwatched, the child can't be waited for: it goes, with its group.
    ** The exit watch still reaps it, and the box frees p. */
    proc_close_fd(&fds[IN_W]);
    proc_close_fd(&fds[OUT_R]);
    proc_close_fd(&fds[ERR_R]);
    kill(-p->pid, SIGKILL);
    if (p->out_open) { p->out_open = 0; proc_close_once((uv_handle_t *)&p->out); }
    if (p->err_open) { p->err_open = 0; proc_close_once((uv_handle_t *)&p->err); }
    return orch_failmsg(L, orch_errname(-err), "%s: cannot start %s: %s", argv[0], what,
                        uv_strerror(err));
  }
  return 1;
}

static const char *proc_signal_name (int sig) {
  switch (sig) {
#define S(x) case SIG##x: return #x;
    S(HUP) S(INT) S(QUIT) S(ILL) S(TRAP) S(ABRT) S(BUS) S(FPE) S(KILL)
    S(USR1) S(SEGV) S(USR2) S(PIPE) S(ALRM) S(TERM) S(CHLD) S(CONT)
    S(STOP) S(TSTP) S(TTIN) S(TTOU) S(XCPU) S(XFSZ) S(SYS)
#undef S
    default: return NULL;
  }
}

static void proc_push_field_buffer (lua_State *L, buffer *b, const char *name) {
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  lua_setfield(L, -2, name);
}

/* [..] -> [.., result] */
static int proc_push_result (lua_State *L, proc *p) {
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, p->pid);
  lua_setfield(L, -2, "pid");
  if (p->termsig) {
    const char *name = proc_signal_name(p->termsig);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "SIG%d", p->termsig);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, p->status);
    lua_setfield(L, -2, "code");
  }
  proc_push_field_buffer(L, &p->stdout_buf, "stdout");
  proc_push_field_buffer(L, &p->stderr_buf, "stderr");
  lua_pushboolean(L, p->timed_out);
  lua_setfield(L, -2, "timed_out");
  if (p->timed_out) {
    lua_pushnumber(L, p->timeout);
    lua_setfield(L, -2, "timeout");
  }
  lua_pushnumber(L, (double)(p->ended - p->started) / 1e9);
  lua_setfield(L, -2, "elapsed");
  return 1;
}

static void proc_cancel (orch_wait *w) {
  ((proc *)w)->waiting = NOT_WAITING;
}

static int proc_waited (lua_State *L, int status, lua_KContext ctx) {
  proc *p = (proc *)ctx;
  p->waiting = NOT_WAITING;
  return proc_push_result(L, p);
}

/* p:wait() -> { pid, code | signal, stdout, stderr, timed_out, elapsed } */
static int proc_wait (lua_State *L) {
  proc *p = proc_check(L);
  if (proc_is_done(p)) return proc_push_result(L, p);
  if (p->waiting != NOT_WAITING) return orch_failmsg(L, "BUSY", "process %d: busy", p->pid);
  orch_wait_init(&p->w);
  p->w.cancel = proc_cancel;
  p->waiting = WAIT_EXIT;
  return orch_await(L, &p->w, (lua_KContext)p, proc_waited);
}

/* [..] -> [.., "stdout"|"stderr", chunk] or [.., nil] at the end */
static int proc_push_chunk (lua_State *L, proc *p) {
  buffer *b = p->stdout_buf.seen < p->stdout_buf.len ? &p->stdout_buf
            : p->stderr_buf.seen < p->stderr_buf.len ? &p->stderr_buf : NULL;
  if (b == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, b == &p->stdout_buf ? "stdout" : "stderr");
  lua_pushlstring(L, b->data + b->seen, b->len - b->seen);
  b->seen = b->len;
  return 2;
}

static int proc_has_chunk (proc *p) {
  return p->stdout_buf.seen < p->stdout_buf.len
      || p->stderr_buf.seen < p->stderr_buf.len;
}

static int proc_read_done (lua_State *L, int status, lua_KContext ctx) {
  proc *p = (proc *)ctx;
  p->waiting = NOT_WAITING;
  return proc_push_chunk(L, p);
}

/*
** p:read() -> "stdout"|"stderr", chunk, as output arrives; nil when both
** streams are closed. Output is also kept for p:wait().
*/
static int proc_read (lua_State *L) {
  proc *p = proc_check(L);
  if (proc_has_chunk(p) || (!p->out_open && !p->err_open)) return proc_push_chunk(L, p);
  if (p->waiting != NOT_WAITING) return orch_failmsg(L, "BUSY", "process %d: busy", p->pid);
  orch_wait_init(&p->w);
  p->w.cancel = proc_cancel;
  p->waiting = WAIT_READ;
  return orch_await(L, &p->w, (lua_KContext)p, proc_read_done);
}

static int proc_signal_arg (lua_State *L, int arg) {
  static const char *const names[] = {"TERM", "KILL", "INT", "HUP", "QUIT",
                                      "USR1", "USR2", "STOP", "CONT", NULL};
  static const int sigs[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT,
                             SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};
  if (lua_isinteger(L, arg)) return (int)lua_tointeger(L, arg);
  return sigs[luaL_checkoption(L, arg, "TERM", names)];
}

/* p:kill([sig]): signals the whole process group; default TERM */
static int proc_kill (lua_State *L) {
  proc *p = proc_check(L);
  int sig = proc_signal_arg(L, 2);
  if (p->child.pid <= 0) return orch_fail(L, "process has exited", ESRCH);
  if (kill(-p->child.pid, sig) != 0) return orch_fail(L, "kill", errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_pid (lua_State *L) {
  lua_pushinteger(L, proc_check(L)->pid);
  return 1;
}

/* A process nobody holds any more is killed, not left running. */
static int proc_gc (lua_State *L) {
  proc **box = luaL_checkudata(L, 1, PROC_MT);
  proc *p = *box;
  if (p == NULL) return 0;
  *box = NULL;
  if (p->child.pid > 0) kill(-p->child.pid, SIGKILL);
  proc_release(p);
  return 0;
}

static int proc_tostring (lua_State *L) {
  proc **box = luaL_checkudata(L, 1, PROC_MT);
  if (*box) lua_pushfstring(L, "orch.proc (pid %d)", (*box)->pid);
  else lua_pushliteral(L, "orch.proc (released)");
  return 1;
}

static const luaL_Reg proc_meta[] = {
  {"__gc", proc_gc}, {"__close", proc_gc}, {"__tostring", proc_tostring},
  {NULL, NULL}
};
static const luaL_Reg proc_methods[] = {
  {"wait", proc_wait}, {"read", proc_read}, {"kill", proc_kill},
  {"pid", proc_pid}, {"close", proc_gc}, {NULL, NULL}
};
static const luaL_Reg proc_funcs[] = {{"spawn", proc_spawn}, {NULL, NULL}};

int luaopen_orch_core_proc (lua_State *L) {
  orch_newclass(L, PROC_MT, proc_meta, proc_methods);
  luaL_newlib(L, proc_funcs);
  return 1;
}
