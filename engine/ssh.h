/*
** ssh.h: what ssh.c (sessions, exec), ssh_auth.c and sftp.c share: a
** session on the event loop, and the non-blocking operations that run on it.
*/
#ifndef ORCH_SSH_H
#define ORCH_SSH_H

#include <libssh2.h>

#include "orch.h"

#define SESSION_MT "orch.ssh.session"

enum { OP_DONE, OP_AGAIN, OP_FAIL };

/* ssh_op.err values of our own, below libssh2's codes and -errno's */
#define SSH_ERR_BROKEN (-20000)        /* the session is unusable */
#define SSH_ERR_DEADLINE (-20002)      /* the op's own deadline passed */
#define SSH_ERR_DEAD (-20003)          /* the peer stopped answering keepalives */
#define SSH_ERRNO(e) (-10000 - (e))    /* an errno, offset from libssh2's */

/* ssh_session.broken: what a cancelled handshake left mid-conversation,
** or that the peer stopped answering (the worst: said to every later op) */
enum { SSH_USABLE, SSH_BROKEN, SSH_DEAD };

/* The error an op meets on a session left unusable, or 0. */
#define orch_ssh_unusable(s) \
  ((s)->broken == SSH_DEAD ? SSH_ERR_DEAD : (s)->broken == SSH_BROKEN ? SSH_ERR_BROKEN : 0)

typedef struct ssh_op ssh_op;
typedef struct ssh_session ssh_session;
typedef struct sftp_conn sftp_conn;     /* sftp.c's */
struct sftp_slot;

/*
** One step of an operation: do as much as libssh2 allows without
** blocking; OP_AGAIN when it must wait for the socket, else OP_DONE or
** OP_FAIL (with err).
*/
typedef int (*ssh_step) (ssh_op *o);

typedef struct ssh_buf { char *data; size_t len, cap; } ssh_buf;

/*
** An operation lives in a userdata on its task's Lua stack while it waits
** (so the strings it points at, its arguments, stay alive too).
*/
struct ssh_op {
  orch_wait w;              /* first: the cancel hook casts back */
  ssh_session *sess;
  ssh_step step;
  ssh_op *next;             /* in sess->waiting */
  int queued;
  int sftp;                 /* an SFTP flight (sftp.c) */
  int status;               /* OP_DONE or OP_FAIL once finished */
  int err;                  /* libssh2 error code (or -errno) on failure */
  int phase;
  int moved;                /* the last step transferred data */
  const char *a, *b;        /* command or paths (Lua strings) */
  const char *data;         /* bytes to send (a Lua string) */
  size_t len, off;
  LIBSSH2_CHANNEL *ch;
  struct sftp_slot *slots;  /* an SFTP flight's requests (Lua's memory) */
  int nslots, nanswered;
  uint32_t first_id;        /* the id of its first request */
  ssh_buf out, err_out;     /* malloc'd; freed by orch_ssh_op_free */
  int code;                 /* exit status */
  uint64_t deadline;        /* uv_now() ms by which it must be done, or 0 */
  char *signame;            /* exit signal, malloc'd by libssh2 */
};

struct ssh_session {
  LIBSSH2_SESSION *s;       /* NULL once closed */
  int fd;
  uv_poll_t poll;
  uv_timer_t timer;         /* keepalive */
  uv_timer_t deadline;      /* the earliest deadline of a waiting op */
  uint64_t last_recv;       /* uv_now() ms when bytes last came in */
  uint64_t alive_ms;        /* silence after which a busy peer is dead, or 0 */
  int handles;              /* open libuv handles; freed at 0 */
  ssh_op *waiting;
  sftp_conn *sftp;          /* the SFTP channel, once asked for */
  const char *label;        /* "host:port" for messages, malloc'd */
  lua_Integer channels, sftp_ops;  /* what the host cost: exec channels, SFTP ops */
  lua_Integer ahead;        /* channels that were open before they were asked for */
  lua_Integer round_trips;  /* times bytes came in after bytes went out */
  int sent;                 /* bytes went out since bytes last came in */
  unsigned reads;           /* times bytes came in: a pass of ssh_drive that read any goes again */
  int broken;               /* SSH_USABLE, SSH_BROKEN or SSH_DEAD */
  LIBSSH2_CHANNEL *spare;   /* a channel opened ahead for the next command, or NULL */
  int want_spare;           /* keep one open: set by the first exec */
  LIBSSH2_CHANNEL **dead;   /* cancelled execs' channels, closing; malloc'd */
  int ndead, capdead;
};

/* Runs o: at once if it can, else waits (yield or loop) and then k. */
int orch_ssh_op_run (lua_State *L, ssh_op *o, lua_KFunction k);
/* [..] -> [.., op]: a zeroed op for the session at stack index 1. */
ssh_op *orch_ssh_op_new (lua_State *L, ssh_session *sess, ssh_step step);
void orch_ssh_op_free (ssh_op *o);
/* Takes o off its session's queue (when a waiting task is cancelled). */
void orch_ssh_op_unqueue (ssh_op *o);
/* An op's cancel hook: what o leaves in libssh2 goes to its session. */
void orch_ssh_op_cancel (orch_wait *w);
/* The fail tuple for an op that failed: nil, "host: what: why", CODE. */
int orch_ssh_op_fail (lua_State *L, ssh_op *o, const char *what);
ssh_session *orch_ssh_check (lua_State *L, int idx);
int orch_ssh_buf_add (ssh_buf *b, const char *data, size_t n);

/* A session channel for a command or the SFTP subsystem: the spare if
** one is open, else one opened now (NULL and libssh2's error, EAGAIN
** while the server has not answered). Channels are alike until a request
** says what runs on them, so whoever calls while an open is on its way
** gets that one. */
LIBSSH2_CHANNEL *orch_ssh_channel (ssh_session *s);

/* sftp.c: starts the SFTP channel while other ops wait; drops the answers
** to a flight no one waits for; frees the channel's state. */
void orch_sftp_advance (ssh_session *s);
/* Whether the SFTP channel is being opened (nothing else may open one). */
int orch_sftp_opening (ssh_session *s);
void orch_sftp_detach (ssh_session *s, ssh_op *o);
void orch_sftp_free (ssh_session *s);

void orch_ssh_sftp_methods (lua_State *L);
void orch_ssh_auth_methods (lua_State *L);

#endif
