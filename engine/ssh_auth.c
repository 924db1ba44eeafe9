/*
** ssh_auth.c: who is on the other end and who we are: a session's host key
** (with its SHA256 fingerprint, as ssh-keygen shows it; known_hosts is
** read in host/known_hosts.lua), and authentication by key file, password or ssh-agent, each
** step driven by the event loop like any other operation.
*/
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ssh.h"

/* ---- host keys ---- */

static const char *ssh_key_type_name (int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
#ifdef LIBSSH2_HOSTKEY_TYPE_ED25519
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
#endif
    default: return "unknown";
  }
}

/* [..] -> [.., "SHA256:base64"] of a raw key blob, as ssh-keygen -l shows */
static void ssh_push_fingerprint (lua_State *L, const unsigned char *key, size_t len) {
  unsigned char md[32], b64[48];
  unsigned int mdlen = 0;
  int n;
  EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
  n = EVP_EncodeBlock(b64, md, (int)mdlen);
  while (n > 0 && b64[n - 1] == '=') n--;   /* OpenSSH drops the padding */
  lua_pushfstring(L, "SHA256:%s", "");
  lua_pushlstring(L, (const char *)b64, (size_t)n);
  lua_concat(L, 2);
}

/*
** sess:host_key() -> type name, fingerprint, the key blob as base64 (as a
** known_hosts line holds it); nothing before the handshake. Whether to
** trust it is host/known_hosts.lua's to say.
*/
static int ssh_host_key (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  size_t len;
  int type;
  unsigned char *b64;
  const char *key = libssh2_session_hostkey(s->s, &len, &type);
  if (key == NULL) return 0;
  lua_pushstring(L, ssh_key_type_name(type));
  ssh_push_fingerprint(L, (const unsigned char *)key, len);
  luaL_argcheck(L, len < (1u << 20), 1, "host key too large");
  b64 = (unsigned char *)lua_newuserdatauv(L, 4 * ((len + 2) / 3) + 1, 0);
  lua_pushlstring(L, (const char *)b64, (size_t)EVP_EncodeBlock(b64, (const unsigned char *)key, (int)len));
  lua_remove(L, -2);
  return 3;
}


/* ---- authentication ---- */

static int ssh_step_auth_list (ssh_op *o) {
  char *list = libssh2_userauth_list(o->sess->s, o->a, (unsigned int)strlen(o->a));
  if (list) {
    if (!orch_ssh_buf_add(&o->out, list, strlen(list))) { o->err = LIBSSH2_ERROR_ALLOC; return OP_FAIL; }
    return OP_DONE;
  }
  if (libssh2_userauth_authenticated(o->sess->s)) return OP_DONE;  /* "none" worked */
  if (libssh2_session_last_errno(o->sess->s) == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
  o->err = libssh2_session_last_errno(o->sess->s);
  return OP_FAIL;
}

static int ssh_auth_listed (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  int n;
  if (o->status != OP_DONE) { n = orch_ssh_op_fail(L, o, "cannot list auth methods"); orch_ssh_op_free(o); return n; }
  lua_newtable(L);
  if (o->out.len > 0) {
    char *p = o->out.data, *end = o->out.data + o->out.len;
    int i = 1;
    while (p < end) {
      char *comma = memchr(p, ',', (size_t)(end - p));
      size_t l = comma ? (size_t)(comma - p) : (size_t)(end - p);
      lua_pushlstring(L, p, l);
      lua_rawseti(L, -2, i++);
      p += l + 1;
    }
  }
  orch_ssh_op_free(o);
  return 1;
}

/* sess:auth_methods(user) -> { "publickey", "password", ... } ({} if "none" let us in) */
static int ssh_auth_methods (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  ssh_op *o;
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  o = orch_ssh_op_new(L, s, ssh_step_auth_list);
  o->a = lua_tostring(L, 2);
  return orch_ssh_op_run(L, o, ssh_auth_listed);
}

static int ssh_step_auth_key (ssh_op *o) {
  int rc = libssh2_userauth_publickey_fromfile_ex(o->sess->s, o->a, (unsigned int)strlen(o->a),
                                                  NULL, o->b, o->data);
  if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
  o->err = rc;
  return rc == 0 ? OP_DONE : OP_FAIL;
}

static int ssh_step_auth_password (ssh_op *o) {
  int rc = libssh2_userauth_password_ex(o->sess->s, o->a, (unsigned int)strlen(o->a),
                                        o->data, (unsigned int)o->len, NULL);
  if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
  o->err = rc;
  return rc == 0 ? OP_DONE : OP_FAIL;
}

static int ssh_authed (lua_State *L, int status, lua_KContext ctx) {
  ssh_op *o = (ssh_op *)ctx;
  if (o->status == OP_DONE) { lua_pushboolean(L, 1); return 1; }
  return orch_ssh_op_fail(L, o, "authentication failed");
}

/* sess:auth_key(user, private_key_path [, passphrase]) -> true | fail */
static int ssh_auth_key (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  ssh_op *o;
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  luaL_optstring(L, 4, NULL);
  lua_settop(L, 4);
  o = orch_ssh_op_new(L, s, ssh_step_auth_key);
  o->a = lua_tostring(L, 2);
  o->b = lua_tostring(L, 3);
  o->data = lua_tostring(L, 4);
  return orch_ssh_op_run(L, o, ssh_authed);
}

/* sess:auth_password(user, password) -> true | fail */
static int ssh_auth_password (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  ssh_op *o;
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  o = orch_ssh_op_new(L, s, ssh_step_auth_password);
  o->a = lua_tostring(L, 2);
  o->data = lua_tolstring(L, 3, &o->len);
  return orch_ssh_op_run(L, o, ssh_authed);
}

/*
** The agent speaks over its own unix socket, blocking but local and quick;
** only the signature exchange with the server goes through the loop.
*/
typedef struct agent_op {
  ssh_op op;                /* first */
  LIBSSH2_AGENT *agent;
  struct libssh2_agent_publickey *id;
} agent_op;

static int ssh_step_auth_agent (ssh_op *o) {
  agent_op *a = (agent_op *)o;
  while (a->id) {
    int rc = libssh2_agent_userauth(a->agent, o->a, a->id);
    if (rc == LIBSSH2_ERROR_EAGAIN) return OP_AGAIN;
    if (rc == 0) return OP_DONE;
    o->err = rc;
    if (libssh2_agent_get_identity(a->agent, &a->id, a->id) != 0) a->id = NULL;
    o->moved = 1;
  }
  return OP_FAIL;
}

/* The agent's socket is local: a failed goodbye to it changes nothing. */
static void agent_release (agent_op *a) {
  (void)libssh2_agent_disconnect(a->agent);
  libssh2_agent_free(a->agent);
}

static int agent_authed (lua_State *L, int status, lua_KContext ctx) {
  agent_op *a = (agent_op *)ctx;
  agent_release(a);
  if (a->op.status == OP_DONE) { lua_pushboolean(L, 1); return 1; }
  return orch_ssh_op_fail(L, &a->op, "the agent's keys were refused");
}

static void agent_cancel (orch_wait *w) {
  agent_op *a = (agent_op *)w;
  orch_ssh_op_cancel(w);   /* the session's auth state is cut short too */
  agent_release(a);
}

/* sess:auth_agent(user) -> true | fail (no agent, no keys, or refused) */
static int ssh_auth_agent (lua_State *L) {
  ssh_session *s = orch_ssh_check(L, 1);
  agent_op *a;
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  a = lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  orch_wait_init(&a->op.w);
  a->op.w.cancel = agent_cancel;
  a->op.sess = s;
  a->op.step = ssh_step_auth_agent;
  a->op.a = lua_tostring(L, 2);
  a->agent = libssh2_agent_init(s->s);
  if (a->agent == NULL) return luaL_error(L, "out of memory");
  if (libssh2_agent_connect(a->agent) != 0 || libssh2_agent_list_identities(a->agent) != 0 ||
      libssh2_agent_get_identity(a->agent, &a->id, NULL) != 0) {
    agent_release(a);
    return orch_failmsg(L, "ENOAGENT", "%s: no ssh-agent with keys (SSH_AUTH_SOCK)", s->label);
  }
  return orch_ssh_op_run(L, &a->op, agent_authed);
}

/* [methods] -> [methods]: adds host key and authentication methods */
void orch_ssh_auth_methods (lua_State *L) {
  static const luaL_Reg auth_methods[] = {
    {"host_key", ssh_host_key},
    {"auth_methods", ssh_auth_methods}, {"auth_key", ssh_auth_key},
    {"auth_password", ssh_auth_password}, {"auth_agent", ssh_auth_agent},
    {NULL, NULL}
  };
  luaL_setfuncs(L, auth_methods, 0);
}
