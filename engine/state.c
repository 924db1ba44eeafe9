/*
** state.c: orch.core.state, a small SQLite binding: open, exec, rows,
** cached prepared statements. Schema and migrations are Lua's (orch.state).
*/
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "orch.h"

#define DB_MT "orch.state.db"

/*
** Prepared statements are cached by SQL text. The store's queries are a
** handful of fixed strings, so a small array scanned linearly beats a hash
** map; past 32 distinct texts the oldest entry is finalized (FIFO).
*/
#define CACHE_MAX 32

struct cached {
  char *sql;            /* malloc'd copy of the key; NULL: empty slot */
  size_t len;
  sqlite3_stmt *stmt;
};

struct db {
  sqlite3 *db;          /* NULL: closed */
  int next;             /* slot the next new statement replaces */
  struct cached cache[CACHE_MAX];
};

/* The db userdata's first user value is its path, for error messages. */
static const char *db_path (lua_State *L, int idx) {
  const char *path;
  lua_getiuservalue(L, idx, 1);  /* [path] */
  path = lua_tostring(L, -1);
  lua_pop(L, 1);  /* still anchored by the userdata */
  return path ? path : "?";
}

/* Primary result code -> "SQLITE_NAME": stable for the caller to branch on. */
static const char *db_codename (int rc) {
  switch (rc & 0xff) {
#define C(x) case SQLITE_##x: return "SQLITE_" #x;
    C(ERROR) C(INTERNAL) C(PERM) C(ABORT) C(BUSY) C(LOCKED) C(NOMEM)
    C(READONLY) C(INTERRUPT) C(IOERR) C(CORRUPT) C(NOTFOUND) C(FULL)
    C(CANTOPEN) C(PROTOCOL) C(EMPTY) C(SCHEMA) C(TOOBIG) C(CONSTRAINT)
    C(MISMATCH) C(MISUSE) C(NOLFS) C(AUTH) C(FORMAT) C(RANGE) C(NOTADB)
    C(NOTICE) C(WARNING)
#undef C
    default: return "SQLITE_UNKNOWN";
  }
}

/* nil, "path: errmsg", "SQLITE_NAME" for the db at stack index 1. */
static int db_fail (lua_State *L, sqlite3 *db, int rc) {
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return orch_failmsg(L, db_codename(rc), "%s: %s", db_path(L, 1), msg);
}

static void db_release (struct db *d) {
  int i;
  if (d->db == NULL) return;
  for (i = 0; i < CACHE_MAX; i++) {
    struct cached *c = &d->cache[i];
    if (c->sql) {
      sqlite3_finalize(c->stmt);
      free(c->sql);
      c->sql = NULL; c->stmt = NULL; c->len = 0;
    }
  }
  sqlite3_close_v2(d->db);
  d->db = NULL;
}

/* Idempotent: __close, __gc and :close() may all run. */
static int db_close (lua_State *L) {
  struct db *d = luaL_checkudata(L, 1, DB_MT);
  db_release(d);
  lua_pushboolean(L, 1);
  return 1;
}

static struct db *db_check (lua_State *L) {
  struct db *d = luaL_checkudata(L, 1, DB_MT);
  if (d->db == NULL) luaL_error(L, "attempt to use a closed state database");
  return d;
}

static int db_tostring (lua_State *L) {
  struct db *d = luaL_checkudata(L, 1, DB_MT);
  lua_pushfstring(L, "orch.state.db (%s%s)", db_path(L, 1),
                  d->db ? "" : ", closed");
  return 1;
}

/*
** Nonzero if `tail` (what prepare left after the first statement) holds
** another statement. Only run on a cache miss. A tail that fails to prepare
** (it may name a table the first statement creates) counts as a statement.
*/
static int db_has_more (sqlite3 *db, const char *tail, const char *end) {
  sqlite3_stmt *next = NULL;
  const char *rest = NULL;
  int rc;
  while (tail < end && strchr(" \t\r\n;", *tail)) tail++;
  if (tail >= end) return 0;
  rc = sqlite3_prepare_v2(db, tail, (int)(end - tail), &next, &rest);
  if (next) sqlite3_finalize(next);
  return rc != SQLITE_OK || next != NULL;
}

/*
** The cached statement for `sql`, prepared on a miss. Returns SQLITE_OK and
** sets *out (NULL with *multi set when `sql` is several statements, which
** are not cached), or an error code with the message in the db handle.
*/
static int db_prepare (struct db *d, const char *sql, size_t len,
                       sqlite3_stmt **out, int *multi) {
  struct cached *c;
  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  char *key;
  int i, rc;
  *out = NULL; *multi = 0;
  for (i = 0; i < CACHE_MAX; i++) {
    c = &d->cache[i];
    if (c->sql && c->len == len && memcmp(c->sql, sql, len) == 0) {
      *out = c->stmt;
      return SQLITE_OK;
    }
  }
  rc = sqlite3_prepare_v3(d->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT,
                          &stmt, &tail);
  if (rc != SQLITE_OK) return rc;
  if (stmt == NULL || db_has_more(d->db, tail, sql + len)) {
    sqlite3_finalize(stmt);  /* empty SQL also goes the script way */
    *multi = 1;
    return SQLITE_OK;
  }
  key = malloc(len + 1);
  if (key == NULL) { sqlite3_finalize(stmt); return SQLITE_NOMEM; }
  memcpy(key, sql, len);
  key[len] = '\0';
  c = &d->cache[d->next];
  if (c->sql) { sqlite3_finalize(c->stmt); free(c->sql); }
  c->sql = key; c->len = len; c->stmt = stmt;
  d->next = (d->next + 1) % CACHE_MAX;
  *out = stmt;
  return SQLITE_OK;
}

/* Raises on a value SQLite can't store, naming its parameter position. */
static void db_checkparam (lua_State *L, int arg) {
  switch (lua_type(L, arg)) {
    case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING:
      return;
    case LUA_TLIGHTUSERDATA:  /* cjson.null, yaml.null */
      if (lua_touserdata(L, arg) == NULL) return;
      break;
  }
  luaL_argerror(L, arg, lua_pushfstring(L,
                "parameter %d: cannot bind a %s value", arg - 2,
                luaL_typename(L, arg)));
}

static int db_bind (lua_State *L, sqlite3_stmt *stmt, int arg) {
  int i = arg - 2;
  switch (lua_type(L, arg)) {
    case LUA_TBOOLEAN:
      return sqlite3_bind_int(stmt, i, lua_toboolean(L, arg));
    case LUA_TNUMBER:
      if (lua_isinteger(L, arg))
        return sqlite3_bind_int64(stmt, i, lua_tointeger(L, arg));
      return sqlite3_bind_double(stmt, i, lua_tonumber(L, arg));
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, arg, &len);
      /* TRANSIENT: a copy, so no binding outlives the Lua string */
      return sqlite3_bind_text64(stmt, i, s, len, SQLITE_TRANSIENT,
                                 SQLITE_UTF8);
    }
    default:  /* nil, NULL */
      return sqlite3_bind_null(stmt, i);
  }
}

/* [] -> [value] for column `i` of the current row. */
static void db_pushcolumn (lua_State *L, sqlite3_stmt *stmt, int i) {
  switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
      lua_pushinteger(L, sqlite3_column_int64(stmt, i));
      break;
    case SQLITE_FLOAT:
      lua_pushnumber(L, sqlite3_column_double(stmt, i));
      break;
    case SQLITE_TEXT:
      lua_pushlstring(L, (const char *)sqlite3_column_text(stmt, i),
                      (size_t)sqlite3_column_bytes(stmt, i));
      break;
    case SQLITE_BLOB: {
      const void *p = sqlite3_column_blob(stmt, i);
      int n = sqlite3_column_bytes(stmt, i);
      lua_pushlstring(L, p ? p : "", (size_t)n);
      break;
    }
    default:
      lua_pushnil(L);
  }
}

/* [] -> [row]: the current row keyed by column name; NULLs are absent. */
static void db_pushrow (lua_State *L, sqlite3_stmt *stmt) {
  int i, n = sqlite3_column_count(stmt);
  lua_createtable(L, 0, n);
  for (i = 0; i < n; i++) {
    const char *name;
    if (sqlite3_column_type(stmt, i) == SQLITE_NULL) continue;
    name = sqlite3_column_name(stmt, i);
    if (name == NULL) luaL_error(L, "out of memory");
    db_pushcolumn(L, stmt, i);
    lua_setfield(L, -2, name);
  }
}

enum { RUN_EXEC, RUN_ROWS, RUN_ROW, RUN_VALUE };

/*
** db:<mode>(sql, ...): the one path every query takes. A statement is
** reset before use too, so one abandoned by a raise (out of memory while
** building a row) never keeps a read transaction open past its next use.
*/
static int db_run (lua_State *L, int mode) {
  struct db *d = db_check(L);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  int nparams = lua_gettop(L) - 2;
  sqlite3_stmt *stmt;
  sqlite3_int64 before;
  int i, rc, multi, results = 0;

  for (i = 3; i <= nparams + 2; i++) db_checkparam(L, i);
  if (len > INT32_MAX) return db_fail(L, NULL, SQLITE_TOOBIG);
  rc = db_prepare(d, sql, len, &stmt, &multi);
  if (rc == SQLITE_NOMEM) return luaL_error(L, "out of memory");
  if (rc != SQLITE_OK) return db_fail(L, d->db, rc);
  if (multi) {
    /* a migration script: several statements, no parameters, no rows */
    if (mode != RUN_EXEC || nparams > 0)
      return luaL_argerror(L, 2, mode == RUN_EXEC
        ? "a statement with parameters must be a single statement"
        : "must be a single statement");
    before = sqlite3_total_changes64(d->db);
    rc = sqlite3_exec(d->db, lua_tostring(L, 2), NULL, NULL, NULL);
    if (rc != SQLITE_OK) return db_fail(L, d->db, rc);
    /* every row the script changed, triggers and cascades included */
    lua_pushinteger(L, (lua_Integer)(sqlite3_total_changes64(d->db) - before));
    return 1;
  }
  sqlite3_reset(stmt);
  before = sqlite3_total_changes64(d->db);
  if (nparams != sqlite3_bind_parameter_count(stmt)) {
    return luaL_argerror(L, 2, lua_pushfstring(L,
      "statement takes %d parameter(s), got %d",
      sqlite3_bind_parameter_count(stmt), nparams));
  }
  for (i = 3; i <= nparams + 2; i++) {
    rc = db_bind(L, stmt, i);
    if (rc != SQLITE_OK) goto fail;
  }
  if (mode == RUN_ROWS) lua_newtable(L);  /* [rows] */
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (mode == RUN_EXEC) continue;
    if (mode == RUN_ROWS) {
      db_pushrow(L, stmt);                  /* [rows, row] */
      lua_rawseti(L, -2, ++results);        /* [rows] */
      continue;
    }
    if (mode == RUN_ROW) db_pushrow(L, stmt);
    else db_pushcolumn(L, stmt, 0);
    results = 1;
    rc = SQLITE_DONE;  /* one row is all we want */
    break;
  }
  if (rc != SQLITE_DONE) goto fail;
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  switch (mode) {
    case RUN_EXEC:
      /*
      ** changes() still holds the last INSERT/UPDATE/DELETE's count after
      ** a CREATE or a SELECT: only trust it if this statement changed rows.
      */
      lua_pushinteger(L, sqlite3_total_changes64(d->db) == before ? 0
                         : (lua_Integer)sqlite3_changes64(d->db));
      return 1;
    case RUN_ROWS:
      return 1;
    default:
      if (!results) lua_pushnil(L);
      return 1;
  }
fail:
  /* the message and code stay in the handle until the next API call */
  db_fail(L, d->db, rc);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return 3;
}

static int db_exec (lua_State *L) { return db_run(L, RUN_EXEC); }
static int db_rows (lua_State *L) { return db_run(L, RUN_ROWS); }
static int db_row (lua_State *L) { return db_run(L, RUN_ROW); }
static int db_value (lua_State *L) { return db_run(L, RUN_VALUE); }

static int db_last_id (lua_State *L) {
  struct db *d = db_check(L);
  lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(d->db));
  return 1;
}

static int db_changes (lua_State *L) {
  struct db *d = db_check(L);
  lua_pushinteger(L, (lua_Integer)sqlite3_changes64(d->db));
  return 1;
}

/*
** state.open(path) -> db, or the fail tuple. SQLite opens its files with
** O_CLOEXEC, so children we spawn never inherit the database. A new store
** is made 0600 here, whatever the umask: it holds file versions and
** infrastructure state (SQLite gives its journal and WAL the same mode).
*/
static int state_open (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct db *d;
  int rc;
  lua_settop(L, 1);
  d = lua_newuserdatauv(L, sizeof *d, 1);        /* [path, db] */
  memset(d, 0, sizeof *d);  /* valid before anything can fail */
  luaL_setmetatable(L, DB_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 2, 1);
  lua_insert(L, 1);                              /* [db, path] */
  if (strcmp(path, ":memory:") != 0) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);  /* else SQLite says why, below */
  }
  rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE |
                       SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(d->db, 5000);
    rc = sqlite3_exec(d->db, "PRAGMA journal_mode=WAL;"
                      "PRAGMA synchronous=NORMAL;"
                      "PRAGMA foreign_keys=ON;", NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK) {
    db_fail(L, d->db, rc);                       /* [db, path, nil, msg, code] */
    db_release(d);  /* open_v2 hands back a handle even when it fails */
    return 3;
  }
  lua_settop(L, 1);                              /* [db] */
  return 1;
}

static const luaL_Reg db_meta[] = {{"__gc", db_close},
  {"__close", db_close}, {"__tostring", db_tostring}, {NULL, NULL}};
static const luaL_Reg db_methods[] = {{"exec", db_exec}, {"rows", db_rows},
  {"row", db_row}, {"value", db_value}, {"last_id", db_last_id},
  {"changes", db_changes}, {"close", db_close}, {NULL, NULL}};
static const luaL_Reg state_funcs[] = {{"open", state_open}, {NULL, NULL}};

int luaopen_orch_core_state (lua_State *L) {
  orch_newclass(L, DB_MT, db_meta, db_methods);
  luaL_newlib(L, state_funcs);    /* [state] */
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "sqlite_version");
  return 1;
}
