/*
 * Bindings of the shared objects: queues and pipes, synchronization
 * primitives, shared arrays and values, shared dicts. Each *_open creates
 * its metatables and adds its constructors to the table on top of the
 * stack (the parallel.core module).
 */
#ifndef PAR_L_SHARED_H
#define PAR_L_SHARED_H

#include "lua.h"
#include "core/msg.h"
#include "core/object.h"

void l_queue_open(lua_State *L);   /* queue, pipe */
void l_sync_open(lua_State *L);    /* lock, rlock, semaphore, condition, event, barrier */
void l_array_open(lua_State *L);   /* array, value */
void l_dict_open(lua_State *L);    /* dict */

/* Helpers for these bindings (l_shared.c). */

/* Per-state setup of l_message_decode (called by the *_open that use it). */
void l_message_open(lua_State *L);
/* Pushes the values of m and frees it, also when decoding raises (a
 * module that fails to load in this state, out of memory). */
int l_message_decode(lua_State *L, par_msg *m);
/* A task's failure message that this state could not decode (a module
 * only the worker has, out of memory): replaces the error on top with the
 * three values error(), get() and _failure() report instead, a string
 * saying why, an empty traceback and no item index. */
void l_failure_undecodable(lua_State *L);
/* Keeps o alive (one reference) until l_hold_end(L, slot), for a method
 * that runs Lua code while it uses o (a decode's finalizers, callbacks, a
 * barrier's action): that code may close the method's own handle. Pushes
 * a box and returns its slot; after an error the collector releases o. */
int l_hold(lua_State *L, par_object *o);
void l_hold_end(lua_State *L, int slot);   /* releases o, removes the slot */

/* Queue items (l_queue.c): an immediate (small integers, booleans) or the
 * encoded message of the value at idx; and back onto the stack (m freed). */
par_msg *l_queue_encode_item(lua_State *L, int idx);
void l_queue_push_item(lua_State *L, par_msg *m);
/* The same, m kept: its owner frees it (a batch's items, which go back to
 * their queue if one of them cannot be decoded). */
void l_queue_peek_item(lua_State *L, const par_msg *m);

/* Dict keys (l_dict.c), in their canonical bytes: equal keys, equal bytes.
 * Long strings get a temporary userdata, left on the stack. */
#define KEYBUF 64
typedef struct key {
  const unsigned char *p;
  size_t len;
  unsigned char buf[KEYBUF];
} key;
void l_dict_tokey(lua_State *L, int idx, key *k, int arg);
void l_dict_pushkey(lua_State *L, const unsigned char *p, size_t len);

/* The worker side of shared objects owned by another process (l_remote.c). */
void l_remote_open(lua_State *L);
/* A constructor's options at idx ({owner = "here" | "parent"}; none or
 * nil: "here"). With owner = "parent" in a worker process, the pool's
 * process makes the object (kind: wire/remote.h's PR_KIND_QUEUE, _DICT or
 * _PIPE) and its proxies are pushed: how many; 0 when it is to be made
 * here (not a worker process, or "here"). */
int l_remote_make(lua_State *L, int idx, int kind, lua_Integer capacity);

#endif
