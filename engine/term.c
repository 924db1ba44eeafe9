/*
** term.c: orch.core.term, what the terminal is: a TTY or not, its width.
** Colour policy (NO_COLOR, --json) is the UI's, in Lua.
*/
#include <sys/ioctl.h>
#include <unistd.h>

#include "orch.h"

static int stream_fd (lua_State *L, int arg) {
  static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
  if (lua_isinteger(L, arg)) return (int)lua_tointeger(L, arg);
  return luaL_checkoption(L, arg, "stdout", names);
}

/* term.isatty([stream]) -> boolean; stream "stdout" (default) or an fd */
static int term_isatty (lua_State *L) {
  lua_pushboolean(L, isatty(stream_fd(L, 1)));
  return 1;
}

/* term.size([stream]) -> columns, rows; nil when it is not a terminal */
static int term_size (lua_State *L) {
  struct winsize ws;
  if (ioctl(stream_fd(L, 1), TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, ws.ws_col);
  lua_pushinteger(L, ws.ws_row);
  return 2;
}

static const luaL_Reg term_funcs[] = {
  {"isatty", term_isatty}, {"size", term_size}, {NULL, NULL}
};

int luaopen_orch_core_term (lua_State *L) {
  luaL_newlib(L, term_funcs);
  return 1;
}
