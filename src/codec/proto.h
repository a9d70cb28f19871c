/*
 * Function prototypes on the move. The sending state dumps a Lua function
 * once (cached per closure, shared by content between closures of the same
 * prototype) into a refcounted par_proto, which also lists the globals its
 * code reads. A receiving state loads each prototype once: the closure
 * itself when it needs no upvalue of its own, else a factory that makes
 * fresh closures of it (see make_factory in proto.c).
 *
 * Threads: a par_proto is immutable once made and shared by reference
 * from messages; the caches are per lua_State (registry tables).
 */
#ifndef PAR_PROTO_H
#define PAR_PROTO_H

#include <stdatomic.h>
#include <stdint.h>
#include "lua.h"
#include "codec/dumpscan.h"
#include "core/object.h"

typedef struct par_proto {
  par_object hdr;
  uint64_t id;
  size_t len;
  char *dump;
  dumpscan_names globals;
  char *factory;          /* see make_factory; NULL: load the dump per closure */
  size_t factory_len;
  _Atomic uint64_t wire_id; /* content hash of the dump (wire.c); 0 until needed */
} par_proto;

extern const par_type par_proto_type;

/* The prototype of the Lua function at idx (borrowed: the cache holds it
 * while the function lives). Raises on out of memory. */
par_proto *proto_get(lua_State *L, int idx);

/* A prototype of the dump received from another process (the wire layer):
 * one reference to the caller, its globals scanned as for a local one, no
 * factory (each receiving state makes its own on first use). NULL on out of
 * memory. No Lua state is touched. */
par_proto *proto_from_dump(const char *dump, size_t len);

/* Pushes a closure of p: the cached closure for a simple one (no upvalue
 * but _ENV), else a new closure whose upvalues the caller sets. */
void proto_push_closure(lua_State *L, par_proto *p, int simple);

/* Per-state caches and the one-time checks of the dump format. */
void proto_open(lua_State *L);

#endif
