/*
** loop.c: orch.core.loop, the libuv event loop and the coroutine scheduler.
** A task is a Lua thread; a primitive that must wait yields it (orch_await)
** and the loop resumes it when libuv says the wait is over (orch_wake).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch.h"

#define TASK_MT "orch.loop.task"
#define COND_MT "orch.loop.cond"

enum { TASK_READY, TASK_RUNNING, TASK_WAITING, TASK_DONE, TASK_FAILED };

/* A waiter on a condition: lives on its thread's Lua stack while it waits. */
typedef struct waiter {
  orch_wait w;
  struct waiter *next;
  struct cond *cond;   /* NULL once signalled or cancelled */
} waiter;

typedef struct cond { waiter *head, *tail; } cond;

typedef struct task {
  lua_State *T;        /* its thread, also user value 1 (keeps it alive) */
  int state;
  int started;
  int anchor;          /* registry ref while unfinished */
  int waiting;         /* set by orch_await: the yield was a wait */
  int nres;            /* results on T's stack when done */
  int joined;          /* someone waited for the result */
  struct task *next_ready;
  cond done;           /* joiners */
} task;

static uv_loop_t *uvl;
static uv_idle_t ready_idle;       /* active while tasks are ready */
static uv_async_t interrupt_wake; /* makes uv_run return on a signal */
static lua_State *main_thread;
static lua_State *volatile running;  /* the task thread running Lua, if any */
static task *ready_head, *ready_tail;
static int loop_depth;             /* uv_run nesting: must stay <= 1 */
static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t stop_requested;  /* the first signal, when graceful */
static int graceful;
static int live_tasks;
static orch_child children = {0, &children, &children};

static void on_ready (uv_idle_t *h);
static void on_signal (int signum);
static void on_interrupt_wake (uv_async_t *h);

/*
** Without the loop's own handles nothing could wait or be interrupted, and
** there is no caller to tell (orch_uv is everywhere): say so and abort.
*/
static void loop_must (int r, const char *what) {
  if (r == 0) return;
  fprintf(stderr, "orch: cannot start the event loop: %s: %s\n", what, uv_strerror(r));
  abort();
}

uv_loop_t *orch_uv (void) {
  if (uvl == NULL) {
    struct sigaction sa;
    if ((uvl = uv_default_loop()) == NULL) loop_must(UV_ENOMEM, "uv_default_loop");
    loop_must(uv_idle_init(uvl, &ready_idle), "uv_idle_init");
    loop_must(uv_async_init(uvl, &interrupt_wake, on_interrupt_wake), "uv_async_init");
    uv_unref((uv_handle_t *)&interrupt_wake);  /* keeps nothing alive */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
  }
  return uvl;
}

int orch_interrupted (void) { return interrupted; }


/* ---- children: killed as whole process groups on interrupt ---- */

void orch_child_add (orch_child *c) {
  c->next = children.next; c->prev = &children;
  children.next->prev = c; children.next = c;
}

void orch_child_remove (orch_child *c) {
  if (c->next == NULL) return;
  c->prev->next = c->next; c->next->prev = c->prev;
  c->next = c->prev = NULL;
}

static void loop_kill_children (int sig) {
  orch_child *c;
  for (c = children.next; c != &children; c = c->next)
    if (c->pid > 0) kill(-c->pid, sig);
}

/* Raises in the Lua code that was running when the signal came. */
static void on_interrupt_hook (lua_State *L, lua_Debug *ar) {
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

static void on_interrupt_wake (uv_async_t *h) {
  uv_stop(uvl);
}

/*
** A signal handler, so only async-signal-safe work: first Ctrl-C (or
** SIGTERM) stops the children (their waits then end as killed), wakes the
** loop, and makes Lua code that is busy computing raise "interrupted", as
** lua.c does; the playbook unwinds and the run is recorded. A second one
** kills the children and us, now.
*/
static void on_signal (int signum) {
  if (graceful && !stop_requested) {  /* orch serve: a request, not an interrupt */
    stop_requested = signum;
    return;
  }
  if (interrupted) {
    loop_kill_children(SIGKILL);
    signal(signum, SIG_DFL);
    raise(signum);
    return;
  }
  interrupted = signum;
  loop_kill_children(SIGTERM);
  if (running || loop_depth == 0) {
    lua_State *L = running ? running : main_thread;
    lua_sethook(L, on_interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
  /* fails only on a closing handle; nothing a signal handler could do */
  (void)uv_async_send(&interrupt_wake);
}


/* ---- tasks ---- */

static task *task_of (lua_State *L) {
  return *(task **)lua_getextraspace(L);
}

static void loop_ready_push (task *t) {
  t->state = TASK_READY;
  t->next_ready = NULL;
  if (ready_tail) ready_tail->next_ready = t; else ready_head = t;
  ready_tail = t;
  if (!uv_is_active((uv_handle_t *)&ready_idle))
    loop_must(uv_idle_start(&ready_idle, on_ready), "uv_idle_start");  /* no task runs without */
}

void orch_wait_init (orch_wait *w) {
  memset(w, 0, sizeof *w);
}

void orch_wake (orch_wait *w) {
  if (w->done) return;  /* once: a task must never be queued twice */
  w->done = 1;
  if (w->task) loop_ready_push(task_of(w->task));
  else uv_stop(uvl);  /* the top-level wait checks its flag after uv_run */
}

/* Abandons w (its cancel hook frees the request) and raises. */
static int loop_abandon (lua_State *L, orch_wait *w, const char *msg) {
  if (w->cancel) w->cancel(w);
  if (msg == NULL) {  /* interrupted: not the caller's fault, no position */
    lua_pushliteral(L, "interrupted");
    return lua_error(L);
  }
  return luaL_error(L, "%s", msg);
}

int orch_await (lua_State *L, orch_wait *w, lua_KContext ctx, lua_KFunction k) {
  task *t = task_of(L);
  orch_uv();
  /* After Ctrl-C nothing new waits: every task unwinds promptly. */
  if (interrupted) return loop_abandon(L, w, NULL);
  if (w->done) return k(L, LUA_OK, ctx);  /* woken before it waited */
  if (t && t->T == L) {
    if (!lua_isyieldable(L))
      return loop_abandon(L, w, "cannot wait here: a task can't wait inside a "
                           "metamethod or a C function such as table.sort");
    w->task = L;
    t->waiting = 1;
    return lua_yieldk(L, 0, ctx, k);
  }
  if (loop_depth > 0)
    return loop_abandon(L, w, "cannot wait in a coroutine that orch did not start "
                         "(use orch.task.spawn)");
  loop_depth++;
  while (!w->done) {
    int alive = uv_run(uvl, UV_RUN_ONCE);
    if (w->done) break;
    if (interrupted || !alive) {
      loop_depth--;
      return loop_abandon(L, w, interrupted ? NULL
                     : "deadlock: waiting for something that nothing left "
                       "running can do");
    }
  }
  loop_depth--;
  return k(L, LUA_OK, ctx);
}

/* [err] on T -> [] ; reports a failure nobody waits for */
static void task_failed (task *t) {
  lua_State *T = t->T;
  const char *msg;
  /* an error object (orch's failures are tables) says what it is through
  ** __tostring; the message then stands in for it */
  if (!lua_isstring(T, -1) && luaL_callmeta(T, -1, "__tostring")) {
    if (lua_isstring(T, -1)) lua_replace(T, -2); else lua_pop(T, 1);
  }
  msg = lua_tostring(T, -1);
  if (msg) {
    luaL_traceback(T, T, msg, 0);   /* the dead stack is still walkable */
    lua_remove(T, -2);
  }
  t->nres = 1;
  t->state = TASK_FAILED;
  if (t->done.head == NULL && !t->joined) {
    fprintf(stderr, "orch: task failed: %s\n",
            msg ? lua_tostring(T, -1) : "(error object is not a string)");
    fflush(stderr);
  }
}

static void cond_wake_all (cond *c);

static void task_resume (task *t) {
  lua_State *T = t->T;
  int nres, status;
  int nargs = t->started ? 0 : lua_gettop(T) - 1;
  t->started = 1;
  t->state = TASK_RUNNING;
  t->waiting = 0;
  running = T;
  status = lua_resume(T, NULL, nargs, &nres);
  running = NULL;
  if (status == LUA_YIELD) {
    if (t->waiting) t->state = TASK_WAITING;
    else {                  /* a bare coroutine.yield(): let others run */
      lua_pop(T, nres);
      loop_ready_push(t);
    }
    return;
  }
  if (status == LUA_OK) {
    t->nres = nres;
    t->state = TASK_DONE;
  } else {
    task_failed(t);
  }
  live_tasks--;
  cond_wake_all(&t->done);
  /* Unanchored, the task lives on while Lua code holds it. */
  luaL_unref(T, LUA_REGISTRYINDEX, t->anchor);
  t->anchor = LUA_NOREF;
}

/* Runs the tasks that were ready when it was called; later wakes wait. */
static void on_ready (uv_idle_t *h) {
  task *t = ready_head;
  ready_head = ready_tail = NULL;
  uv_idle_stop(&ready_idle);   /* cannot fail */
  while (t) {
    task *next = t->next_ready;
    task_resume(t);
    t = next;
  }
}

/* loop.spawn(fn, ...) -> task: starts when the loop next runs */
static int loop_spawn (lua_State *L) {
  int n = lua_gettop(L);
  task *t;
  lua_State *T;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  orch_uv();
  t = lua_newuserdatauv(L, sizeof *t, 1);      /* [fn, args.., t] */
  memset(t, 0, sizeof *t);
  t->anchor = LUA_NOREF;
  luaL_setmetatable(L, TASK_MT);
  T = lua_newthread(L);                        /* [fn, args.., t, T] */
  lua_setiuservalue(L, -2, 1);                 /* [fn, args.., t] */
  t->T = T;
  *(task **)lua_getextraspace(T) = t;
  lua_pushvalue(L, -1);
  t->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rotate(L, 1, 1);                         /* [t, fn, args..] */
  lua_xmove(L, T, n);                          /* [t] */
  live_tasks++;
  loop_ready_push(t);
  return 1;
}

/* loop.current() -> the running task, or nil at top level */
static int loop_current (lua_State *L) {
  task *t = task_of(L);
  if (t && t->T == L) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->anchor);
    return 1;
  }
  return 0;
}

static int task_results (lua_State *L, task *t) {
  int i, top = lua_gettop(t->T);
  luaL_checkstack(L, t->nres + 1, "too many results");
  lua_pushboolean(L, t->state == TASK_DONE);
  for (i = top - t->nres + 1; i <= top; i++) {
    lua_pushvalue(t->T, i);
    lua_xmove(t->T, L, 1);
  }
  return t->nres + 1;
}


/* ---- conditions: the one waiting mechanism tasks share ---- */

static void cond_unlink (waiter *wt) {
  cond *c = wt->cond;
  waiter **p;
  if (c == NULL) return;
  for (p = &c->head; *p; p = &(*p)->next) {
    if (*p == wt) {
      *p = wt->next;
      if (c->tail == wt) {
        waiter *last = c->head;
        while (last && last->next) last = last->next;
        c->tail = last;
      }
      break;
    }
  }
  wt->cond = NULL;
}

static void cond_cancel (orch_wait *w) {
  cond_unlink((waiter *)w);
}

static int cond_wake_one (cond *c) {
  waiter *wt = c->head;
  if (wt == NULL) return 0;
  c->head = wt->next;
  if (c->head == NULL) c->tail = NULL;
  wt->cond = NULL;
  orch_wake(&wt->w);
  return 1;
}

static void cond_wake_all (cond *c) {
  while (cond_wake_one(c)) {}
}

static int cond_waited (lua_State *L, int status, lua_KContext ctx) {
  return 0;
}

/* [..] -> [.., waiter]; waits on c until woken */
static int cond_block (lua_State *L, cond *c, lua_KFunction k, lua_KContext ctx) {
  waiter *wt = lua_newuserdatauv(L, sizeof *wt, 0);
  orch_wait_init(&wt->w);
  wt->w.cancel = cond_cancel;
  wt->next = NULL;
  wt->cond = c;
  if (c->tail) c->tail->next = wt; else c->head = wt;
  c->tail = wt;
  return orch_await(L, &wt->w, ctx, k);
}

static int task_waited (lua_State *L, int status, lua_KContext ctx) {
  return task_results(L, luaL_checkudata(L, 1, TASK_MT));
}

/* task:wait() -> true, results... | false, error (with traceback) */
static int task_wait (lua_State *L) {
  task *t = luaL_checkudata(L, 1, TASK_MT);
  t->joined = 1;
  if (t->state == TASK_DONE || t->state == TASK_FAILED)
    return task_results(L, t);
  if (task_of(L) == t && t->T == L)
    return luaL_error(L, "a task cannot wait for itself");
  return cond_block(L, &t->done, task_waited, 0);
}

static int task_status (lua_State *L) {
  static const char *const names[] = {"ready", "running", "waiting", "done", "failed"};
  task *t = luaL_checkudata(L, 1, TASK_MT);
  lua_pushstring(L, names[t->state]);
  return 1;
}

static int task_tostring (lua_State *L) {
  task *t = luaL_checkudata(L, 1, TASK_MT);
  lua_pushfstring(L, "orch.task (%p)", (void *)t);
  return 1;
}

static int cond_new (lua_State *L) {
  cond *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->head = c->tail = NULL;
  luaL_setmetatable(L, COND_MT);
  return 1;
}

/* cond:wait(): until signalled (a wake that arrives first is not kept) */
static int cond_wait (lua_State *L) {
  return cond_block(L, luaL_checkudata(L, 1, COND_MT), cond_waited, 0);
}

static int cond_signal (lua_State *L) {
  lua_pushboolean(L, cond_wake_one(luaL_checkudata(L, 1, COND_MT)));
  return 1;
}

static int cond_broadcast (lua_State *L) {
  cond_wake_all(luaL_checkudata(L, 1, COND_MT));
  return 0;
}

/* Waiters are anchored by their threads' stacks; forget them with c. */
static int cond_gc (lua_State *L) {
  cond *c = luaL_checkudata(L, 1, COND_MT);
  waiter *wt;
  for (wt = c->head; wt; wt = wt->next) wt->cond = NULL;
  c->head = c->tail = NULL;
  return 0;
}


/* ---- sleep ---- */

typedef struct sleeper {
  orch_wait w;        /* first: the cancel hook casts back */
  uv_timer_t timer;
  int refs;           /* the waiter + the libuv handle */
} sleeper;

static void sleeper_release (sleeper *s) {
  if (--s->refs == 0) free(s);
}

static void sleeper_closed (uv_handle_t *h) {
  sleeper_release(h->data);
}

static void sleeper_fired (uv_timer_t *h) {
  sleeper *s = h->data;
  uv_close((uv_handle_t *)h, sleeper_closed);
  orch_wake(&s->w);
}

static void sleeper_cancel (orch_wait *w) {
  sleeper *s = (sleeper *)w;
  uv_close((uv_handle_t *)&s->timer, sleeper_closed);
  sleeper_release(s);
}

static int loop_sleep_done (lua_State *L, int status, lua_KContext ctx) {
  sleeper_release((sleeper *)ctx);
  return 0;
}

/* loop.sleep(seconds): lets every other task run meanwhile */
static int loop_sleep (lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  sleeper *s;
  int r;
  luaL_argcheck(L, secs >= 0, 1, "must not be negative");
  s = malloc(sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  orch_wait_init(&s->w);
  s->w.cancel = sleeper_cancel;
  s->refs = 2;
  if ((r = uv_timer_init(orch_uv(), &s->timer)) != 0) {
    free(s);
    return luaL_error(L, "loop.sleep: %s", uv_strerror(r));
  }
  s->timer.data = s;
  if ((r = uv_timer_start(&s->timer, sleeper_fired, (uint64_t)(secs * 1000 + 0.5), 0)) != 0) {
    sleeper_cancel(&s->w);
    return luaL_error(L, "loop.sleep: %s", uv_strerror(r));
  }
  return orch_await(L, &s->w, (lua_KContext)s, loop_sleep_done);
}

/* loop.yield(): let the other ready tasks run, then go on */
static int loop_yield (lua_State *L) {
  task *t = task_of(L);
  if (t && t->T == L && lua_isyieldable(L)) return lua_yield(L, 0);
  return 0;
}

/* loop.run() -> tasks left unfinished (blocked forever) */
static int loop_run (lua_State *L) {
  if (loop_depth > 0) return luaL_error(L, "loop.run: the loop is already running");
  orch_uv();
  loop_depth++;
  while (!interrupted && uv_run(uvl, UV_RUN_DEFAULT)) {}
  loop_depth--;
  lua_pushinteger(L, live_tasks);
  return 1;
}

/* loop.now(): monotonic seconds, for elapsed times */
static int loop_now (lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* loop.time(): wall-clock epoch seconds with sub-second precision */
static int loop_time (lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

static int loop_push_signame (lua_State *L, int signum) {
  if (signum) lua_pushstring(L, signum == SIGINT ? "SIGINT" : "SIGTERM");
  else lua_pushnil(L);
  return 1;
}

static int loop_interrupted (lua_State *L) { return loop_push_signame(L, interrupted); }

/*
** loop.graceful(): from now on the first SIGINT or SIGTERM only asks to
** stop (loop.stop_requested() names it), so a server can stop taking work
** and let what runs finish; the next signal interrupts as usual.
*/
static int loop_graceful (lua_State *L) {
  graceful = 1;
  return 0;
}

static int loop_stop_requested (lua_State *L) { return loop_push_signame(L, stop_requested); }

/*
** loop.interrupt(): what a signal does, at a time of the caller's choosing
** (a grace period ran out): children's process groups get SIGTERM, and
** every wait from now on ends with "interrupted". The caller's own code
** goes on, so it can record what happened.
*/
static int loop_interrupt (lua_State *L) {
  if (!interrupted) {
    interrupted = stop_requested ? stop_requested : SIGTERM;
    loop_kill_children(SIGTERM);
  }
  return 0;
}

/*
** loop.reset_interrupt(): the interrupt was dealt with (the REPL is back at
** its prompt): waits work again and a pending "interrupted" hook is
** dropped. The hook goes first: a signal landing in between leaves the hook
** set, so it is seen, rather than a flag no code checks.
*/
static int loop_reset_interrupt (lua_State *L) {
  if (lua_gethook(main_thread) == on_interrupt_hook) lua_sethook(main_thread, NULL, 0, 0);
  if (lua_gethook(L) == on_interrupt_hook) lua_sethook(L, NULL, 0, 0);
  interrupted = 0;
  return 0;
}

/*
** Children still running at exit are killed with their groups rather than
** left behind. The loop is not run again: what its handles hold stays
** reachable from it until the process ends a moment later.
*/
void orch_loop_shutdown (void) {
  if (uvl) loop_kill_children(SIGKILL);
}

static const luaL_Reg task_meta[] = {
  {"__tostring", task_tostring}, {NULL, NULL}
};
static const luaL_Reg task_methods[] = {
  {"wait", task_wait}, {"status", task_status}, {NULL, NULL}
};
static const luaL_Reg cond_meta[] = {{"__gc", cond_gc}, {NULL, NULL}};
static const luaL_Reg cond_methods[] = {
  {"wait", cond_wait}, {"signal", cond_signal}, {"broadcast", cond_broadcast},
  {NULL, NULL}
};
static const luaL_Reg loop_funcs[] = {
  {"spawn", loop_spawn}, {"current", loop_current}, {"cond", cond_new},
  {"sleep", loop_sleep}, {"yield", loop_yield}, {"run", loop_run},
  {"now", loop_now}, {"time", loop_time}, {"interrupted", loop_interrupted},
  {"reset_interrupt", loop_reset_interrupt}, {"graceful", loop_graceful},
  {"stop_requested", loop_stop_requested}, {"interrupt", loop_interrupt},
  {NULL, NULL}
};

/*
** Before any thread exists: new threads copy the main thread's extra space,
** where a task keeps its pointer, so it must say "no task".
*/
void orch_loop_init (lua_State *L) {
  *(task **)lua_getextraspace(L) = NULL;
  main_thread = L;
}

int luaopen_orch_core_loop (lua_State *L) {
  orch_uv();
  orch_newclass(L, TASK_MT, task_meta, task_methods);
  orch_newclass(L, COND_MT, cond_meta, cond_methods);
  luaL_newlib(L, loop_funcs);
  return 1;
}
