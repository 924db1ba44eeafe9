/*
** main.c: the orch binary: one lua_State with the C modules preloaded as
** orch.core.*, the Lua library on package.path, then orch.cli decides.
*/
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pwd.h>
#include <sys/stat.h>

#include "orch.h"
#include "launch.h"

#define ORCH_MODULE(name) int luaopen_orch_core_##name (lua_State *L);
#define ORCH_LAZY(name)
#include "modules.h"
#undef ORCH_MODULE

static const luaL_Reg preloads[] = {
#define ORCH_MODULE(name) {"orch.core." #name, luaopen_orch_core_##name},
#include "modules.h"
#undef ORCH_MODULE
  {NULL, NULL}
};

/* Modules built as shared objects (CMakeLists.txt says why), by name. */
static const char *const lazy_modules[] = {
#define ORCH_MODULE(name)
#undef ORCH_LAZY
#define ORCH_LAZY(name) #name,
#include "modules.h"
#undef ORCH_MODULE
#undef ORCH_LAZY
  NULL
};

static int is_file (const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
** Where the Lua library and providers live: beside an installed binary
** (PREFIX/bin/orch -> PREFIX/share/orch), else the source tree this binary
** was built from, else the configured install prefix.
*/
static void find_root (char *root, size_t size, char *exe, size_t exesize) {
  char probe[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", exe, exesize - 1);
  exe[n > 0 ? n : 0] = '\0';
  if (n > 0) {
    char dir[PATH_MAX];
    char *slash;
    snprintf(dir, sizeof dir, "%s", exe);
    slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    snprintf(probe, sizeof probe, "%s/../share/orch/lua/orch/cli/init.lua", dir);
    if (is_file(probe)) {
      snprintf(probe, sizeof probe, "%s/../share/orch", dir);
      if (realpath(probe, root)) return;
    }
  }
  snprintf(probe, sizeof probe, "%s/lua/orch/cli/init.lua", ORCH_SOURCE_DIR);
  snprintf(root, size, "%s", is_file(probe) ? ORCH_SOURCE_DIR : ORCH_DATA_DIR);
}

/*
** Where the lazy modules are: beside the binary in a build tree
** (build/modules), beside an installed binary (PREFIX/bin/orch ->
** PREFIX/lib/orch), else the configured install directory.
*/
static char module_dir[PATH_MAX + 16];
static void find_module_dir (const char *exe) {
  char dir[PATH_MAX], probe[PATH_MAX + 64];
  char *slash;
  snprintf(dir, sizeof dir, "%s", exe);
  slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  snprintf(probe, sizeof probe, "%s/modules/%s.so", dir, lazy_modules[0]);
  if (lazy_modules[0] && is_file(probe)) {
    snprintf(module_dir, sizeof module_dir, "%s/modules", dir);
    return;
  }
  snprintf(probe, sizeof probe, "%s/../%s", dir, ORCH_MODULE_SUBDIR);
  if (realpath(probe, module_dir)) return;
  snprintf(module_dir, sizeof module_dir, "%s", ORCH_MODULE_DIR);
}

/*
** preload["orch.core.NAME"](name): opens MODULE_DIR/NAME.so, runs its
** luaopen. RTLD_NODELETE, not package.loadlib: a module must outlive
** lua_close, since libuv may still hold its callbacks and LeakSanitizer
** crashed walking the thread-local storage of libraries unloaded at exit.
*/
static int load_lazy (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *base = strrchr(name, '.') + 1;
  char path[PATH_MAX + 64], sym[128];
  void *lib;
  lua_CFunction open;
  snprintf(path, sizeof path, "%s/%s.so", module_dir, base);
  snprintf(sym, sizeof sym, "luaopen_orch_core_%s", base);
  lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  open = lib ? (lua_CFunction)(void (*)(void))dlsym(lib, sym) : NULL;
  if (open == NULL)
    return luaL_error(L, "cannot load module %s from %s: %s (is orch installed whole?)",
                      name, path, dlerror());
  lua_pushcfunction(L, open);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/*
** The library's bytecode (compiled by the build, see CMakeLists.txt): in a
** build tree beside the binary, else ROOT/bytecode when installed.
*/
static char bytecode_dir[PATH_MAX + 16], lua_dir[PATH_MAX + 16];
static void find_bytecode (const char *exe, const char *root) {
  char *slash;
  struct stat st;
  snprintf(bytecode_dir, sizeof bytecode_dir, "%s", exe);
  slash = strrchr(bytecode_dir, '/');
  if (slash) *slash = '\0';
  strncat(bytecode_dir, "/bytecode", sizeof bytecode_dir - strlen(bytecode_dir) - 1);
  if (stat(bytecode_dir, &st) != 0)
    snprintf(bytecode_dir, sizeof bytecode_dir, "%s/bytecode", root);
  snprintf(lua_dir, sizeof lua_dir, "%s/lua/", root);
}

static double mtime_of (const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
}

/*
** package.searchers[2]: a module of the library from its bytecode, which
** loads ten times faster than the source parses, when the bytecode is no
** older than the source (an edit since the build falls through to it).
*/
static int search_bytecode (lua_State *L) {
  char bc[2 * PATH_MAX];
  const char *src;
  size_t n = strlen(lua_dir);
  luaL_checkstring(L, 1);
  lua_getglobal(L, "package");                       /* [name, package] */
  lua_getfield(L, -1, "searchpath");
  lua_pushvalue(L, 1);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 1);                                 /* [name, package, src?] */
  src = lua_tostring(L, -1);
  if (src == NULL || strncmp(src, lua_dir, n) != 0) return 0;
  snprintf(bc, sizeof bc, "%s/%s", bytecode_dir, src + n);
  if (mtime_of(bc) < mtime_of(src)) return 0;
  if (luaL_loadfilex(L, bc, "b") != LUA_OK) return 0;  /* [.., src, loader] */
  lua_insert(L, -2);
  return 2;                                          /* loader, src */
}

/* package.path = ORCH_PATH dirs, then ROOT/lua, then Lua's default. */
static void set_path (lua_State *L, const char *root) {
  luaL_Buffer b;
  const char *extra = getenv("ORCH_PATH");
  lua_getglobal(L, "package");                      /* [package] */
  luaL_buffinit(L, &b);
  while (extra && *extra) {
    size_t len = strcspn(extra, ":");
    if (len > 0) {
      luaL_addlstring(&b, extra, len); luaL_addstring(&b, "/?.lua;");
      luaL_addlstring(&b, extra, len); luaL_addstring(&b, "/?/init.lua;");
    }
    extra += len + (extra[len] == ':');
  }
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", root, root);
  luaL_addvalue(&b);
  lua_getfield(L, -2, "path");
  luaL_addvalue(&b);
  luaL_pushresult(&b);                              /* [package, path] */
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

/* orch.core.info: facts about this binary and process, for the Lua side. */
static char info_root[PATH_MAX], info_exe[PATH_MAX];
static int luaopen_info (lua_State *L) {
  char host[256];
  struct passwd *pw = getpwuid(getuid());
  lua_createtable(L, 0, 7);
  lua_pushstring(L, ORCH_VERSION); lua_setfield(L, -2, "version");
  lua_pushstring(L, info_root); lua_setfield(L, -2, "root");
  lua_pushstring(L, info_exe); lua_setfield(L, -2, "exe");
  lua_pushinteger(L, getpid()); lua_setfield(L, -2, "pid");
  lua_pushinteger(L, getuid()); lua_setfield(L, -2, "uid");
  if (gethostname(host, sizeof host) == 0) {
    host[sizeof host - 1] = '\0';
    lua_pushstring(L, host); lua_setfield(L, -2, "hostname");
  }
  if (pw) lua_pushstring(L, pw->pw_name);
  else lua_pushfstring(L, "uid %d", (int)getuid());
  lua_setfield(L, -2, "user");
  return 1;
}

static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)",
                                         luaL_typename(L, 1));
  if (strstr(msg, "\nstack traceback:") == NULL) luaL_traceback(L, L, msg, 1);
  return 1;
}

/* [] -> [code]: require("orch.cli").main(argv) */
static int run_cli (lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int i;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orch.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_call(L, 1, 1);
  return 1;
}

int main (int argc, char **argv) {
  int status, code, i;
  const luaL_Reg *m;
  lua_State *L;
  /* A child that closes its stdin early must not kill us on write. */
  signal(SIGPIPE, SIG_IGN);
  L = luaL_newstate();
  if (L == NULL) {
    fputs("orch: cannot create the Lua state: out of memory\n", stderr);
    return 1;
  }
  orch_loop_init(L);
  /* A collector that never rests, to shake out missing anchors in C. */
  if (getenv("ORCH_GC_STRESS")) lua_gc(L, LUA_GCINC, 0, 100, 0);
  /* Most of what orch allocates dies young (events, diffs, a plan's
  ** per-resource tables): the generational collector spends a third less
  ** on a 1,000-resource plan than the incremental one. */
  else lua_gc(L, LUA_GCGEN, 0, 0);
  luaL_openlibs(L);
  find_root(info_root, sizeof info_root, info_exe, sizeof info_exe);
  set_path(L, info_root);
  find_bytecode(info_exe, info_root);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "insert");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_remove(L, -2);
  lua_pushinteger(L, 2);
  lua_pushcfunction(L, search_bytecode);
  lua_call(L, 3, 0);                                 /* [table] */
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (m = preloads; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  find_module_dir(info_exe);
  {
    char keeper[sizeof module_dir + 16];
    snprintf(keeper, sizeof keeper, "%s/orch-keeper", module_dir);
    if (access(keeper, X_OK) == 0) orch_set_keeper(keeper);
  }
  for (i = 0; lazy_modules[i]; i++) {
    lua_pushfstring(L, "orch.core.%s", lazy_modules[i]);  /* [preload, name] */
    lua_pushcfunction(L, load_lazy);
    lua_settable(L, -3);
  }
  lua_pushcfunction(L, luaopen_info);
  lua_setfield(L, -2, "orch.core.info");
  lua_pop(L, 1);

  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, run_cli);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, -4);
  if (status != LUA_OK) {
    /* orch.cli reports the user's errors itself: this is the engine's bug,
    ** and the message already holds its traceback */
    fprintf(stderr, "orch: internal error: %s\n", lua_tostring(L, -1));
    code = 1;
  } else {
    code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1)
                                : (lua_toboolean(L, -1) ? 0 : 1);
  }
  lua_close(L);
  orch_loop_shutdown();
  return code;
}
