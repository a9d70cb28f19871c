/*
 * What the codec's files share (private to src/codec/): the state of one
 * encode and of one decode, and the functions one file gives another.
 *
 *   encode.c   Lua values -> bytes (one traversal), codec_encode*, codec_open
 *   decode.c   bytes -> Lua values, codec_decode*
 *   names.c    names: modules and C functions by their name in
 *              package.loaded, and the globals a function reads
 *   stream.c   a call's long argument in segments, both ways
 *   proto.c    function prototypes: dumped once, loaded once per state
 *   dumpscan.c the globals a dump reads
 *   wire.h     the format
 */
#ifndef PAR_CODEC_INTERNAL_H
#define PAR_CODEC_INTERNAL_H

#include <stddef.h>

#include "lua.h"
#include "codec/codec.h"
#include "codec/wire.h"
#include "core/msg.h"
#include "core/queue.h"

#define MAX_DEPTH 1000
/* Stack slots one level of a table or function may use (its own, the
 * module index's rebuild, a global's lookup): checked at every level, as
 * the Lua API itself never checks and an overflow would write past the
 * stack. */
#define SLOTS_PER_LEVEL 24
#define PATH_MAX_PARTS (MAX_DEPTH + 8)
/* A Lua function has at most this many upvalues (lfunc.h's MAXUPVAL). */
#define MAX_UPVALUES 255

/* ------------------------------------------------------------- encoding */

/* One step of the path an error names ("args[2].x[3](metatable)"). */
typedef struct part {
  enum { P_INDEX, P_KEY, P_NAME, P_META, P_KEYOF } kind;
  lua_Integer i;      /* P_INDEX */
  int idx;            /* P_KEY, P_KEYOF: absolute stack index of the key */
  const char *name;   /* P_NAME */
} part;

/* A call being sent in segments (codec_encode_call_streamed). */
typedef struct enc_stream {
  codec_submit_fn submit;
  void *ud;
  par_queue *queue;   /* set when the first segment has gone: our reference */
} enc_stream;

/* The buffer an encode writes into: the state's scratch while no other
 * encode holds it (encode.c). */
typedef struct enc_buf {
  par_buf b;
  int busy;           /* an encode holds it (or raised while holding it) */
} enc_buf;

typedef struct enc {
  lua_State *L;
  par_buf *b;         /* &buf->b */
  enc_buf *buf;       /* ours until the encode ends */
  enc_stream *stream; /* NULL: one message */
  int flushed;        /* segments sent so far */
  int seen;           /* stack index of the seen table (nil until needed) */
  int nseen;
  int names;          /* stack index of the names table slot */
  int have_names;     /* the slot holds the table */
  int globals;        /* stack index of the sender's globals */
  int depth;
  const char *root;
  lua_Integer root_index;   /* 0: root is the whole name */
  int call;                 /* value 1 is "fn", then args[1]... */
  int task;                 /* the values go to a task (a call, a map chunk) */
  part path[PATH_MAX_PARTS];
} enc;

/* encode.c: encodes the n values from stack[first] (codec_encode and
 * codec_encode_call; stream: a streamed call's state, or NULL). */
par_msg *codec_encode_values(lua_State *L, int first, int n, const char *root, int indexed,
                             int call, enc_stream *stream);
/* Raises "not enough memory", dropping what the buffer holds. */
void codec_enc_nomem(enc *e);
/* enc_errors.c: each raises, after dropping what the encode holds. */
void codec_enc_drop(enc *e);                        /* only drops */
void codec_enc_fail(enc *e, const char *what);     /* "cannot send <what> at <path>" */
void codec_enc_fail_local(enc *e, int idx);        /* a value bound to its state, with a hint */
void codec_enc_fail_deep(enc *e);                  /* nested past MAX_DEPTH, with a hint */

/* names.c, the sender's side. Pushes the name under which the value at idx
 * is known in `field` ("modules": a loaded module's name, "cfuncs": a C
 * function's "module\0field"), or nothing and returns 0. */
int codec_names_lookup(enc *e, int idx, const char *field);
/* Whether name is a global of the standard library (every receiver has it). */
int codec_is_std_global(const char *name);
/* Pushes env[name] as a function's _ENV finds it, never raising; returns
 * its type. */
int codec_push_global(lua_State *L, int env, const char *name);

/* stream.c: sends what the buffer holds as one segment of a streamed call.
 * A segment ends only between two items of a top-level argument's open
 * run, checked every SEGMENT_CHECK items once it holds SEGMENT_BYTES. */
#define SEGMENT_BYTES ((size_t)512 << 10)
#define SEGMENT_CHECK 4096
void codec_flush_segment(enc *e);

/* ------------------------------------------------------------- decoding */

typedef struct dec {
  lua_State *L;
  const par_msg *m;
  const unsigned char *p, *end;
  int refs;       /* stack index of the back-reference table (nil until needed) */
  int nrefs;
  int globals;
  par_queue *rest;  /* a message in segments: where the next ones come from */
  int box;          /* stack index of the box holding the segment being read */
} dec;

/* names.c, the receiver's side. Pushes package.loaded[name], requiring it
 * when absent. */
void codec_push_module(lua_State *L, const char *name, size_t len);
/* Pushes the C function named "module\0field" (s, len); returns 0 (pushing
 * nothing) when s has no '\0'; raises when there is no such function. */
int codec_push_cfunc(lua_State *L, const char *s, size_t len);

/* stream.c, the receiver's side. Pushes the box that owns the segment
 * being read (an error frees it); empties a box; moves d on to the next
 * segment, waiting for it (interruptibly). */
void codec_segment_box_new(lua_State *L);
void codec_segment_box_empty(lua_State *L, int idx);
void codec_next_segment(dec *d);

/* Per-state setup of names.c and stream.c (called by codec_open). */
void codec_names_open(lua_State *L);
void codec_stream_open(lua_State *L);

#endif
