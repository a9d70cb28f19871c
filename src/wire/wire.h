/*
 * The wire layer: messages that leave the process (worker processes, MPI).
 *
 * A par_msg (core/msg.h) is codec bytes plus refs[] of process-local
 * pointers. Flattening turns it into one self-contained byte string;
 * rebuilding turns such a string back into a par_msg of the receiving
 * process, which the existing decoder (codec_decode) reads as it is.
 * Pure C: no Lua state is needed on either side.
 *
 *   refs[] holds          flattened as
 *   a par_proto           its dump the first time this peer sees it, then
 *                         its id alone (a 64-bit content hash of the dump)
 *   any other par_object  a handle (type, owner, id) made by the peer's
 *                         export hook; without one the send is refused:
 *                         "cannot send parallel.queue to another process"
 *
 * A long argument goes in segments (codec_encode_call_streamed): the first
 * segment's m->rest is the queue the others arrive on. Across the wire each
 * segment is a payload of its own, in order, tagged with a stream number;
 * the receiver pushes them into the queue of the first one's rebuilt
 * message, so the same decoder reads them while they still arrive.
 *
 * The format of a flattened payload is in doc/wire.md ("Flattened
 * messages").
 *
 * Peers. A par_wire_peer is one end's state for one connection, both ways:
 * which prototypes the other end already has from us (sending), which it
 * sent us (receiving), and the streams it is sending us. Every payload a
 * peer flattened must reach the other end, in order, or both ends must be
 * reset (a restarted worker: par_wire_peer_reset, then everything goes as
 * if for the first time). A peer has its own mutex: any thread may use it,
 * calls are serialized.
 *
 * Channels. A par_wire_chan is a framed byte stream over one file
 * descriptor (socketpair, pipe) that never blocks in a send: a frame that
 * cannot be written at once waits in a backlog, written when the fd is
 * writable, while incoming frames keep being read into the receive buffer.
 * (Two ends each blocked writing a large frame to the other is the
 * deadlock this exists to avoid.) Run it from a poll loop:
 *   events = par_wire_chan_events(c)  -> poll -> par_wire_chan_io(c, revents)
 *   then par_wire_chan_next(c, ...) until it returns 0.
 * or, with one channel, par_wire_chan_wait(c, timeout_ms).
 *
 * Errors: functions return -1 (or NULL) and fill a par_wire_err with a
 * complete sentence in the project's style; they never abort or print.
 * Threads: a channel has its own mutex too, never held across poll(2).
 */
#ifndef PAR_WIRE_H
#define PAR_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "core/msg.h"
#include "core/object.h"

/* Version of the flattened format; part of the fingerprint. */
#define PAR_WIRE_VERSION 1

typedef struct par_wire_err {
  char msg[512];
} par_wire_err;

/* Fills e (if any) with the printf-formatted reason; returns -1, so that
 * a failing path can `return par_wire_fail(e, ...)`. */
int par_wire_fail(par_wire_err *e, const char *fmt, ...);

/* ------------------------------------------------------------ fingerprint */

/* This process's fingerprint: a short text naming the Lua version, the
 * sizes of int, size_t, lua_Integer, lua_Number and Instruction, the byte
 * order, the module version and PAR_WIRE_VERSION, e.g.
 *   "Lua 5.4; int 4, size_t 8, integer 8, number 8, instruction 4;
 *    little-endian; parallel 0.1.0; wire 1"
 * (one line). Two ends exchange it first and talk only if equal. */
const char *par_wire_fingerprint(void);

/* Appends the hello payload (a marker byte and the fingerprint) to out.
 * 0, or -1 on out of memory. */
int par_wire_hello(par_buf *out);

/* Checks the other end's hello payload. 0 when it matches this process;
 * else -1 and e names both sides:
 *   "cannot talk to the other process: it has Lua 5.3; ... , this process
 *    has Lua 5.4; ..." (or "... sent no valid hello"). */
int par_wire_check_hello(const void *bytes, size_t len, par_wire_err *e);

/* ------------------------------------------------------------------ peers */

/* A remote handle: what a shared object becomes on the wire. */
typedef struct par_wire_handle {
  const char *type;   /* the par_type name, "parallel.queue" */
  uint64_t owner;     /* the process (rank, worker) that owns the object */
  uint64_t id;        /* the object's id at its owner */
} par_wire_handle;

/* Hooks a backend sets to let shared objects travel; both may be NULL. */
typedef struct par_wire_objects {
  /* Sending: fill h for o (h->type must stay valid until the flatten
   * returns), 0; or -1 with e filled to refuse. */
  int (*export_obj)(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e);
  /* Receiving: the object h names, one reference to the message; or NULL
   * with e filled. Called for any handle, so it must check h (a forged
   * handle must fail cleanly). */
  par_object *(*import_obj)(void *ud, const par_wire_handle *h, par_wire_err *e);
  void *ud;
} par_wire_objects;

typedef struct par_wire_peer par_wire_peer;

/* objs NULL (or its hooks NULL): shared objects are refused at the send
 * ("cannot send parallel.queue to another process") and any handle at the
 * receipt. The hooks are copied. NULL on out of memory. */
par_wire_peer *par_wire_peer_new(const par_wire_objects *objs);

/* The other end was replaced (a restarted worker): forget what it had and
 * what it sent; its open streams are closed (their decoders fail with "the
 * sender failed ..."). */
void par_wire_peer_reset(par_wire_peer *p);

void par_wire_peer_free(par_wire_peer *p);

/* Counters, for tests and measurements. */
typedef struct par_wire_stats {
  uint64_t dumps_sent, ids_sent;          /* prototypes flattened as dump / as id */
  uint64_t dumps_received, ids_received;
  size_t protos_cached;                   /* prototypes held from the other end */
  size_t streams_open;                    /* streams being received */
} par_wire_stats;
void par_wire_peer_stats(par_wire_peer *p, par_wire_stats *out);

/* ----------------------------------------------------- flatten / rebuild */

/*
 * Appends the flattened payload of m to out (after whatever out already
 * holds: a backend puts its own header first). out's refs are not used.
 * When m is the first segment of a streamed message (m->rest set), a new
 * stream number is stored in *stream (may be NULL otherwise; 0 when m is
 * whole): the caller then pops the other segments from m->rest and sends
 * each with par_wire_flatten_segment, then par_wire_flatten_end, all in
 * order after this payload (other payloads may go in between).
 * 0, or -1 with e filled (a shared object the peer cannot send, out of
 * memory); on -1 out is back to its length before the call.
 */
int par_wire_flatten(par_wire_peer *p, const par_msg *m, par_buf *out, uint32_t *stream,
                     par_wire_err *e);

/* A later segment of stream `stream` (a message popped from the first
 * segment's rest queue); same contract as par_wire_flatten. */
int par_wire_flatten_segment(par_wire_peer *p, uint32_t stream, const par_msg *seg, par_buf *out,
                             par_wire_err *e);

/* The end of stream `stream`: its rest queue was closed and drained (the
 * sender finished, or failed: the decoder tells which by what it read). */
int par_wire_flatten_end(par_wire_peer *p, uint32_t stream, par_buf *out, par_wire_err *e);

/* What par_wire_rebuild made of a payload. */
enum {
  PAR_WIRE_ERROR = -1,
  PAR_WIRE_CONSUMED = 0,  /* a segment or an end: fed into its stream */
  PAR_WIRE_MESSAGE = 1    /* *out is a new message (a whole one, or a
                             first segment whose ->rest the others fill) */
};

/*
 * Rebuilds one payload (exactly the bytes a flatten appended) that came
 * from the other end of p. Returns PAR_WIRE_MESSAGE with *out set (the
 * caller owns it: codec_decode, then par_msg_free), PAR_WIRE_CONSUMED, or
 * PAR_WIRE_ERROR with e filled: any malformed, truncated or hostile input
 * (unknown prototype id, a dump whose id does not match, a handle the
 * import hook refuses, an unknown stream) fails cleanly, leaking nothing.
 * A hello payload is an error here (check it with par_wire_check_hello).
 */
int par_wire_rebuild(par_wire_peer *p, const void *bytes, size_t len, par_msg **out,
                     par_wire_err *e);

/* The first byte of a payload: which kind it is, for a backend's dispatch
 * (PAR_WIRE_K_*), or -1 when len is 0. */
enum {
  PAR_WIRE_K_HELLO = 0xA0,
  PAR_WIRE_K_MESSAGE = 0xA1,
  PAR_WIRE_K_FIRST = 0xA2,     /* first segment of a stream */
  PAR_WIRE_K_SEGMENT = 0xA3,
  PAR_WIRE_K_END = 0xA4
};
int par_wire_kind(const void *bytes, size_t len);

/* --------------------------------------------------------------- channels */

typedef struct par_wire_chan par_wire_chan;

/* Frames longer than this are refused on both sides (max_frame 0). */
#define PAR_WIRE_MAX_FRAME ((size_t)1 << 31)

/* A channel over fd (made non-blocking here; the channel owns it and
 * closes it in par_wire_chan_free). max_frame 0: PAR_WIRE_MAX_FRAME.
 * NULL on out of memory. */
par_wire_chan *par_wire_chan_new(int fd, size_t max_frame);
void par_wire_chan_free(par_wire_chan *c);
int par_wire_chan_fd(par_wire_chan *c);

/* Queues one frame, the concatenation of head and body (either may be
 * empty: a backend's header and a flattened payload, with no copy between
 * them), and writes as much as the fd takes now. Never blocks. 0, or -1
 * with e filled (the channel failed or was closed by the other end, the
 * frame is too long, out of memory). Frames go out in the order sent. */
int par_wire_chan_send(par_wire_chan *c, const void *head, size_t hlen, const void *body,
                       size_t blen, par_wire_err *e);

/* Bytes queued and not yet written. */
size_t par_wire_chan_backlog(par_wire_chan *c);

/* The poll(2) events to wait for: POLLIN, plus POLLOUT while a backlog
 * waits. */
short par_wire_chan_events(par_wire_chan *c);

/* After poll: reads what the fd has (into the receive buffer, whole frames
 * or not) and writes what the backlog can. 0; or -1 with e filled once the
 * channel failed or the other end closed it (frames already received can
 * still be taken with par_wire_chan_next). */
int par_wire_chan_io(par_wire_chan *c, short revents, par_wire_err *e);

/* poll + io on this one channel, up to timeout_ms (-1: until something
 * happened). 0 (also on timeout or EINTR), or -1 as par_wire_chan_io. */
int par_wire_chan_wait(par_wire_chan *c, int timeout_ms, par_wire_err *e);

/* The next complete frame received: 1 with *frame / *len set (valid until
 * the next par_wire_chan_next, _io or _wait on c), 0 when none is complete yet, -1 with e filled when
 * the input is broken (a length over max_frame) or closed with nothing
 * left. */
int par_wire_chan_next(par_wire_chan *c, const unsigned char **frame, size_t *len,
                       par_wire_err *e);
/* The next complete frame, like par_wire_chan_next but left in place for
 * it (valid until the next call on c): 1, or 0 when none is complete. */
int par_wire_chan_peek(par_wire_chan *c, const unsigned char **frame, size_t *len);

#endif
