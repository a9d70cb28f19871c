/*
 * parallel.array and parallel.value: typed shared memory. Lua numbers are
 * checked against the element type on the way in (no silent wrap-around)
 * and come out as integers for integer types, floats for float types.
 */
#include "lua/l_shared.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lauxlib.h"
#include "lua/l_object.h"
#include "core/sharedarray.h"
#include "core/vector.h"

/* 2^63 as a double: the first float past every int64. */
#define TWO63 9223372036854775808.0

static par_array *checkarray(lua_State *L, int idx) {
  return (par_array *)l_object_check(L, idx, &par_array_type);
}

static par_array *checkvalue(lua_State *L) {
  return (par_array *)l_object_check(L, 1, &par_value_type);
}

static const char *elemname(const par_array *a) {
  return par_elem_names[a->elem];
}

/* The Lua value at idx as an element of type elem (argument arg). */
/* The value at idx, as an element: argument arg itself (item 0), or item
 * `item` of the list that argument arg is. */
static par_scalar toscalar_item(lua_State *L, int idx, int elem, int arg, lua_Integer item) {
  par_scalar s;
  int isint;
  if (lua_type(L, idx) != LUA_TNUMBER) {
    if (item == 0) luaL_typeerror(L, arg, "number");
    luaL_argerror(L, arg, lua_pushfstring(L, "item %I is %s, not a number: give a list of numbers",
                                          item, lua_isnil(L, idx) ? "nil" : luaL_typename(L, idx)));
  }
  if (item != 0 && !par_elem_is_float(elem) && !lua_isinteger(L, idx)) {
    lua_Number f = lua_tonumber(L, idx);
    if (f != floor(f))
      luaL_argerror(L, arg, lua_pushfstring(L, "item %I (%f) has no integer representation for %s",
                                            item, f, par_elem_names[elem]));
  }
  if (par_elem_is_float(elem)) {
    s.f = lua_tonumber(L, idx);
    if (!par_elem_fits_float(elem, s.f))
      luaL_error(L, "value %f out of range for %s", s.f, par_elem_names[elem]);
    return s;
  }
  s.i = (int64_t)lua_tointegerx(L, idx, &isint);
  if (!isint) {
    lua_Number f = lua_tonumber(L, idx);
    if (f != floor(f)) luaL_argerror(L, arg, "number has no integer representation");
    if (elem == PAR_UINT64 && f >= TWO63 && f < 2 * TWO63) {
      s.u = (uint64_t)f;
      return s;
    }
    luaL_error(L, "value %f out of range for %s", f, par_elem_names[elem]);
  }
  if (!par_elem_fits_int(elem, s.i))
    luaL_error(L, "value %I out of range for %s", (lua_Integer)s.i, par_elem_names[elem]);
  return s;
}

static par_scalar toscalar(lua_State *L, int idx, int elem, int arg) {
  return toscalar_item(L, idx, elem, arg, 0);
}

/* An add/cas delta: any integer for integer types, any number for floats. */
static par_scalar todelta(lua_State *L, int idx, int elem) {
  par_scalar s;
  int ok;
  if (par_elem_is_float(elem)) s.f = luaL_checknumber(L, idx);
  else {
    s.i = (int64_t)lua_tointegerx(L, idx, &ok);
    if (!ok) s.i = (int64_t)luaL_checkinteger(L, idx);   /* raises its error */
  }
  return s;
}

static void pushscalar(lua_State *L, int elem, par_scalar s) {
  if (par_elem_is_float(elem)) lua_pushnumber(L, s.f);
  else if (elem == PAR_UINT64 && s.u > INT64_MAX) lua_pushnumber(L, (lua_Number)s.u);
  else lua_pushinteger(L, (lua_Integer)s.i);
}

static size_t checkindex(lua_State *L, int idx, const par_array *a) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 1 || (lua_Unsigned)i > a->n)
    luaL_error(L, "index %I out of range [1, %I]", i, (lua_Integer)a->n);
  return (size_t)(i - 1);
}

/* Optional range [i, j] at idx, idx+1 (default the whole array) as the
 * 0-based half-open [*from, *to). */
static void optrange(lua_State *L, int idx, const par_array *a, size_t *from, size_t *to) {
  lua_Integer n = (lua_Integer)a->n;
  lua_Integer i = luaL_optinteger(L, idx, 1), j = luaL_optinteger(L, idx + 1, n);
  if (i < 1 || i > n + 1) luaL_error(L, "index %I out of range [1, %I]", i, n);
  if (j > n) luaL_error(L, "index %I out of range [1, %I]", j, n);
  if (j < i - 1)
    luaL_error(L, "range [%I, %I] ends before it starts: give i <= j + 1 (i = j + 1 is empty)", i, j);
  *from = (size_t)(i - 1);
  *to = (size_t)j;
}

static void fill_from_table(lua_State *L, par_array *a, int t) {
  size_t k;
  for (k = 0; k < a->n; k++) {
    lua_geti(L, t, (lua_Integer)k + 1);
    par_array_set(a, k, toscalar_item(L, -1, a->elem, t, (lua_Integer)k + 1));
    lua_pop(L, 1);
  }
}

/* ---- array ---- */

static int l_array_new(lua_State *L) {
  int elem = luaL_checkoption(L, 1, NULL, par_elem_names);
  lua_Integer n;
  par_array *a;
  par_scalar fill;
  int t = lua_type(L, 2);
  if (t == LUA_TTABLE) n = luaL_len(L, 2);
  else if (t == LUA_TNUMBER) n = luaL_checkinteger(L, 2);
  else return luaL_typeerror(L, 2, "number or table");
  luaL_argcheck(L, n >= 0, 2, "size must be non-negative");
  luaL_argcheck(L, (lua_Unsigned)n <= PAR_ARRAY_MAX_BYTES / par_elem_size(elem), 2, "size too large");
  fill.u = 0;
  if (t == LUA_TNUMBER && !lua_isnoneornil(L, 3)) fill = toscalar(L, 3, elem, 3);
  a = par_array_new(&par_array_type, elem, (size_t)n);
  if (!a) return luaL_error(L, "not enough memory");
  l_object_push(L, &a->hdr);
  if (t == LUA_TTABLE) fill_from_table(L, a, 2);
  else if (fill.u != 0) par_array_fill(a, 0, a->n, fill);
  return 1;
}

/* Reads go as on a table: an index outside [1, #a] (a[#a + 1], where
 * ipairs stops) or a number that is no integer gives nil. Writes and the
 * methods stay bounds-checked. */
static int l_array_index(lua_State *L) {
  par_array *a = checkarray(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint || i < 1 || (lua_Unsigned)i > a->n) return 0;
    pushscalar(L, a->elem, par_array_get(a, (size_t)(i - 1)));
    return 1;
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, 2), "type") == 0) {
      lua_pushstring(L, elemname(a));
      return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(L_OBJECT_NUPVALUES + 1));
    return 1;
  }
  return 0;
}

static int l_array_newindex(lua_State *L) {
  par_array *a = checkarray(L, 1);
  size_t i = checkindex(L, 2, a);
  par_array_set(a, i, toscalar(L, 3, a->elem, 3));
  return 0;
}

static int l_array_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkarray(L, 1)->n);
  return 1;
}

static int array_next(lua_State *L) {
  par_array *a = checkarray(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 0 || (lua_Unsigned)i >= a->n) return 0;
  lua_pushinteger(L, i + 1);
  pushscalar(L, a->elem, par_array_get(a, (size_t)i));
  return 2;
}

/* pairs(a): 1, a[1] ... #a, a[#a], as pairs walks a sequence. */
static int l_array_pairs(lua_State *L) {
  checkarray(L, 1);
  lua_pushcfunction(L, array_next);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  return 3;
}

/* add and cas, shared by arrays (index at 2) and values (no index). */
static int do_add(lua_State *L, par_array *a, size_t i, int arg) {
  par_scalar r;
  if (par_array_add(a, i, todelta(L, arg, a->elem), &r) != PAR_OK)
    return luaL_error(L, "result out of range for %s", elemname(a));
  pushscalar(L, a->elem, r);
  return 1;
}

static int do_cas(lua_State *L, par_array *a, size_t i, int arg) {
  par_scalar expected = toscalar(L, arg, a->elem, arg);
  par_scalar desired = toscalar(L, arg + 1, a->elem, arg + 1);
  lua_pushboolean(L, par_array_cas(a, i, expected, desired));
  return 1;
}

static int l_array_add(lua_State *L) {
  par_array *a = checkarray(L, 1);
  return do_add(L, a, checkindex(L, 2, a), 3);
}

static int l_array_cas(lua_State *L) {
  par_array *a = checkarray(L, 1);
  return do_cas(L, a, checkindex(L, 2, a), 3);
}

static int l_array_fill(lua_State *L) {
  par_array *a = checkarray(L, 1);
  par_scalar v = toscalar(L, 2, a->elem, 2);
  size_t i, j;
  optrange(L, 3, a, &i, &j);
  par_array_fill(a, i, j, v);
  return 0;
}

static int l_array_sum(lua_State *L) {
  par_array *a = checkarray(L, 1);
  size_t i, j;
  int is_float;
  par_scalar s;
  optrange(L, 2, a, &i, &j);
  s = par_array_sum(a, i, j, &is_float);
  if (is_float) lua_pushnumber(L, s.f);
  else if (par_elem_is_float(a->elem)) lua_pushnumber(L, (lua_Number)s.i);
  else lua_pushinteger(L, (lua_Integer)s.i);
  return 1;
}

static int minmax(lua_State *L, int max) {
  par_array *a = checkarray(L, 1);
  size_t i, j;
  optrange(L, 2, a, &i, &j);
  if (i >= j) return 0;
  pushscalar(L, a->elem, par_array_get(a, par_array_argmin(a, i, j, max)));
  return 1;
}

static int l_array_min(lua_State *L) { return minmax(L, 0); }
static int l_array_max(lua_State *L) { return minmax(L, 1); }

static int l_array_totable(lua_State *L) {
  par_array *a = checkarray(L, 1);
  size_t i, j, k;
  optrange(L, 2, a, &i, &j);
  if (j - i > (size_t)INT_MAX) return luaL_error(L, "too many elements for a table (%I)", (lua_Integer)(j - i));
  lua_createtable(L, (int)(j - i), 0);
  for (k = i; k < j; k++) {
    pushscalar(L, a->elem, par_array_get(a, k));
    lua_rawseti(L, -2, (lua_Integer)(k - i + 1));
  }
  return 1;
}

static int l_array_set(lua_State *L) {
  par_array *a = checkarray(L, 1);
  lua_Integer n, off = luaL_optinteger(L, 3, 0), k;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  luaL_argcheck(L, off >= 0, 3, "offset must be non-negative");
  if (n > 0 && (off > (lua_Integer)a->n || n > (lua_Integer)a->n - off)) {
    /* the last index written, off + n, may not fit a lua_Integer */
    char last[24];
    snprintf(last, sizeof last, "%llu", (unsigned long long)((lua_Unsigned)off + (lua_Unsigned)n));
    return luaL_error(L, "index %s out of range [1, %I]", last, (lua_Integer)a->n);
  }
  /* check every value first, so that a bad one writes nothing */
  for (k = 1; k <= n; k++) {
    lua_geti(L, 2, k);
    toscalar_item(L, -1, a->elem, 2, k);
    lua_pop(L, 1);
  }
  for (k = 1; k <= n; k++) {
    lua_geti(L, 2, k);
    par_array_set(a, (size_t)(off + k - 1), toscalar_item(L, -1, a->elem, 2, k));
    lua_pop(L, 1);
  }
  return 0;
}

static int l_array_view(lua_State *L) {
  par_array *a = checkarray(L, 1), *v;
  size_t i, j;
  luaL_checkinteger(L, 2);
  optrange(L, 2, a, &i, &j);
  v = par_array_view(a, i, j - i);
  if (!v) return luaL_error(L, "not enough memory");
  l_object_push(L, &v->hdr);
  return 1;
}

/* ---- vector operations ---- */

/* The second array of a:op(b): the same length as a. */
static par_array *checkpeer(lua_State *L, int idx, const par_array *a) {
  par_array *b = checkarray(L, idx);
  if (b->n != a->n)
    luaL_argerror(L, idx, lua_pushfstring(L, "lengths differ (%I and %I)", (lua_Integer)a->n,
                                          (lua_Integer)b->n));
  return b;
}

static par_factor checkfactor(lua_State *L, int idx, const par_array *a) {
  par_factor k;
  int isint;
  k.v.i = (int64_t)lua_tointegerx(L, idx, &isint);
  k.is_float = !isint;
  if (!isint) {
    k.v.f = luaL_checknumber(L, idx);
    if (!par_elem_is_float(a->elem))
      luaL_argerror(L, idx, lua_pushfstring(L, "integer expected for a %s array", elemname(a)));
  }
  return k;
}

static int vector_error(lua_State *L, int r, const par_array *a, size_t bad) {
  if (r != PAR_OK)
    return luaL_error(L, "result out of range for %s at index %I (nothing written)", elemname(a),
                      (lua_Integer)bad + 1);
  return 0;
}

/* a:dot(b [, i, j]) --> sum of a[k] * b[k] for k in i..j */
static int l_array_dot(lua_State *L) {
  par_array *a = checkarray(L, 1), *b = checkpeer(L, 2, a);
  size_t i, j;
  int is_float;
  par_scalar s;
  optrange(L, 3, a, &i, &j);
  s = par_vector_dot(a, b, i, j, &is_float);
  if (is_float) lua_pushnumber(L, s.f);
  else lua_pushinteger(L, (lua_Integer)s.i);
  return 1;
}

/* a:scale(k): a[i] = a[i] * k; returns a */
static int l_array_scale(lua_State *L) {
  par_array *a = checkarray(L, 1);
  size_t bad = 0;
  int r = par_vector_scale(a, checkfactor(L, 2, a), &bad);
  vector_error(L, r, a, bad);
  lua_settop(L, 1);
  return 1;
}

/* a:axpy(k, b): a[i] = a[i] + k * b[i]; returns a */
static int l_array_axpy(lua_State *L) {
  par_array *a = checkarray(L, 1), *b;
  par_factor k = checkfactor(L, 2, a);
  size_t bad = 0;
  int r;
  b = checkpeer(L, 3, a);
  if (!par_elem_is_float(a->elem) && par_elem_is_float(b->elem))
    luaL_argerror(L, 3, lua_pushfstring(L, "a %s array cannot be added to a %s array",
                                        elemname(b), elemname(a)));
  r = par_vector_axpy(a, k, b, &bad);
  vector_error(L, r, a, bad);
  lua_settop(L, 1);
  return 1;
}

/* a:copy(b): a[i] = b[i]; returns a */
static int l_array_copy(lua_State *L) {
  par_array *a = checkarray(L, 1), *b = checkpeer(L, 2, a);
  size_t bad = 0;
  int r;
  if (!par_elem_is_float(a->elem) && par_elem_is_float(b->elem))
    luaL_argerror(L, 2, lua_pushfstring(L, "a %s array cannot be copied into a %s array",
                                        elemname(b), elemname(a)));
  r = par_vector_copy(a, b, &bad);
  vector_error(L, r, a, bad);
  lua_settop(L, 1);
  return 1;
}

/* ---- value ---- */

static int l_value_new(lua_State *L) {
  int elem = luaL_checkoption(L, 1, NULL, par_elem_names);
  par_scalar init;
  par_array *a;
  init.u = 0;
  if (!lua_isnoneornil(L, 2)) init = toscalar(L, 2, elem, 2);
  a = par_array_new(&par_value_type, elem, 1);
  if (!a) return luaL_error(L, "not enough memory");
  par_array_set(a, 0, init);
  l_object_push(L, &a->hdr);
  return 1;
}

static int l_value_get(lua_State *L) {
  par_array *a = checkvalue(L);
  pushscalar(L, a->elem, par_array_get(a, 0));
  return 1;
}

static int l_value_set(lua_State *L) {
  par_array *a = checkvalue(L);
  par_array_set(a, 0, toscalar(L, 2, a->elem, 2));
  return 0;
}

static int l_value_add(lua_State *L) {
  par_array *a = checkvalue(L);
  if (a->elem == PAR_INT64) {          /* a shared counter: its shortest path */
    int isint;
    par_scalar delta, r;
    delta.i = (int64_t)lua_tointegerx(L, 2, &isint);
    if (isint) {
      if (par_array_add(a, 0, delta, &r) != PAR_OK)
        return luaL_error(L, "result out of range for %s", elemname(a));
      lua_pushinteger(L, (lua_Integer)r.i);
      return 1;
    }
  }
  return do_add(L, a, 0, 2);
}
static int l_value_cas(lua_State *L) { return do_cas(L, checkvalue(L), 0, 2); }


static const luaL_Reg array_methods[] = {
  {"add", l_array_add},
  {"cas", l_array_cas},
  {"fill", l_array_fill},
  {"sum", l_array_sum},
  {"min", l_array_min},
  {"max", l_array_max},
  {"totable", l_array_totable},
  {"set", l_array_set},
  {"view", l_array_view},
  {"dot", l_array_dot},
  {"scale", l_array_scale},
  {"axpy", l_array_axpy},
  {"copy", l_array_copy},
  {NULL, NULL}
};

static const luaL_Reg array_meta[] = {
  {"__newindex", l_array_newindex},
  {"__len", l_array_len},
  {"__pairs", l_array_pairs},
  {NULL, NULL}
};

static const luaL_Reg value_methods[] = {
  {"get", l_value_get},
  {"set", l_value_set},
  {"add", l_value_add},
  {"cas", l_value_cas},
  {NULL, NULL}
};

static const luaL_Reg constructors[] = {
  {"array", l_array_new},
  {"value", l_value_new},
  {NULL, NULL}
};

/* Replaces __index (the methods table) by f with that table as its last
 * upvalue (after l_object's). */
static void index_closure(lua_State *L, const par_type *t, lua_CFunction f) {
  luaL_getmetatable(L, t->name);
  l_object_pushupvalues(L, t);
  lua_getfield(L, -3, "__index");
  lua_pushcclosure(L, f, L_OBJECT_NUPVALUES + 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void l_array_open(lua_State *L) {
  l_object_newmeta(L, &par_array_type, array_methods, array_meta);
  index_closure(L, &par_array_type, l_array_index);
  l_object_newmeta(L, &par_value_type, value_methods, NULL);
  luaL_setfuncs(L, constructors, 0);
}
