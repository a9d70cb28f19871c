/* core._capi: the table of lua/capi.h, for modules built apart. */
#include <stdlib.h>
#include <string.h>

#include "lua/capi.h"
#include "codec/codec.h"
#include "codec/proto.h"
#include "core/clock.h"
#include "lua/l_object.h"
#include "lua/l_pool.h"
#include "lua/l_wait.h"
#include "lua/l_worker.h"

static char *dup_str(const char *s) {
  char *c;
  size_t n;
  if (!s) return NULL;
  n = strlen(s) + 1;
  c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

static par_pool *worker_pool_new(int n, par_msg *init, const char *path, const char *cpath) {
  worker_config *cfg = calloc(1, sizeof *cfg);
  par_pool *p;
  if (!cfg) { par_msg_free(init); return NULL; }
  cfg->init = init;
  cfg->path = dup_str(path);
  cfg->cpath = dup_str(cpath);
  p = par_pool_new(n, &worker_ops, cfg);   /* cfg belongs to the pool now */
  if (!p) worker_ops.free_ud(cfg);
  return p;
}

static void push_object(lua_State *L, par_object *o) {
  l_object_push(L, o);
}

static const par_capi capi = {
  PAR_CAPI_ABI, sizeof(par_capi), "0.1.0",
  &par_future_type, &par_pool_type, &par_proto_type,
  par_object_retain, par_object_release, par_msg_free,
  par_buf_init, par_buf_reset, par_buf_free, par_buf_reserve, par_now, par_cpu_count_default,
  codec_open, codec_encode, codec_encode_call, codec_encode_chunk,
  par_future_new, par_future_claim, par_future_finish, par_future_cancel,
  par_future_adopt, par_future_interrupt, par_future_state, par_future_kind, par_future_result,
  par_future_take_task,
  par_waitset_new, par_waitset_add, par_waitset_next, par_waitset_release, push_object,
  worker_pool_new, par_pool_submit, par_pool_shutdown,
  par_wire_fingerprint, par_wire_peer_new, par_wire_peer_free, par_wire_flatten, par_wire_rebuild,
  l_wait_callbacks,
  par_wire_vias_add, par_wire_vias_hooks, par_remote_claims,
  par_remote_owner_new, par_remote_owner_free, par_remote_owner_attach, par_remote_serve,
  par_remote_cancel, par_remote_next_reply,
  par_remote_client_new, par_remote_client_set_peer, par_remote_client_free,
  par_remote_client_attach, par_remote_client_deliver
};

void l_capi_open(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&capi);
  lua_setfield(L, -2, "_capi");
}
