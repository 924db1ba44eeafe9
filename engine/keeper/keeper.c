/*
** keeper.c: orch-keeper, which ends what orch started when orch dies,
** however it dies (kill -9 included). Each local command runs in a process
** group of its own (a new session: launch.c). orch starts one keeper, on
** its first command, and tells it on a pipe, its stdin, which groups are
** live:
**
**   +PGID\n    a command started: its group
**   -PGID\n    its leader was reaped: the group is orch's no more
**
** orch holds the only write end of the pipe (close-on-exec), so when orch
** ends the keeper reads end-of-file, kills every group still listed, and
** ends. That costs a write per command and one process per orch, not a
** process per command as a parent-death signal (PR_SET_PDEATHSIG) would,
** which also reaches only the direct child, not what a shell started.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static pid_t *groups;
static size_t ngroups, capgroups;

static void add_group (pid_t g) {
  if (ngroups == capgroups) {
    size_t cap = capgroups ? capgroups * 2 : 64;
    pid_t *more = realloc(groups, sizeof *more * cap);
    if (more == NULL) return;   /* unlisted: the store's journal still has it */
    groups = more;
    capgroups = cap;
  }
  groups[ngroups++] = g;
}

static void drop_group (pid_t g) {
  size_t i;
  for (i = ngroups; i-- > 0; )
    if (groups[i] == g) { groups[i] = groups[--ngroups]; return; }
}

static void take (const char *line) {
  long g = strtol(line + 1, NULL, 10);
  if (g <= 1) return;
  if (line[0] == '+') add_group((pid_t)g);
  else if (line[0] == '-') drop_group((pid_t)g);
}

int main (void) {
  char buf[4096], line[32];
  size_t len = 0, i;
  /* only orch's end of the pipe ends it: not a Ctrl-C, not a hang-up */
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (i = 0; i < (size_t)n; i++) {
      if (buf[i] == '\n') {
        line[len] = '\0';
        take(line);
        len = 0;
      } else if (len < sizeof line - 1) {
        line[len++] = buf[i];
      }
    }
  }
  for (i = 0; i < ngroups; i++) kill(-groups[i], SIGKILL);
  return 0;
}
