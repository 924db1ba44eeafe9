/*
** term.c: orch.core.term, what the terminal is: a TTY or not, its width.
** Colour policy (NO_COLOR, --json) is the UI's, in Lua.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
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

/*
** term.read_secret(prompt) -> the line typed on the controlling terminal,
** not echoed (a passphrase); fail when there is no terminal to ask.
*/
static int term_read_secret (lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  struct termios old, quiet;
  char buf[1024];
  ssize_t n;
  size_t len = 0;
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return orch_fail(L, "/dev/tty", errno);
  if (tcgetattr(fd, &old) != 0) { int e = errno; close(fd); return orch_fail(L, "/dev/tty", e); }
  quiet = old;
  quiet.c_lflag &= ~(tcflag_t)ECHO;
  quiet.c_lflag |= ICANON;
  (void)!write(fd, prompt, strlen(prompt));
  tcsetattr(fd, TCSAFLUSH, &quiet);
  while (len < sizeof buf - 1 && (n = read(fd, buf + len, 1)) == 1 && buf[len] != '\n') len++;
  tcsetattr(fd, TCSAFLUSH, &old);
  (void)!write(fd, "\n", 1);
  close(fd);
  lua_pushlstring(L, buf, len);
  memset(buf, 0, sizeof buf);
  return 1;
}

static const luaL_Reg term_funcs[] = {
  {"isatty", term_isatty}, {"size", term_size}, {"read_secret", term_read_secret},
  {NULL, NULL}
};

int luaopen_orch_core_term (lua_State *L) {
  luaL_newlib(L, term_funcs);
  return 1;
}
