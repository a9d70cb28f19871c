/*
 * A call with a long argument, in segments: the sender hands the first
 * segment over (the task is queued) and goes on encoding while the worker
 * decodes; the others follow on a queue that the first carries. A segment
 * ends only between two items of a top-level argument's open run: no
 * enclosing table's counts are left to patch there, and the decoder checks
 * for the end of a segment only there (wire.h).
 */
#include "lauxlib.h"
#include "codec/internal.h"
#include "lua/l_wait.h"

/* ---------------------------------------------------------------- sender */

/* Sends what the buffer holds as one segment of a streamed call. */
void codec_flush_segment(enc *e) {
  enc_stream *s = e->stream;
  par_msg *m = par_buf_finish(e->b);
  if (!m) { codec_enc_nomem(e); return; }
  e->flushed++;
  if (!s->queue) {
    par_queue *q = par_queue_new(0);
    if (!q) { par_msg_free(m); codec_enc_nomem(e); return; }
    s->queue = q;
    m->rest = par_object_retain((par_object *)q);
    s->submit(e->L, s->ud, m);
  } else if (par_queue_push(s->queue, m, 0) != PAR_OK) {
    par_msg_free(m);
    codec_enc_nomem(e);
  }
}

/* Arguments shorter than this go in one message: no protected call. */
#define STREAM_MIN_ITEMS 100000

typedef struct stream_call {
  enc_stream s;
  par_msg *m;
} stream_call;

/* Protected: 1 is the stream_call, the call's values follow. */
static int encode_streamed_body(lua_State *L) {
  stream_call *c = (stream_call *)lua_touserdata(L, 1);
  c->m = codec_encode_values(L, 2, lua_gettop(L) - 1, "args", 1, 1, &c->s);
  return 0;
}

par_msg *codec_encode_call_streamed(lua_State *L, int first, int n, codec_submit_fn submit,
                                    void *ud) {
  stream_call c;
  int i, status;
  first = lua_absindex(L, first);
  for (i = 1; i < n; i++)
    if (lua_type(L, first + i) == LUA_TTABLE && lua_rawlen(L, first + i) >= STREAM_MIN_ITEMS) break;
  if (i >= n) return codec_encode_call(L, first, n);
  c.s.submit = submit;
  c.s.ud = ud;
  c.s.queue = NULL;
  c.m = NULL;
  luaL_checkstack(L, n + 2, "too many arguments");
  lua_pushcfunction(L, encode_streamed_body);
  lua_pushlightuserdata(L, &c);
  for (i = 0; i < n; i++) lua_pushvalue(L, first + i);
  status = lua_pcall(L, n + 1, 0, 0);
  if (!c.s.queue) {                     /* it went in one piece (or failed before) */
    if (status != LUA_OK) lua_error(L);
    return c.m;
  }
  /* The last segment, then the end; on an error, the end alone. */
  if (status == LUA_OK && par_queue_push(c.s.queue, c.m, 0) != PAR_OK) {
    par_msg_free(c.m);
    lua_pushliteral(L, "not enough memory");
    status = LUA_ERRMEM;
  }
  par_queue_close(c.s.queue);
  par_object_release((par_object *)c.s.queue);
  if (status != LUA_OK) {
    submit(L, ud, NULL);                /* must not raise: the error is on top */
    lua_error(L);
  }
  return NULL;
}

/* -------------------------------------------------------------- receiver */

/* The segment being read, owned by a userdata so that an error frees it. */
static const char *const SEGMENT_BOX = "parallel.segment";

static int segment_box_gc(lua_State *L) {
  codec_segment_box_empty(L, 1);
  return 0;
}

void codec_segment_box_empty(lua_State *L, int idx) {
  par_msg **box = (par_msg **)lua_touserdata(L, idx);
  par_msg_free(*box);
  *box = NULL;
}

static int pop_segment(void *ud, double deadline) {
  void **w = (void **)ud;     /* queue, then the message popped */
  return par_queue_pop((par_queue *)w[0], (par_msg **)&w[1], deadline);
}

/* Moves on to the next segment: waits for it (interruptibly), as the
 * sender may still be encoding it. */
void codec_next_segment(dec *d) {
  lua_State *L = d->L;
  void *w[2];
  par_msg **box = (par_msg **)lua_touserdata(L, d->box);
  int r;
  w[0] = d->rest;
  w[1] = NULL;
  r = l_wait(L, -1, pop_segment, w);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  if (r != PAR_OK) luaL_error(L, "the sender failed while sending this task's arguments");
  par_msg_free(*box);
  *box = (par_msg *)w[1];
  d->m = *box;
  d->p = d->m->data;
  d->end = d->p + d->m->len;
}

void codec_segment_box_new(lua_State *L) {
  *(par_msg **)lua_newuserdatauv(L, sizeof(par_msg *), 0) = NULL;
  luaL_setmetatable(L, SEGMENT_BOX);
}

void codec_stream_open(lua_State *L) {
  luaL_newmetatable(L, SEGMENT_BOX);
  lua_pushcfunction(L, segment_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
