/*
** fail.c: the expected-failure tuple every module returns:
** nil, "subject: reason", "CODE".
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
