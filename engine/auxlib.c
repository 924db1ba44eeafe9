/*
** auxlib.c: what every module shares: the expected-failure tuple
** (nil, "subject: reason", "CODE") and userdata classes.
*/
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "orch.h"

const char *orch_errname (int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG)
    E(ENOEXEC) E(EBADF) E(ECHILD) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT)
    E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL)
    E(ENFILE) E(EMFILE) E(ETXTBSY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOLCK)
    E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ETIMEDOUT) E(ECONNREFUSED)
    E(ECONNRESET) E(EHOSTUNREACH) E(ENETUNREACH) E(EADDRINUSE)
    E(ENOTSUP) E(ECANCELED) E(EDQUOT)
#undef E
    default: return "EUNKNOWN";
  }
}

int orch_fail (lua_State *L, const char *subject, int err) {
  luaL_pushfail(L);
  if (subject)
    lua_pushfstring(L, "%s: %s", subject, strerror(err));
  else
    lua_pushstring(L, strerror(err));
  lua_pushstring(L, orch_errname(err));
  return 3;
}

int orch_failmsg (lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  luaL_pushfail(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, code);
  return 3;
}

void orch_newclass (lua_State *L, const char *name, const luaL_Reg *meta,
                    const luaL_Reg *methods) {
  luaL_newmetatable(L, name);        /* [mt] */
  luaL_setfuncs(L, meta, 0);
  if (methods) {
    lua_newtable(L);                 /* [mt, methods] */
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");  /* [mt] */
  }
  lua_pop(L, 1);                     /* [] */
}
