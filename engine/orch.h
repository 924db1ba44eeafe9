/*
** orch.h: what the engine's C modules share: the fail tuple, the event
** loop and the way a primitive waits (yield in a task, run the loop at top
** level).
*/
#ifndef ORCH_H
#define ORCH_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

/* The expected-failure tuple: nil, "subject: strerror(err)", "ENAME". */
int orch_fail (lua_State *L, const char *subject, int err);
/* The same with a message and code of the caller's choosing. */
int orch_failmsg (lua_State *L, const char *code, const char *fmt, ...);
/* Symbolic name of an errno value ("ENOENT"), or "EUNKNOWN". */
const char *orch_errname (int err);
/* Registers metatable `name` with meta's metamethods and, unless NULL,
** methods as its __index. Leaves the stack as it was. */
void orch_newclass (lua_State *L, const char *name, const luaL_Reg *meta,
                    const luaL_Reg *methods);

/* ---- the event loop (loop.c) ---- */

uv_loop_t *orch_uv (void);
/* Once, on the new main thread, before any other thread is created. */
void orch_loop_init (lua_State *L);

/*
** A primitive that must wait embeds an orch_wait in its request, arms
** libuv, and ends with `return orch_await(L, &req->wait, ctx, k)`. In a task
** this yields and the loop resumes the task when orch_wake is called; at top
** level it runs the loop until then. Either way `k` runs afterwards and pushes
** the results, so the request must live until k has run.
*/
typedef struct orch_wait {
  lua_State *task;   /* the waiting task's thread; NULL at top level */
  int done;          /* set by orch_wake */
  /* Called instead of k when the wait is abandoned (an error or an
  ** interrupt at top level): it must disarm libuv and free the request. */
  void (*cancel) (struct orch_wait *w);
} orch_wait;

void orch_wait_init (orch_wait *w);
int orch_await (lua_State *L, orch_wait *w, lua_KContext ctx, lua_KFunction k);
/* From a libuv callback: the wait is over; resume its task soon. */
void orch_wake (orch_wait *w);

/* Set by SIGINT/SIGTERM; cleared by the CLI. */
int orch_interrupted (void);

/* Children register so an interrupt or exit kills their process groups. */
typedef struct orch_child {
  int pid;           /* process group leader; 0 once reaped */
  struct orch_child *prev, *next;
} orch_child;
void orch_child_add (orch_child *c);
void orch_child_remove (orch_child *c);

/* At exit, after lua_close: kill the process groups still running. */
void orch_loop_shutdown (void);

#endif
