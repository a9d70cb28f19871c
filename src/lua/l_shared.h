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
/* Keeps o alive (one reference) until l_hold_end(L, slot), for a method
 * that runs Lua code while it uses o (a decode's finalizers, callbacks, a
 * barrier's action): that code may close the method's own handle. Pushes
 * a box and returns its slot; after an error the collector releases o. */
int l_hold(lua_State *L, par_object *o);
void l_hold_end(lua_State *L, int slot);   /* releases o, removes the slot */

#endif
