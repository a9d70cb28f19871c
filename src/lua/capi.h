/*
 * parallel.core's C entry points for modules built apart from it.
 *
 * core.so exports only luaopen_parallel_core, so a module compiled with
 * another compiler driver (parallel.mpi, built with mpicc) reaches the
 * core, the codec and the wire layer through this table of function
 * pointers: core._capi, a light userdata. The table and the module must
 * come from the same build: abi and size are checked by the user.
 * Everything here keeps the contract of the function it points to.
 */
#ifndef PAR_CAPI_H
#define PAR_CAPI_H

#include <stddef.h>
#include "lua.h"
#include "core/future.h"
#include "core/msg.h"
#include "core/pool.h"
#include "wire/objects.h"
#include "wire/remote.h"
#include "wire/wire.h"

#define PAR_CAPI_ABI 3

typedef struct par_capi {
  int abi;
  size_t size;                               /* sizeof(par_capi) */
  const char *version;                       /* the module's version */
  const par_type *future_type, *pool_type, *proto_type;

  par_object *(*retain)(par_object *o);
  void (*release)(par_object *o);
  void (*msg_free)(par_msg *m);
  void (*buf_init)(par_buf *b);
  void (*buf_reset)(par_buf *b);
  void (*buf_free)(par_buf *b);
  int (*buf_reserve)(par_buf *b, size_t extra);
  double (*now)(void);
  int (*cpu_count)(void);

  /* Codec, in the caller's state (they raise like the originals); a state
   * that did not load parallel.core calls codec_open first. */
  void (*codec_open)(lua_State *L);
  par_msg *(*encode)(lua_State *L, int first, int n, const char *root, int indexed);
  par_msg *(*encode_call)(lua_State *L, int first, int n);
  par_msg *(*encode_chunk)(lua_State *L, int fn, int list, lua_Integer first, lua_Integer last,
                           lua_Integer label, int star);

  /* Futures, waitsets, and the proxy that makes a future a Lua value. */
  par_future *(*future_new)(int kind, par_msg *task);
  int (*future_claim)(par_future *f);
  void (*future_finish)(par_future *f, int state, par_msg *result);
  int (*future_cancel)(par_future *f);
  par_object *(*future_adopt)(par_future *f, par_object *owner, const par_future_sink *sink);
  int (*future_interrupt)(par_future *f);
  int (*future_state)(const par_future *f);
  int (*future_kind)(const par_future *f);
  const par_msg *(*future_result)(const par_future *f);
  par_msg *(*future_take_task)(par_future *f);
  par_waitset *(*waitset_new)(void);
  int (*waitset_add)(par_waitset *ws, par_future *f);
  par_future *(*waitset_next)(par_waitset *ws, double deadline, int *status);
  void (*waitset_release)(par_waitset *ws);
  void (*push_object)(lua_State *L, par_object *o);   /* takes one reference */

  /* Pools of worker threads running Lua (the thread backend's workers):
   * init (taken over) is the init call or NULL; path/cpath are copied. */
  par_pool *(*worker_pool_new)(int n, par_msg *init, const char *path, const char *cpath);
  int (*pool_submit)(par_pool *p, par_future *f);
  void (*pool_shutdown)(par_pool *p, int wait, int cancel, int interrupt);

  /* Wire layer (wire/wire.h). */
  const char *(*wire_fingerprint)(void);
  par_wire_peer *(*wire_peer_new)(const par_wire_objects *objs);
  void (*wire_peer_free)(par_wire_peer *p);
  int (*wire_flatten)(par_wire_peer *p, const par_msg *m, par_buf *out, uint32_t *stream,
                      par_wire_err *e);
  int (*wire_rebuild)(par_wire_peer *p, const void *bytes, size_t len, par_msg **out,
                      par_wire_err *e);

  /* Runs the done callbacks due in this state (what every call that waits
   * or polls for futures does first: pool:completed(), get, ...). */
  void (*wait_callbacks)(lua_State *L);
  /* Shared objects used from other processes (wire/objects.h, remote.h). */
  int (*vias_add)(par_wire_vias *v, const par_wire_via *one);
  void (*vias_hooks)(par_wire_vias *v, par_wire_objects *out);
  int (*remote_claims)(const par_object *o);
  par_remote_owner *(*remote_owner_new)(uint64_t self);
  void (*remote_owner_free)(par_remote_owner *o);
  int (*remote_owner_attach)(par_wire_vias *v, par_remote_owner *o);
  int (*remote_serve)(par_remote_owner *o, par_wire_peer *peer, const unsigned char *req,
                      size_t len, par_buf *out, par_wire_err *e);
  void (*remote_cancel)(par_remote_owner *o, const unsigned char *bytes, size_t len);
  int (*remote_next_reply)(par_remote_owner *o, par_wire_peer *peer, par_buf *out);
  par_remote_client *(*remote_client_new)(const par_remote_link *link, uint64_t owner);
  void (*remote_client_set_peer)(par_remote_client *c, par_wire_peer *peer);
  void (*remote_client_free)(par_remote_client *c);
  int (*remote_client_attach)(par_wire_vias *v, par_remote_client *c);
  void (*remote_client_deliver)(par_remote_client *c, const unsigned char *bytes, size_t len);
} par_capi;

/* Sets core._capi in the table on top of the stack. */
void l_capi_open(lua_State *L);

#endif
