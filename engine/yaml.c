/*
** yaml.c: orch.core.yaml, YAML text to Lua values with libyaml's event
** parser: YAML 1.2 core schema, anchors and merge keys, errors that say
** name:line:col.
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "orch.h"

#define YAML_MT "orch.yaml.parser"
#define YAML_MAXDEPTH 1000  /* collections inside collections; libyaml has no cap */
#define YAML_MAXVALUES 1000000  /* values of a document with its aliases expanded */
#define YAML_TAG "tag:yaml.org,2002:"

/*
** libyaml's parser and current event live in a userdata, so that whatever
** raises mid-load (a YAML error, a duplicate key, Lua out of memory) the
** __gc still frees them. Partial values sit on the Lua stack: the
** collector takes them too.
*/
typedef struct yaml_state {
  yaml_parser_t parser;
  yaml_event_t event;   /* the current event, valid while has_event */
  int has_parser, has_event;
  FILE *file;           /* load_file, while reading */
} yaml_state;

/* One load: what every step needs. Stack indices are absolute. */
typedef struct yaml_loader {
  lua_State *L;
  yaml_state *st;
  const char *name;     /* for messages: "<string>" or the path */
  const char *input;
  size_t len;
  int anchors;          /* anchor name -> value, fresh per document */
  int sizes;            /* anchor name -> values its node holds, aliases expanded */
  lua_Integer values;   /* values of this document, aliases expanded */
  int seqs;             /* set of tables built from sequences (for merges) */
} yaml_loader;

enum { TAG_NONE, TAG_STR, TAG_INT, TAG_FLOAT, TAG_BOOL, TAG_NULL, TAG_MAP,
       TAG_SEQ, TAG_MERGE, TAG_BANG };
#define TAG_SHORT(tag) ((const char *)(tag) + sizeof YAML_TAG - 1)  /* "int" */

static void yaml_release (yaml_state *st) {
  if (st->has_event) { yaml_event_delete(&st->event); st->has_event = 0; }
  if (st->has_parser) { yaml_parser_delete(&st->parser); st->has_parser = 0; }
  if (st->file) { fclose(st->file); st->file = NULL; }
}

/* Idempotent: loads release eagerly, __gc catches the paths that raised. */
static int yaml_gc (lua_State *L) {
  yaml_release(luaL_checkudata(L, 1, YAML_MT));
  return 0;
}

/* [-0, +1]: a zeroed state; nothing to free yet. */
static yaml_state *yaml_newstate (lua_State *L) {
  yaml_state *st = lua_newuserdatauv(L, sizeof *st, 0);
  memset(st, 0, sizeof *st);
  luaL_setmetatable(L, YAML_MT);
  return st;
}

/* Raises "name:line:col: message" (libyaml marks are 0-based). */
static int yaml_raise (yaml_loader *ld, yaml_mark_t mark, const char *fmt, ...) {
  lua_State *L = ld->L;
  va_list ap;
  lua_pushfstring(L, "%s:%d:%d: ", ld->name, (int)mark.line + 1,
                  (int)mark.column + 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  yaml_release(ld->st);  /* now rather than at the next collection */
  return lua_error(L);
}

/* Reader errors (bad UTF-8) carry a byte offset, not a mark: count. */
static yaml_mark_t yaml_offset_mark (yaml_loader *ld, size_t offset) {
  yaml_mark_t m = {offset, 0, 0};
  size_t i;
  for (i = 0; i < offset && i < ld->len; i++) {
    unsigned char c = (unsigned char)ld->input[i];
    if (c == '\n') { m.line++; m.column = 0; }
    else if ((c & 0xC0) != 0x80) m.column++;  /* columns count characters */
  }
  return m;
}

static void yaml_parse_error (yaml_loader *ld) {
  yaml_parser_t *p = &ld->st->parser;
  yaml_mark_t mark = p->problem_mark;
  if (p->error == YAML_READER_ERROR)
    mark = yaml_offset_mark(ld, p->problem_offset);
  if (p->context && (p->context_mark.line != mark.line
                     || p->context_mark.column != mark.column))
    /* "while scanning a quoted scalar": where the unfinished thing began */
    yaml_raise(ld, mark, "%s (%s at %d:%d)", p->problem, p->context,
               (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
  yaml_raise(ld, mark, "%s", p->problem ? p->problem : "out of memory");
}

/* The next event becomes current; the previous one is freed. */
static yaml_event_type_t yaml_next (yaml_loader *ld) {
  yaml_state *st = ld->st;
  if (st->has_event) { yaml_event_delete(&st->event); st->has_event = 0; }
  if (!yaml_parser_parse(&st->parser, &st->event)) yaml_parse_error(ld);
  st->has_event = 1;
  return st->event.type;
}

static int yaml_tag (const yaml_char_t *tag) {
  static const char *const names[] = {"str", "int", "float", "bool", "null",
                                      "map", "seq", "merge", NULL};
  const char *t = (const char *)tag;
  int i;
  if (t == NULL || strncmp(t, YAML_TAG, sizeof YAML_TAG - 1) != 0)
    return (t && strcmp(t, "!") == 0) ? TAG_BANG : TAG_NONE;
  for (i = 0; names[i]; i++)
    if (strcmp(t + sizeof YAML_TAG - 1, names[i]) == 0) return TAG_STR + i;
  return TAG_NONE;  /* !!binary, !!timestamp, local tags: as if untagged */
}

/* ---- the YAML 1.2 core schema ---- */

static int yaml_is (const char *s, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* s is one of the words of list, each ended by \0, the list by "". */
static int yaml_one_of (const char *s, size_t n, const char *list) {
  for (; *list; list += strlen(list) + 1)
    if (yaml_is(s, n, list)) return 1;
  return 0;
}

static int yaml_is_null (const char *s, size_t n) {
  return n == 0 || yaml_one_of(s, n, "~\0null\0Null\0NULL\0");
}

/* 1 true, 0 false, -1 neither. yes/no/on/off are YAML 1.1: strings here. */
static int yaml_bool (const char *s, size_t n) {
  return yaml_one_of(s, n, "true\0True\0TRUE\0") ? 1
       : yaml_one_of(s, n, "false\0False\0FALSE\0") ? 0 : -1;
}

static int yaml_digit (int c, int base) {
  if (c >= '0' && c <= '9') return c - '0' < base ? c - '0' : -1;
  c |= 0x20;  /* lower case */
  if (base == 16 && c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/*
** [-0, +(0|1)]: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+ as an integer, or a
** float past int64. Note "0644" is decimal 644 in the 1.2 core schema (1.1
** read it as octal): file modes must be quoted ("0644") or written 0o644.
*/
static int yaml_push_int (lua_State *L, const char *s, size_t n) {
  size_t i = 0, j;
  int base = 10;
  uint64_t u = 0;
  double d = 0;
  int big = 0;
  if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    i = 2;
  }
  else if (n > 0 && (s[0] == '-' || s[0] == '+')) i = 1;
  if (i == n) return 0;
  for (j = i; j < n; j++)
    if (yaml_digit((unsigned char)s[j], base) < 0) return 0;
  if (base == 10)  /* Lua's reader: an integer, or a float on overflow */
    return lua_stringtonumber(L, s) != 0;
  for (; i < n; i++) {  /* Lua would wrap 0x8000000000000000 around */
    int v = yaml_digit((unsigned char)s[i], base);
    big = big || u > ((uint64_t)INT64_MAX - v) / base;
    if (!big) u = u * base + v;
    d = d * base + v;
  }
  if (big) lua_pushnumber(L, d);
  else lua_pushinteger(L, (lua_Integer)u);
  return 1;
}

/* [-0, +(0|1)]: [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, .nan */
static int yaml_push_float (lua_State *L, const char *s, size_t n) {
  size_t i = (n > 0 && (s[0] == '-' || s[0] == '+')), digits = 0, e;
  lua_Number v;
  if (yaml_one_of(s + i, n - i, ".inf\0.Inf\0.INF\0")) {
    lua_pushnumber(L, s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
    return 1;
  }
  if (yaml_one_of(s, n, ".nan\0.NaN\0.NAN\0")) {
    lua_pushnumber(L, NAN);
    return 1;
  }
  for (; i < n && isdigit((unsigned char)s[i]); i++) digits++;
  if (i < n && s[i] == '.')
    for (i++; i < n && isdigit((unsigned char)s[i]); i++) digits++;
  if (digits == 0) return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i += 1 + (i + 1 < n && (s[i + 1] == '-' || s[i + 1] == '+'));
    for (e = i; i < n && isdigit((unsigned char)s[i]); i++) {}
    if (i == e) return 0;
  }
  if (i != n || !lua_stringtonumber(L, s)) return 0;
  v = lua_tonumber(L, -1);  /* "1" under !!float is 1.0 */
  lua_pop(L, 1);
  lua_pushnumber(L, v);
  return 1;
}

/* [-0, +1]: the current scalar event as a Lua value. */
static void yaml_scalar (yaml_loader *ld) {
  lua_State *L = ld->L;
  yaml_event_t *ev = &ld->st->event;
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  int tag = yaml_tag(ev->data.scalar.tag), b;
  switch (tag) {
    case TAG_NONE:  /* only plain scalars resolve: "1", '1', |, > stay strings */
      if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        lua_pushlstring(L, s, n);
      else if (yaml_is_null(s, n)) lua_pushlightuserdata(L, NULL);
      else if ((b = yaml_bool(s, n)) >= 0) lua_pushboolean(L, b);
      else if (!yaml_push_int(L, s, n) && !yaml_push_float(L, s, n))
        lua_pushlstring(L, s, n);
      break;
    case TAG_STR: case TAG_MERGE: case TAG_BANG:  /* `! 1` is a string */
      lua_pushlstring(L, s, n);
      break;
    case TAG_NULL:
      if (!yaml_is_null(s, n)) goto invalid;
      lua_pushlightuserdata(L, NULL);
      break;
    case TAG_BOOL:
      if ((b = yaml_bool(s, n)) < 0) goto invalid;
      lua_pushboolean(L, b);
      break;
    case TAG_INT:
      if (!yaml_push_int(L, s, n)) goto invalid;
      break;
    case TAG_FLOAT:
      if (yaml_push_float(L, s, n)) break;
      if (!yaml_push_int(L, s, n)) goto invalid;  /* 0x1F: 31.0 */
      lua_pushnumber(L, lua_tonumber(L, -1));
      lua_remove(L, -2);
      break;
    default:  /* !!map, !!seq */
      yaml_raise(ld, ev->start_mark, "!!%s tag on a scalar", TAG_SHORT(ev->data.scalar.tag));
    invalid:
      yaml_raise(ld, ev->start_mark, "invalid !!%s value '%s'",
                 TAG_SHORT(ev->data.scalar.tag), s);
  }
}

/* [-0, +0]: value at the top is what anchor names, for later aliases. */
static void yaml_anchor (yaml_loader *ld, const yaml_char_t *anchor) {
  if (anchor == NULL) return;
  lua_pushvalue(ld->L, -1);
  lua_setfield(ld->L, ld->anchors, (const char *)anchor);
}

/* A collection tagged with a scalar tag (`!!int [1]`) is an error. */
static void yaml_check_tag (yaml_loader *ld, const yaml_char_t *tag, int want) {
  int t = yaml_tag(tag);
  if (t != TAG_NONE && t != TAG_BANG && t != want)
    yaml_raise(ld, ld->st->event.start_mark, "!!%s tag on a %s",
               TAG_SHORT(tag), want == TAG_MAP ? "mapping" : "sequence");
}

static int yaml_is_map (yaml_loader *ld, int idx) {
  int seq;
  if (!lua_istable(ld->L, idx)) return 0;
  lua_pushvalue(ld->L, idx);
  seq = lua_rawget(ld->L, ld->seqs) != LUA_TNIL;
  lua_pop(ld->L, 1);
  return !seq;
}

static void yaml_node (yaml_loader *ld, int depth);

/*
** [value] -> []: a `<<` value, a mapping or a sequence of mappings, joins
** the merge sources at `merges` in order: earlier sources win.
*/
static void yaml_add_merge (yaml_loader *ld, int merges, yaml_mark_t mark) {
  lua_State *L = ld->L;
  lua_Integer i, n = luaL_len(L, merges);
  if (yaml_is_map(ld, -1)) {
    lua_rawseti(L, merges, n + 1);
    return;
  }
  if (!lua_istable(L, -1))
    yaml_raise(ld, mark, "merge value must be a mapping or a list of mappings");
  for (i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {  /* [seq, map] */
    if (!yaml_is_map(ld, -1))
      yaml_raise(ld, mark, "merge value must be a mapping or a list of mappings");
    lua_rawseti(L, merges, ++n);
  }
  lua_pop(L, 2);
}

/* Keys written in the mapping win over merged ones, wherever they stand. */
static void yaml_apply_merges (yaml_loader *ld, int map, int merges) {
  lua_State *L = ld->L;
  lua_Integer i;
  for (i = 1; lua_rawgeti(L, merges, i) == LUA_TTABLE; i++) {  /* [src] */
    lua_pushnil(L);
    while (lua_next(L, -2)) {                       /* [src, k, v] */
      lua_pushvalue(L, -2);
      if (lua_rawget(L, map) == LUA_TNIL) {         /* [src, k, v, nil] */
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);                          /* [src, k, k, v] */
        lua_rawset(L, map);
      }
      else lua_pop(L, 2);                           /* [src, k] */
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);                                    /* [] */
}

/* [key] -> [key]: refuse what a Lua table would silently lose. */
static void yaml_check_key (yaml_loader *ld, int map, yaml_mark_t mark) {
  lua_State *L = ld->L;
  yaml_event_t *ev = &ld->st->event;
  const char *text = ev->type == YAML_SCALAR_EVENT
    ? (const char *)ev->data.scalar.value
    : ev->type == YAML_ALIAS_EVENT ? (const char *)ev->data.alias.anchor : "?";
  if (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))
    yaml_raise(ld, mark, "NaN is not a valid key");
  lua_pushvalue(L, -1);
  if (lua_rawget(L, map) != LUA_TNIL)
    yaml_raise(ld, mark, "duplicate key '%s%s'",
               ev->type == YAML_ALIAS_EVENT ? "*" : "", text);
  lua_pop(L, 1);
}

static int yaml_is_merge_key (yaml_event_t *ev) {
  return ev->type == YAML_SCALAR_EVENT && yaml_is((const char *)
           ev->data.scalar.value, ev->data.scalar.length, "<<")
      && ((ev->data.scalar.plain_implicit && !ev->data.scalar.tag)
          || yaml_tag(ev->data.scalar.tag) == TAG_MERGE);
}

/* [-0, +1]: the mapping whose MAPPING_START is the current event. */
static void yaml_mapping (yaml_loader *ld, int depth) {
  lua_State *L = ld->L;
  yaml_event_t *ev = &ld->st->event;
  int map, merges = 0;
  lua_newtable(L);                                  /* [map] */
  map = lua_gettop(L);
  yaml_anchor(ld, ev->data.mapping_start.anchor);  /* before children: *self */
  while (yaml_next(ld) != YAML_MAPPING_END_EVENT) {
    yaml_mark_t mark = ev->start_mark;
    if (yaml_is_merge_key(ev)) {
      yaml_next(ld);
      mark = ev->start_mark;
      yaml_node(ld, depth);                         /* [map, (merges,) v] */
      if (!merges) {
        lua_newtable(L);
        lua_insert(L, map + 1);                     /* [map, merges, v] */
        merges = map + 1;
      }
      yaml_add_merge(ld, merges, mark);             /* [map, merges] */
      continue;
    }
    yaml_node(ld, depth);                           /* [map, (merges,) k] */
    yaml_check_key(ld, map, mark);
    yaml_next(ld);
    yaml_node(ld, depth);                           /* [map, (merges,) k, v] */
    lua_rawset(L, map);
  }
  if (merges) {
    yaml_apply_merges(ld, map, merges);
    lua_settop(L, map);                             /* [map] */
  }
}

/* [-0, +1]: the sequence whose SEQUENCE_START is the current event. */
static void yaml_sequence (yaml_loader *ld, int depth) {
  lua_State *L = ld->L;
  lua_Integer n = 0;
  lua_newtable(L);                                  /* [seq] */
  yaml_anchor(ld, ld->st->event.data.sequence_start.anchor);
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, ld->seqs);  /* merges must tell [] from {} */
  while (yaml_next(ld) != YAML_SEQUENCE_END_EVENT) {
    yaml_node(ld, depth);                           /* [seq, v] */
    lua_rawseti(L, -2, ++n);
  }
}

/*
** Counts n more values; raises past YAML_MAXVALUES. An alias shares its
** table, but whatever walks the result (a copy, an encoder, a comparison)
** meets every value it stands for: 25 levels of aliases in 1.4 KB are a
** billion values ("billion laughs"), refused here with the line.
*/
static void yaml_count (yaml_loader *ld, lua_Integer n, yaml_mark_t mark) {
  ld->values += n;
  if (ld->values > YAML_MAXVALUES)
    yaml_raise(ld, mark, "aliases expand this document past %d values (nested aliases of"
               " aliases?); refused", YAML_MAXVALUES);
}

/* [-0, +1]: the node that starts at the current event. */
static void yaml_node (yaml_loader *ld, int depth) {
  lua_State *L = ld->L;
  yaml_event_t *ev = &ld->st->event;
  yaml_mark_t mark = ev->start_mark;
  lua_Integer before = ld->values;
  const yaml_char_t *anchor = NULL;
  switch (ev->type) {
    case YAML_SCALAR_EVENT:
      yaml_count(ld, 1, mark);
      yaml_scalar(ld);
      yaml_anchor(ld, ev->data.scalar.anchor);
      anchor = ev->data.scalar.anchor;
      break;
    case YAML_ALIAS_EVENT: {  /* the same value: a table is shared, not copied */
      const char *name = (const char *)ev->data.alias.anchor;
      /* a node's own alias inside it (*self) is not known yet: one value */
      lua_Integer n = lua_getfield(L, ld->sizes, name) == LUA_TNUMBER ? lua_tointeger(L, -1) : 1;
      lua_pop(L, 1);
      if (lua_getfield(L, ld->anchors, name) == LUA_TNIL)
        yaml_raise(ld, mark, "unknown alias '*%s'", name);
      yaml_count(ld, n, mark);
      return;
    }
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
      if (depth >= YAML_MAXDEPTH)
        yaml_raise(ld, mark, "nesting too deep (more than %d levels)", YAML_MAXDEPTH);
      luaL_checkstack(L, 8, "nesting too deep");
      yaml_count(ld, 1, mark);
      /* the event (and its anchor's text) is gone once the children are read */
      anchor = ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                     : ev->data.sequence_start.anchor;
      if (anchor) lua_pushstring(L, (const char *)anchor);   /* [name] */
      if (ev->type == YAML_MAPPING_START_EVENT) {
        yaml_check_tag(ld, ev->data.mapping_start.tag, TAG_MAP);
        yaml_mapping(ld, depth + 1);
      }
      else {
        yaml_check_tag(ld, ev->data.sequence_start.tag, TAG_SEQ);
        yaml_sequence(ld, depth + 1);
      }                                                       /* [name, v] */
      if (anchor) {
        lua_pushinteger(L, ld->values - before);
        lua_setfield(L, ld->sizes, lua_tostring(L, -3));
        lua_remove(L, -2);                                    /* [v] */
      }
      return;
    default:  /* libyaml guarantees the grammar */
      yaml_raise(ld, mark, "unexpected event %d", (int)ev->type);
  }
  if (anchor) {
    lua_pushinteger(L, ld->values - before);
    lua_setfield(L, ld->sizes, (const char *)anchor);
  }
}

/*
** [] -> [result]: the documents of input, all of them in an array or the
** first one (nil for an empty stream). st is at the top of the stack.
*/
static int yaml_parse (lua_State *L, const char *input, size_t len,
                       const char *name, int all) {
  yaml_loader ld;
  int result;
  lua_Integer docs = 0;
  ld.L = L; ld.name = name; ld.input = input; ld.len = len;
  ld.st = luaL_checkudata(L, -1, YAML_MT);
  if (!yaml_parser_initialize(&ld.st->parser))
    return luaL_error(L, "%s: out of memory", name);
  ld.st->has_parser = 1;
  yaml_parser_set_input_string(&ld.st->parser, (const unsigned char *)input, len);
  lua_newtable(L);                                  /* [st, result] */
  result = lua_gettop(L);
  lua_newtable(L);
  ld.seqs = lua_gettop(L);
  lua_pushnil(L);                                   /* [st, result, seqs, anchors] */
  ld.anchors = lua_gettop(L);
  lua_pushnil(L);                                   /* [st, result, seqs, anchors, sizes] */
  ld.sizes = lua_gettop(L);
  yaml_next(&ld);  /* STREAM_START */
  while (yaml_next(&ld) == YAML_DOCUMENT_START_EVENT) {
    lua_newtable(L);  /* anchors do not cross documents */
    lua_replace(L, ld.anchors);
    lua_newtable(L);
    lua_replace(L, ld.sizes);
    ld.values = 0;
    yaml_next(&ld);
    yaml_node(&ld, 0);
    lua_rawseti(L, result, ++docs);
    yaml_next(&ld);  /* DOCUMENT_END: trailing junk is this document's error */
    if (!all) break;
  }
  yaml_release(ld.st);
  lua_settop(L, result);
  if (!all) lua_rawgeti(L, result, 1);
  return 1;
}

static int yaml_load_text (lua_State *L, int all) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  lua_settop(L, 2);
  yaml_newstate(L);                                 /* [text, name, st] */
  return yaml_parse(L, text, len, name, all);
}

/* A file that cannot be read is an answer (fail tuple); bad YAML raises. */
static int yaml_load_path (lua_State *L, int all) {
  const char *path = luaL_checkstring(L, 1);
  yaml_state *st;
  luaL_Buffer b;
  size_t n, len;
  const char *text;
  lua_settop(L, 1);
  st = yaml_newstate(L);                            /* [path, st] */
  st->file = fopen(path, "rb");  /* owned by st: closed even if Lua raises */
  if (st->file == NULL) return orch_fail(L, path, errno);
  luaL_buffinit(L, &b);
  do {
    n = fread(luaL_prepbuffer(&b), 1, LUAL_BUFFERSIZE, st->file);
    luaL_addsize(&b, n);
  } while (n == LUAL_BUFFERSIZE);
  if (ferror(st->file)) return orch_fail(L, path, errno);  /* EISDIR */
  fclose(st->file);
  st->file = NULL;
  luaL_pushresult(&b);                              /* [path, st, text] */
  text = lua_tolstring(L, -1, &len);
  lua_pushvalue(L, 2);                              /* [path, st, text, st] */
  return yaml_parse(L, text, len, path, all);
}

static int yaml_load (lua_State *L) { return yaml_load_text(L, 0); }
static int yaml_load_all (lua_State *L) { return yaml_load_text(L, 1); }
static int yaml_load_file (lua_State *L) { return yaml_load_path(L, 0); }
static int yaml_load_file_all (lua_State *L) { return yaml_load_path(L, 1); }

static const luaL_Reg yaml_meta[] = {{"__gc", yaml_gc}, {"__close", yaml_gc},
  {NULL, NULL}};
static const luaL_Reg yaml_funcs[] = {{"load", yaml_load},
  {"load_all", yaml_load_all}, {"load_file", yaml_load_file},
  {"load_file_all", yaml_load_file_all}, {NULL, NULL}};

int luaopen_orch_core_yaml (lua_State *L) {
  orch_newclass(L, YAML_MT, yaml_meta, NULL);
  luaL_newlib(L, yaml_funcs);                       /* [yaml] */
  /* The light userdata NULL: the very value of cjson.null, so they mix. */
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
