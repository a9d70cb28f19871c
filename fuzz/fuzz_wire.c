/*
 * libFuzzer target for the wire layer's receiving side (src/wire): hostile
 * bytes must fail cleanly (an error, no crash, no leak, no hang).
 *
 * At start, real payloads are made once: calls with closures, upvalues,
 * globals, cycles and numbers encoded in a Lua state and flattened (each
 * with its dumps, and again by id), a long argument as a stream (first
 * segment, segments, end), a message with a shared object as a handle,
 * and the hello. Each input is then a little program run against a fresh
 * receiving peer: feed a real payload as it is, mutated (bytes flipped,
 * set, inserted, deleted), truncated or spliced into another, raw bytes,
 * hellos, peer resets, and raw bytes through a channel's frame reader.
 * So truncated frames, unknown ids, ids that do not match their code,
 * forged handles, unknown streams and wrong fingerprints are all met.
 *
 * A rebuilt message whose codec bytes are the real ones is also decoded
 * in a Lua state (the refs the envelope gave it may be swapped or forged:
 * the decoder must refuse them). Messages that wait on a stream are not
 * decoded (the decoder would wait for segments that never come).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "codec/codec.h"
#include "core/queue.h"
#include "wire/wire.h"

int luaopen_parallel_core(lua_State *L);

#define MAX_REAL 32

typedef struct real {
  unsigned char *bytes;
  size_t len;
  size_t codec_at;     /* where the codec bytes start (0: none) */
} real;

static real reals[MAX_REAL];
static int nreals;
static par_queue *the_queue;   /* what the handle (owner 7, id 1) names */

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "parallel.core", luaopen_parallel_core, 0);
  lua_pop(L, 1);
  return L;
}

/* ---------------------------------------------------------------- hooks */

static int export_obj(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  (void)ud;
  if (o->type != &par_queue_type) { snprintf(e->msg, sizeof e->msg, "no"); return -1; }
  h->type = o->type->name;
  h->owner = 7;
  h->id = 1;
  return 0;
}

static par_object *import_obj(void *ud, const par_wire_handle *h, par_wire_err *e) {
  (void)ud;
  if (strcmp(h->type, "parallel.queue") == 0 && h->owner == 7 && h->id == 1)
    return par_object_retain((par_object *)the_queue);
  snprintf(e->msg, sizeof e->msg, "cannot receive %s (owner %llu, id %llu)", h->type,
           (unsigned long long)h->owner, (unsigned long long)h->id);
  return NULL;
}

static const par_wire_objects hooks = { export_obj, import_obj, NULL };

/* ------------------------------------------------------- real payloads */

static void keep(const par_buf *b, size_t codec_len) {
  real *r;
  if (nreals == MAX_REAL) return;
  r = &reals[nreals++];
  r->bytes = malloc(b->len ? b->len : 1);
  if (!r->bytes) abort();
  memcpy(r->bytes, b->data, b->len);
  r->len = b->len;
  r->codec_at = codec_len && codec_len <= b->len ? b->len - codec_len : 0;
}

static void flatten_keep(par_wire_peer *p, par_msg *m) {
  par_buf b;
  par_wire_err e;
  uint32_t stream = 0;
  par_buf_init(&b);
  if (par_wire_flatten(p, m, &b, &stream, &e) != 0) { fprintf(stderr, "fuzz_wire: %s\n", e.msg); abort(); }
  keep(&b, m->len);
  if (stream) {                         /* the rest of the stream */
    par_msg *seg;
    while (par_queue_pop((par_queue *)m->rest, &seg, 0) == PAR_OK) {
      b.len = 0;
      if (par_wire_flatten_segment(p, stream, seg, &b, &e) != 0) abort();
      keep(&b, seg->len);
      par_msg_free(seg);
    }
    b.len = 0;
    if (par_wire_flatten_end(p, stream, &b, &e) != 0) abort();
    keep(&b, 0);
  }
  par_buf_free(&b);
}

static par_msg *streamed_first;
static void take_first(lua_State *L, void *ud, par_msg *first) {
  (void)L; (void)ud;
  if (first) streamed_first = first;
}

static const char *const programs[] = {
  "local k, t = 3, {1, 2.5, 'x', true} t.self = t "
  "FUZZ_G = {n = 1} return function(x) FUZZ_G.n = FUZZ_G.n + 1 return x + k, t end, 5",
  "local n = 0 local function inc() n = n + 1 return n end "
  "local function get() return n end return inc, get, math.mininteger, -0.0, 1/0, string, math.sqrt",
  "local t = {} for i = 1, 120000 do t[i] = i % 3 == 0 and tostring(i) or i end "
  "t[5] = function(y) return y end return function(x) return #x end, t",
  "local core = require 'parallel.core' local q = core.queue() return function(a) return a end, q, {q}",
  NULL
};

static void make_reals(void) {
  lua_State *A = new_state();
  par_buf b;
  int i;
  the_queue = par_queue_new(0);
  for (i = 0; programs[i]; i++) {
    par_wire_peer *p = par_wire_peer_new(&hooks);
    par_msg *m;
    int n, top = lua_gettop(A);
    if (luaL_dostring(A, programs[i]) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(A, -1)); abort(); }
    n = lua_gettop(A) - top;
    streamed_first = NULL;
    m = codec_encode_call_streamed(A, top + 1, n, take_first, NULL);
    if (!m) m = streamed_first;
    flatten_keep(p, m);
    par_msg_free(m);
    m = codec_encode_call(A, top + 1, n);    /* again: functions by id */
    flatten_keep(p, m);
    par_msg_free(m);
    lua_settop(A, top);
    par_wire_peer_free(p);
  }
  par_buf_init(&b);
  par_wire_hello(&b);
  keep(&b, 0);
  par_buf_free(&b);
  lua_close(A);
}

/* ---------------------------------------------------------- the input */

typedef struct input { const uint8_t *p; size_t n; } input;

static unsigned byte_(input *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

static size_t num(input *in, size_t mod) {
  size_t x = byte_(in);
  x = (x << 8) | byte_(in);
  x = (x << 8) | byte_(in);
  return mod ? x % mod : 0;
}

static int p_decode(lua_State *L) {
  par_msg *m = (par_msg *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  return codec_decode(L, m);
}

/* Decodes m when its codec bytes are a real message's (see the top), in
 * protected mode: a swapped or forged ref must raise, never crash. */
static void decode_protected(lua_State **Bp, par_msg *m, const real *r) {
  lua_State *B;
  int top;
  if (m->rest || !r || !r->codec_at || m->len != r->len - r->codec_at ||
      memcmp(m->data, r->bytes + r->codec_at, m->len) != 0)
    return;
  if (!*Bp) *Bp = new_state();              /* made when first needed: it costs */
  B = *Bp;
  top = lua_gettop(B);
  lua_pushcfunction(B, p_decode);
  lua_pushlightuserdata(B, m);
  lua_pcall(B, 1, 0, 0);
  lua_settop(B, top);
}

static void rebuild(par_wire_peer *p, lua_State **B, const unsigned char *s, size_t n, const real *r) {
  par_msg *m = NULL;
  par_wire_err e;
  int rc = par_wire_rebuild(p, s, n, &m, &e);
  if (rc == PAR_WIRE_MESSAGE) {
    if (!m) abort();
    decode_protected(B, m, r);
    par_msg_free(m);
  } else if (m) {
    abort();                                /* nothing made on failure */
  } else if (rc == PAR_WIRE_ERROR && !e.msg[0]) {
    abort();                                /* an error says what */
  }
}

/* Raw bytes through a channel's reader: frames or a clean error. */
static void through_channel(const unsigned char *s, size_t n, size_t max_frame) {
  int sv[2];
  par_wire_chan *c;
  par_wire_err e;
  const unsigned char *f;
  size_t len;
  int r, rounds = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
  if (n && write(sv[1], s, n) != (ssize_t)n) { close(sv[0]); close(sv[1]); return; }
  close(sv[1]);
  c = par_wire_chan_new(sv[0], max_frame);
  do {
    par_wire_chan_io(c, 0, &e);
    while ((r = par_wire_chan_next(c, &f, &len, &e)) == 1)
      if (len > max_frame) abort();
  } while (r == 0 && ++rounds < 4);
  if (r == 0) abort();                      /* closed: must end in an error */
  par_wire_chan_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  input in = { data, size };
  par_wire_peer *p;
  lua_State *B;
  unsigned char *buf;
  int ops = 0;
  if (!ready) { make_reals(); ready = 1; }
  p = par_wire_peer_new(byte_(&in) & 1 ? &hooks : NULL);
  B = NULL;
  buf = malloc(8192);
  if (!p || !buf) abort();
  while (in.n && ops++ < 64) {
    unsigned op = byte_(&in) % 8;
    const real *r = &reals[byte_(&in) % (unsigned)nreals];
    size_t n = r->len < 4096 ? r->len : 4096, k, i;
    switch (op) {
      case 0:                               /* raw bytes */
        n = num(&in, 512);
        if (n > in.n) n = in.n;
        rebuild(p, &B, in.p, n, NULL);
        in.p += n; in.n -= n;
        break;
      case 1:                               /* a real payload */
        rebuild(p, &B, r->bytes, r->len, r);
        break;
      case 2:                               /* mutated */
        memcpy(buf, r->bytes, n);
        k = byte_(&in) % 8 + 1;
        for (i = 0; i < k && n; i++) {
          size_t at = num(&in, n);
          unsigned how = byte_(&in) % 4, v = byte_(&in);
          if (how == 0) buf[at] ^= (unsigned char)(1u << (v % 8));
          else if (how == 1) buf[at] = (unsigned char)v;
          else if (how == 2 && n < 8192) { memmove(buf + at + 1, buf + at, n - at); buf[at] = (unsigned char)v; n++; }
          else { memmove(buf + at, buf + at + 1, n - at - 1); n--; }
        }
        rebuild(p, &B, buf, n, r);
        break;
      case 3:                               /* truncated */
        rebuild(p, &B, r->bytes, num(&in, r->len + 1), r);
        break;
      case 4: {                             /* spliced: the head of one, the tail of another */
        const real *r2 = &reals[byte_(&in) % (unsigned)nreals];
        size_t a = num(&in, n + 1), b2 = num(&in, r2->len + 1);
        size_t tail = r2->len - b2 < 8192 - a ? r2->len - b2 : 8192 - a;
        memcpy(buf, r->bytes, a);
        memcpy(buf + a, r2->bytes + b2, tail);
        rebuild(p, &B, buf, a + tail, NULL);
        break;
      }
      case 5: {                             /* a hello, maybe altered */
        par_wire_err e;
        memcpy(buf, r->bytes, n);
        if (n && byte_(&in) & 1) buf[num(&in, n)] = (unsigned char)byte_(&in);
        if (par_wire_check_hello(buf, n, &e) != 0 && !strstr(e.msg, "this process has")) abort();
        break;
      }
      case 6:                               /* the other end restarted */
        par_wire_peer_reset(p);
        break;
      case 7: {                             /* raw bytes as a byte stream */
        size_t max_frame = (size_t)byte_(&in) * 4 + 1;
        n = num(&in, 256);
        if (n > in.n) n = in.n;
        through_channel(in.p, n, max_frame);
        in.p += n; in.n -= n;
        break;
      }
    }
  }
  free(buf);
  par_wire_peer_free(p);
  if (B) lua_close(B);
  return 0;
}
