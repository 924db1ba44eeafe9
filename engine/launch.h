/*
** launch.h: starting a child as libuv's fork + execvp did, with posix_spawn
** (launch.c); proc.c watches it.
*/
#ifndef ORCH_LAUNCH_H
#define ORCH_LAUNCH_H

#include <sys/types.h>

/* Pipe ends as pipe2 makes them; the child gets IN_R, OUT_W and ERR_W. */
enum { IN_R, IN_W, OUT_R, OUT_W, ERR_R, ERR_W, NFDS };

/* The pipes (stdin's only when with_stdin; the others stay -1): 0 or an errno. */
int orch_open_pipes (int fds[NFDS], int with_stdin);
/* Where orch-keeper is (keeper/keeper.c says why), or NULL: without it,
** a command may outlive a killed orch. */
void orch_set_keeper (const char *path);
/* A child orch_spawn started was reaped: the keeper forgets its group. */
void orch_reaped (pid_t group);

/* A new session running argv found on envp's PATH, in cwd: 0 or an errno. */
int orch_spawn (pid_t *pid, char *const argv[], char *const envp[],
                const char *cwd, const int fds[NFDS]);

#endif
