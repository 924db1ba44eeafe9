/*
** term.c: orch.core.term, the terminal: a TTY or not, its width, a secret
** read without echo, and the REPL's line editor (libedit: BSD-licensed,
** emacs keys, ~/.editrc) with its history.
** Colour policy (NO_COLOR, --json) is the UI's, in Lua.
*/
#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "orch.h"

static int term_stream_fd (lua_State *L, int arg) {
  static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
  if (lua_isinteger(L, arg)) return (int)lua_tointeger(L, arg);
  return luaL_checkoption(L, arg, "stdout", names);
}

/* term.isatty([stream]) -> boolean; stream "stdout" (default) or an fd */
static int term_isatty (lua_State *L) {
  lua_pushboolean(L, isatty(term_stream_fd(L, 1)));
  return 1;
}

/* term.size([stream]) -> columns, rows; nil when it is not a terminal */
static int term_size (lua_State *L) {
  struct winsize ws;
  if (ioctl(term_stream_fd(L, 1), TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
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


/* ---- the line editor ---- */

#define HISTORY_SIZE 1000

static EditLine *editor;            /* made on first use, on a terminal */
static History *history_list;       /* shared by the editor and the Lua side */
static char editor_prompt[256];
static volatile sig_atomic_t caught; /* SIGINT or SIGTERM while reading */

static void on_read_signal (int signum) { caught = signum; }

static char *term_prompt_of (EditLine *e) { return editor_prompt; }

static History *term_history_get (void) {
  if (history_list == NULL) {
    HistEvent ev;
    history_list = history_init();
    if (history_list == NULL) return NULL;
    history(history_list, &ev, H_SETSIZE, HISTORY_SIZE);
    history(history_list, &ev, H_SETUNIQUE, 1);   /* no repeated lines */
  }
  return history_list;
}

/* Made once, for good: the process ends with the REPL. */
static EditLine *term_editor_get (void) {
  if (editor == NULL) {
    setlocale(LC_CTYPE, "");   /* edit UTF-8 as characters, not bytes */
    editor = el_init("orch", stdin, stdout, stderr);
    if (editor == NULL) return NULL;
    el_set(editor, EL_EDITOR, "emacs");
    el_set(editor, EL_SIGNAL, 0);   /* ours, below: libedit's re-raises to the group */
    el_set(editor, EL_PROMPT, term_prompt_of);
    if (term_history_get()) el_set(editor, EL_HIST, history, history_list);
    el_source(editor, NULL);        /* ~/.editrc, as every libedit program */
  }
  return editor;
}

/*
** While reading, SIGINT and SIGTERM are ours and do not restart read(2):
** Ctrl-C ends the read with EINTR and the line is dropped, where the
** loop's handler would mark the whole process interrupted.
*/
static void term_signals_catch (struct sigaction *old_int, struct sigaction *old_term) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_read_signal;
  sigemptyset(&sa.sa_mask);
  caught = 0;
  sigaction(SIGINT, &sa, old_int);
  sigaction(SIGTERM, &sa, old_term);
}

static void term_signals_restore (struct sigaction *old_int, struct sigaction *old_term) {
  sigaction(SIGINT, old_int, NULL);
  sigaction(SIGTERM, old_term, NULL);
}

/* [] -> [line | nil] from fd 0, unbuffered so nothing is read past the
** line (a script's own io.read sees the rest); nil at EOF or on a signal. */
static int term_read_plain (lua_State *L, const char *prompt) {
  luaL_Buffer b;
  char c;
  int any = 0;
  if (isatty(0)) { fputs(prompt, stderr); fflush(stderr); }
  luaL_buffinit(L, &b);
  for (;;) {
    ssize_t n = read(0, &c, 1);
    if (n == 1) {
      any = 1;
      if (c == '\n') break;
      luaL_addchar(&b, c);
    } else if (n < 0 && errno == EINTR && !caught) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {0, POLLIN, 0};   /* a non-blocking stdin: wait */
      if (poll(&pfd, 1, -1) < 0 && errno == EINTR && caught) break;
    } else {
      break;   /* EOF, an error, or Ctrl-C */
    }
  }
  if (caught || !any) { lua_pushnil(L); return 1; }
  luaL_pushresult(&b);
  return 1;
}

/* [] -> [line | nil]: nil at EOF (Ctrl-D on an empty line) or a signal */
static int term_read_edited (lua_State *L, EditLine *e, const char *prompt) {
  int count = 0;
  const char *line;
  snprintf(editor_prompt, sizeof editor_prompt, "%s", prompt);
  for (;;) {
    line = el_gets(e, &count);
    if (line != NULL || caught || count != -1 || errno != EINTR) break;
  }
  if (line == NULL || count <= 0 || caught) { lua_pushnil(L); return 1; }
  count = (int)strlen(line);
  if (count > 0 && line[count - 1] == '\n') count--;
  lua_pushlstring(L, line, (size_t)count);
  return 1;
}

/*
** term.readline(prompt) -> line (without its newline); nil at end of input
** (Ctrl-D); false when Ctrl-C dropped the line; nil, "SIGTERM" when asked to
** stop. Edited (history, emacs keys) when stdin and stdout are terminals,
** else read plainly, the prompt shown (on stderr) only to a terminal.
*/
static int term_readline (lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  struct sigaction old_int, old_term;
  EditLine *e = NULL;
  int sig;
  orch_uv();   /* the loop's handlers first, so restoring brings them back */
  fflush(stdout);
  if (isatty(0) && isatty(1)) e = term_editor_get();
  term_signals_catch(&old_int, &old_term);
  if (orch_interrupted()) {   /* a Ctrl-C that came just before */
    term_signals_restore(&old_int, &old_term);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (e) term_read_edited(L, e, prompt);
  else term_read_plain(L, prompt);
  term_signals_restore(&old_int, &old_term);
  sig = caught;
  caught = 0;
  if (sig == SIGINT) {
    fputs(e ? "^C\n" : "\n", stdout);
    fflush(stdout);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (sig == SIGTERM) {
    lua_pushnil(L);
    lua_pushliteral(L, "SIGTERM");
    return 2;
  }
  return 1;
}

/* term.add_history(line): recalled with the arrow keys, saved by write_history */
static int term_add_history (lua_State *L) {
  const char *line = luaL_checkstring(L, 1);
  HistEvent ev;
  if (term_history_get() && *line) history(history_list, &ev, H_ENTER, line);
  return 0;
}

/* term.read_history(path) -> true | fail: its lines appended, oldest first */
static int term_read_history (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  HistEvent ev;
  FILE *f = fopen(path, "re");
  if (f == NULL) return orch_fail(L, path, errno);
  while ((n = getline(&line, &cap, f)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n > 0 && term_history_get()) history(history_list, &ev, H_ENTER, line);
  }
  free(line);
  fclose(f);
  lua_pushboolean(L, 1);
  return 1;
}

/*
** term.write_history(path) -> true | fail: one entry a line, oldest first,
** the last HISTORY_SIZE. Mode 0600: a history holds what was typed,
** passwords included.
*/
static int term_write_history (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  HistEvent ev;
  int fd, err = 0, rc;
  FILE *f;
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return orch_fail(L, path, errno);
  f = fdopen(fd, "w");
  if (f == NULL) { err = errno; close(fd); return orch_fail(L, path, err); }
  if (term_history_get()) {
    for (rc = history(history_list, &ev, H_LAST); rc != -1;
         rc = history(history_list, &ev, H_PREV)) {
      if (fputs(ev.str, f) == EOF || (ev.str[0] && ev.str[strlen(ev.str) - 1] != '\n'
                                      && fputc('\n', f) == EOF)) {
        err = errno;
        break;
      }
    }
  }
  if (fclose(f) != 0 && err == 0) err = errno;
  if (err) return orch_fail(L, path, err);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg term_funcs[] = {
  {"isatty", term_isatty}, {"size", term_size}, {"read_secret", term_read_secret},
  {"readline", term_readline}, {"add_history", term_add_history},
  {"read_history", term_read_history}, {"write_history", term_write_history},
  {NULL, NULL}
};

int luaopen_orch_core_term (lua_State *L) {
  luaL_newlib(L, term_funcs);
  return 1;
}
