/*
** test_core.c: ctest cases for the C core, one per run (the case's name is
** argv[1]): a lua_State with the core modules, driven from C and from
** short Lua chunks, each asserting what a break in the C would change.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch.h"

int luaopen_orch_core_fs (lua_State *L);
int luaopen_orch_core_yaml (lua_State *L);
int luaopen_orch_core_proc (lua_State *L);
int luaopen_orch_core_loop (lua_State *L);

static int failures;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    failures++; } } while (0)

static lua_State *test_state (void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) { fputs("out of memory\n", stderr); exit(1); }
  orch_loop_init(L);
  luaL_openlibs(L);
  luaL_requiref(L, "orch.core.fs", luaopen_orch_core_fs, 0);
  luaL_requiref(L, "orch.core.yaml", luaopen_orch_core_yaml, 0);
  luaL_requiref(L, "orch.core.proc", luaopen_orch_core_proc, 0);
  luaL_requiref(L, "orch.core.loop", luaopen_orch_core_loop, 0);
  lua_settop(L, 0);
  return L;
}

/* Runs chunk, which asserts in Lua; its error is a failure. */
static void run_lua (lua_State *L, const char *name, const char *chunk) {
  if (luaL_loadbuffer(L, chunk, strlen(chunk), name) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", name, lua_tostring(L, -1));
    lua_pop(L, 1);
    failures++;
  }
}

/* The fail tuple is what every expected failure returns. */
static void test_fail_tuple (lua_State *L) {
  CHECK(strcmp(orch_errname(ENOENT), "ENOENT") == 0);
  CHECK(strcmp(orch_errname(ETIMEDOUT), "ETIMEDOUT") == 0);
  CHECK(strcmp(orch_errname(-12345), "EUNKNOWN") == 0);
  CHECK(orch_fail(L, "/nowhere", ENOENT) == 3);
  CHECK(lua_isnil(L, -3));
  CHECK(strcmp(lua_tostring(L, -2), "/nowhere: No such file or directory") == 0);
  CHECK(strcmp(lua_tostring(L, -1), "ENOENT") == 0);
  lua_settop(L, 0);
  CHECK(orch_failmsg(L, "EBROKEN", "%s: %d", "h1", 22) == 3);
  CHECK(strcmp(lua_tostring(L, -2), "h1: 22") == 0);
  lua_settop(L, 0);
}

static void test_fs_write_read (lua_State *L) {
  run_lua(L, "fs_write_read",
    "local fs = require('orch.core.fs')\n"
    "local dir = assert(fs.tmpdir())\n"
    "local path = dir .. '/f'\n"
    "assert(fs.write(path, 'one\\0two', { mode = '0640' }))\n"
    "assert(fs.read(path) == 'one\\0two', 'read back')\n"
    "local st = assert(fs.stat(path))\n"
    "assert(st.type == 'file' and st.size == 7, 'stat')\n"
    "assert(st.mode == tonumber('640', 8), ('mode %o'):format(st.mode))\n"
    "assert(fs.write(path, 'new'))\n"   /* replaced whole, no temp left */
    "assert(fs.read(path) == 'new')\n"
    "local names = {}\n"
    "for _, n in ipairs(fs.list(dir)) do names[#names + 1] = n end\n"
    "assert(#names == 1, 'left behind: ' .. table.concat(names, ' '))\n"
    "local ok, err, code = fs.read(dir .. '/missing')\n"
    "assert(ok == nil and code == 'ENOENT' and err:find('missing', 1, true), tostring(err))\n"
    "assert(fs.remove(dir, { recursive = true }))\n"
    "assert(fs.stat(dir) == nil)\n");
}

static void test_yaml_error_position (lua_State *L) {
  run_lua(L, "yaml_error_position",
    "local yaml = require('orch.core.yaml')\n"
    "local t = assert(yaml.load('a: 1\\nb: [x, y]\\n'))\n"
    "assert(t.a == 1 and t.b[2] == 'y')\n"
    "local ok, err = pcall(yaml.load, 'a: 1\\n  b: 2\\n', 'doc.yaml')\n"
    "assert(not ok, 'a broken document parsed')\n"
    "assert(err == 'doc.yaml:2:4: mapping values are not allowed in this context', err)\n"
    "ok, err = pcall(yaml.load, 'a: 1\\nb: [x, y\\n', 'doc.yaml')\n"
    "assert(not ok and err:find('^doc%.yaml:3:1: .*flow sequence at 2:4'), err)\n");
}

static void test_proc_exit_code (lua_State *L) {
  run_lua(L, "proc_exit_code",
    "local proc = require('orch.core.proc')\n"
    "local p = assert(proc.spawn({ cmd = 'echo out; echo err >&2; exit 3' }))\n"
    "local r = p:wait()\n"
    "assert(r.code == 3, 'code ' .. tostring(r.code))\n"
    "assert(r.stdout == 'out\\n' and r.stderr == 'err\\n', r.stdout .. r.stderr)\n"
    "p = assert(proc.spawn({ argv = { 'cat' }, stdin = 'fed' }))\n"
    "assert(p:wait().stdout == 'fed')\n"
    "p = assert(proc.spawn({ argv = { 'sleep', '5' }, timeout = 0.1, grace = 0.1 }))\n"
    "r = p:wait()\n"
    "assert(r.timed_out and r.signal == 'TERM', tostring(r.signal))\n"
    "local ok, err, code = proc.spawn({ argv = { '/nonexistent/x' } })\n"
    "assert(ok == nil and code == 'ENOENT', tostring(err))\n"
    "ok, err = pcall(proc.spawn, { cmd = 42 })\n"
    "assert(not ok and err:find('bad argument #1', 1, true), err)\n");
}

static void test_loop_timers (lua_State *L) {
  run_lua(L, "loop_timers",
    "local loop = require('orch.core.loop')\n"
    "local order = {}\n"
    "loop.spawn(function() loop.sleep(0.05) order[#order + 1] = 'b' end)\n"
    "loop.spawn(function() loop.sleep(0.01) order[#order + 1] = 'a' end)\n"
    "local c = loop.cond()\n"
    "local w = loop.spawn(function() c:wait() return 'woken' end)\n"
    "loop.spawn(function() loop.sleep(0.02) c:signal() end)\n"
    "assert(loop.run() == 0, 'tasks left')\n"
    "assert(table.concat(order) == 'ab', table.concat(order))\n"
    "local ok, v = w:wait()\n"
    "assert(ok and v == 'woken')\n"
    "loop.sleep(0.01)\n"   /* at top level: runs the loop until done */
    "local ok2, err = pcall(loop.sleep, -1)\n"
    "assert(not ok2 and err:find('bad argument', 1, true), err)\n");
}

/* A wait nothing can end is reported, not hung on. */
static void test_loop_deadlock (lua_State *L) {
  run_lua(L, "loop_deadlock",
    "local loop = require('orch.core.loop')\n"
    "local ok, err = pcall(function() loop.cond():wait() end)\n"
    "assert(not ok and tostring(err):find('deadlock', 1, true), tostring(err))\n");
}

static const struct { const char *name; void (*fn) (lua_State *L); } cases[] = {
  {"fail_tuple", test_fail_tuple}, {"fs_write_read", test_fs_write_read},
  {"yaml_error_position", test_yaml_error_position}, {"proc_exit_code", test_proc_exit_code},
  {"loop_timers", test_loop_timers}, {"loop_deadlock", test_loop_deadlock},
  {NULL, NULL}
};

int main (int argc, char **argv) {
  int i;
  lua_State *L;
  if (argc != 2) { fprintf(stderr, "usage: %s CASE\n", argv[0]); return 2; }
  for (i = 0; cases[i].name && strcmp(cases[i].name, argv[1]) != 0; i++) {}
  if (cases[i].name == NULL) { fprintf(stderr, "no case %s\n", argv[1]); return 2; }
  L = test_state();
  cases[i].fn(L);
  lua_close(L);
  orch_loop_shutdown();
  if (failures) fprintf(stderr, "%s: %d failed\n", argv[1], failures);
  return failures ? 1 : 0;
}
