/*
** launch.c: a child started as libuv's fork + execvp did, with posix_spawn:
** glibc's is a clone(CLONE_VM|CLONE_VFORK), so it does not copy the page
** tables of all orch has mapped only for the exec to throw them away.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch.h"

/* ---- the keeper (keeper/keeper.c): ends our groups if orch dies ---- */

static char *keeper;         /* its path, or NULL: none */
static int keeper_fd = -1;   /* the pipe to it; -1 until the first command */

void orch_set_keeper (const char *path) {
  free(keeper);
  keeper = path ? strdup(path) : NULL;
}

/*
** Started on the first command: in a session of its own (a Ctrl-C to
** orch's group must not end it first), reading the pipe's other end. If
** it can't be started, commands still run: the state store's journal of
** process groups (state/orphans.lua) is what ends them then.
*/
static void keeper_start (void) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  char *argv[] = {keeper, NULL};
  extern char **environ;
  pid_t pid;
  int p[2], err;
  if (pipe2(p, O_CLOEXEC) != 0) return;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, p[0], 0);
  if (!err) err = posix_spawn(&pid, keeper, &fa, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  close(p[0]);
  if (err) { close(p[1]); orch_set_keeper(NULL); return; }
  keeper_fd = p[1];
}

static void keeper_say (char sign, pid_t group) {
  char msg[32];
  int n;
  if (keeper_fd < 0) return;
  n = snprintf(msg, sizeof msg, "%c%ld\n", sign, (long)group);
  /* under PIPE_BUF: one write, whole; a keeper gone (EPIPE) is let be */
  while (write(keeper_fd, msg, (size_t)n) < 0 && errno == EINTR) {}
}

void orch_reaped (pid_t group) { keeper_say('-', group); }

/*
** 0 or an errno. All ends are close-on-exec: the child's dup2 onto 0..2
** clears it there, and no other child inherits them. An end that pipe2
** made 0..2 (orch started with one of those closed) moves up: the child's
** would be overwritten by an earlier dup2 before its turn, and libuv
** aborts rather than close 0..2 for a handle of ours.
*/
int orch_open_pipes (int fds[NFDS], int with_stdin) {
  int i;
  for (i = with_stdin ? IN_R : OUT_R; i < NFDS; i += 2)
    if (pipe2(fds + i, O_CLOEXEC) != 0) return errno;
  for (i = 0; i < NFDS; i++) {
    if (fds[i] >= 0 && fds[i] <= 2) {
      int up = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
      if (up < 0) return errno;
      close(fds[i]);
      fds[i] = up;
    }
  }
  return 0;
}

/*
** One posix_spawn of path, and execvp's fallback: an executable that is
** not a binary (ENOEXEC: a script without #!) runs with /bin/sh.
*/
static int launch_try (pid_t *pid, const char *path, char *const argv[],
                      char *const envp[], const posix_spawn_file_actions_t *fa,
                      const posix_spawnattr_t *attr) {
  int err = posix_spawn(pid, path, fa, attr, argv, envp);
  if (err == ENOEXEC) {
    int argc = 0;
    char **sh_argv;
    while (argv[argc]) argc++;
    sh_argv = malloc(sizeof(char *) * (argc + 2));
    if (sh_argv == NULL) return ENOMEM;
    sh_argv[0] = "/bin/sh";
    sh_argv[1] = (char *)path;
    memcpy(sh_argv + 2, argv + 1, sizeof(char *) * argc);  /* NULL included */
    err = posix_spawn(pid, "/bin/sh", fa, attr, sh_argv, envp);
    free(sh_argv);
  }
  return err;
}

/*
** execvp's search, as libuv's forked child ran it after its chdir: file is
** looked up on the child's PATH (glibc's "/bin:/usr/bin" if it has none),
** relative entries from the child's cwd; EACCES is remembered and the
** search goes on. posix_spawnp would search orch's own PATH and drop the sh
** fallback, hence this loop. An absolute candidate that does not exist
** costs an access() rather than a spawn. 0 or the errno execvp would give.
*/
static int launch_search (pid_t *pid, const char *file, char *const argv[],
                         char *const envp[], const posix_spawn_file_actions_t *fa,
                         const posix_spawnattr_t *attr) {
  char buf[PATH_MAX];
  const char *path = "/bin:/usr/bin", *dir, *end;
  size_t flen = strlen(file);
  int i, err = ENOENT, eacces = 0;
  if (*file == '\0') return ENOENT;
  if (strchr(file, '/')) return launch_try(pid, file, argv, envp, fa, attr);
  if (flen > NAME_MAX) return ENAMETOOLONG;
  for (i = 0; envp[i]; i++)
    if (strncmp(envp[i], "PATH=", 5) == 0) { path = envp[i] + 5; break; }
  for (dir = path; ; dir = end + 1) {
    size_t dlen;
    end = strchrnul(dir, ':');
    dlen = (size_t)(end - dir);
    if (dlen + 1 + flen < sizeof buf) {   /* longer ones can't name a file */
      memcpy(buf, dir, dlen);
      if (dlen > 0) buf[dlen++] = '/';    /* "" is the current directory */
      memcpy(buf + dlen, file, flen + 1);
      if (buf[0] == '/' && access(buf, F_OK) != 0 && (errno == ENOENT || errno == ENOTDIR))
        err = errno;
      else
        err = launch_try(pid, buf, argv, envp, fa, attr);
      switch (err) {
        case 0: return 0;
        case EACCES: eacces = 1; break;
        case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT: break;
        default: return err;   /* found, but it could not run */
      }
    }
    if (*end == '\0') break;
  }
  return eacces ? EACCES : err;
}

/*
** What libuv's fork did, as spawn attributes: a new session (so the pid is
** the group's id), stdin from the pipe or /dev/null, stdout and stderr into
** the pipes, then cwd. The signal mask is emptied and every disposition set
** to default: orch's handlers (SIGINT, SIGTERM) would go at exec anyway,
** but its SIG_IGN for SIGPIPE would be inherited. The default set is
** memset, not sigfillset: that leaves out glibc's internal signals (32,
** 33), which its posix_spawn then hands to the program as SIG_IGN. Nothing
** signals the child before its exec, so SIG_DFL there is safe. 0 or an errno.
*/
int orch_spawn (pid_t *pid, char *const argv[], char *const envp[],
                const char *cwd, const int fds[NFDS]) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  int err;
  sigemptyset(&none);
  memset(&all, 0xff, sizeof all);
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID
                                 | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (!err) err = posix_spawnattr_setsigmask(&attr, &none);
  if (!err) err = posix_spawnattr_setsigdefault(&attr, &all);
  if (!err) err = fds[IN_R] >= 0 ? posix_spawn_file_actions_adddup2(&fa, fds[IN_R], 0)
                : posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, fds[OUT_W], 1);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, fds[ERR_W], 2);
  if (!err && cwd) err = posix_spawn_file_actions_addchdir_np(&fa, cwd);
  if (!err && keeper && keeper_fd < 0) keeper_start();
  if (!err) err = launch_search(pid, argv[0], argv, envp, &fa, &attr);
  if (!err) keeper_say('+', *pid);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return err;
}
