/*
 * Shared objects used from another process by requests to their owner:
 * the owner-backed half of "shared objects across processes" (queues,
 * pipe ends, dicts, pools, futures). Transport-agnostic and Lua-free: a
 * backend (process pools: l_process.c / l_procworker.c; MPI later) moves
 * the request and reply bytes, this module makes and serves them.
 *
 * The object crosses as a handle (type, owner, id): `id` indexes the
 * owner's export table for that connection (par_remote_owner), which holds
 * one reference to each exported object until the other end has let go of
 * every handle of it sent (par_remote_owner_release: the owner counts the
 * handles it sent, the client those it received, and tells them back when
 * its proxy is collected; so no handle is in flight when the count reaches
 * 0), the connection's other end is gone (par_remote_owner_reset: a worker
 * process that exited or was replaced) or the owner is freed. The receiving end gets a
 * par_remote_obj (par_remote_client), whose binding (l_remote.c) turns
 * each method into par_remote_call: one request, one reply.
 *
 * Request: u32 rid, u64 id, u8 method, f64 timeout (< 0: none), i64 arg,
 *          u32 nparts, parts.
 *   PR_SUBMIT: arg the task's kind (l_worker.h: a call or a map chunk),
 *     part 0 the task, part 1 ('B', an f64) a chunk's task_timeout if any.
 *   PR_WAIT_ANY (on a future): part 0 ('B') the u64 ids of futures of
 *     this connection; the reply's value is the index of one that is done.
 *   PR_INFO (on a pool): value = 2 * workers + (shut down), part 0 ('B')
 *     the backend's name ("process" when it can kill a task, "threads").
 *   PR_CREATE (id 0, no object): the owner makes a new object of kind
 *     arg (PR_KIND_QUEUE: part 0 ('B') its u64 capacity; PR_KIND_DICT;
 *     PR_KIND_PIPE) on the requester's behalf and replies its handle
 *     (a pipe: both ends), exported as any other: the object lives at the
 *     owner, so it can go wherever the owner's objects go and outlives
 *     the requester (a worker made with {owner = "parent"}).
 * Reply:   u32 rid, u8 status (PAR_OK... or PR_FAILED: part 0 is the text),
 *          i64 value, u32 nparts, parts.
 * Cancel:  u32 rid (the requester was interrupted: a blocking request ends
 *          with PAR_INTERRUPTED unless its outcome was already decided,
 *          which is then replied as usual).
 * A part is 'I' u64 (an immediate message, core/msg.h), 'M' u32 len and a
 * flattened wire payload, 'B' u32 len and bytes, 'H' u32 len, a type name
 * and u64 id (a handle exported by the replying owner), or 'N' (none).
 *
 * Owner side threads: par_remote_serve, _next_reply and the export and
 * import hooks run on the connection's I/O thread, which never blocks in a
 * request: a request that would block (a pop on an empty queue, get on a
 * running future...) goes to a helper thread of its own, which waits in
 * slices of 50 ms, checking whether it was cancelled, and queues its
 * outcome; the I/O thread flattens it (flattening stays in send order)
 * once par_remote_owner_fd turns readable. `mu` guards the export table,
 * the pending requests and the outbox. A blocking request whose requester
 * is gone (reset) is undone: a popped item goes back to the front of its
 * queue, a dict key being updated is released.
 *
 * Client side threads: any thread may call; `mu` guards the pending calls.
 * The link's pump reads what arrives and hands replies to
 * par_remote_client_deliver (the process worker pumps from the calling
 * thread itself, MPI's communication thread would deliver from its own).
 */
#ifndef PAR_WIRE_REMOTE_H
#define PAR_WIRE_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include "core/msg.h"
#include "core/object.h"
#include "wire/objects.h"
#include "wire/wire.h"

enum {
  PR_PUSH = 1, PR_POP, PR_PUSH_MANY, PR_POP_MANY, PR_CLOSE, PR_COUNT, PR_CAPACITY,
  PR_TASK_DONE, PR_JOIN, PR_POLL,                      /* queues and pipe ends */
  PR_GET, PR_SET, PR_ITEMS, PR_BEGIN_UPDATE, PR_END_UPDATE,   /* dicts */
  PR_WAIT, PR_STATE, PR_CANCEL, PR_INTERRUPT, PR_KILL,        /* futures */
  PR_SUBMIT, PR_SHUT_DOWN,                                    /* pools */
  PR_WAIT_ANY, PR_INFO,     /* futures: the first of several done; pools: what map needs */
  PR_CREATE,                /* no object: make one at the owner */
  PR_METHODS
};

/* PR_PUSH_MANY's arg: the items go back to the front of the queue they
 * were popped from, in order (a pop_many whose taker could not decode one) */
#define PR_TO_FRONT 1

/* How many task kinds PR_SUBMIT takes: l_worker.h's TASK_CALL, TASK_MAP
 * and TASK_STARMAP (the binding checks that they agree). */
#define PR_TASK_KINDS 3

/* A reply status beside the core's PAR_*: the request failed, part 0 says why. */
#define PR_FAILED 16

/* Which objects travel this way; the kinds of a par_remote_obj. */
enum { PR_KIND_QUEUE, PR_KIND_PIPE, PR_KIND_DICT, PR_KIND_FUTURE, PR_KIND_POOL, PR_KINDS };

typedef struct par_remote_part {
  unsigned char tag;     /* 'M' (m: a message or an immediate), 'B', 'H', 'N' */
  par_msg *m;            /* owned */
  unsigned char *bytes;  /* 'B': owned */
  size_t len;
  par_object *obj;       /* 'H': one reference */
} par_remote_part;

void par_remote_parts_free(par_remote_part *parts, size_t n);

/* ------------------------------------------------------------ owner side */

typedef struct par_remote_owner par_remote_owner;

/* self: this process's id on the wire (a pid, a rank). NULL on failure. */
par_remote_owner *par_remote_owner_new(uint64_t self);
/* Resets (below), waits for the helper threads, frees. */
void par_remote_owner_free(par_remote_owner *o);
/* The other end is gone or replaced: pending requests are cancelled,
 * replies not yet sent undone, exported objects released. */
void par_remote_owner_reset(par_remote_owner *o);
/* Adds the owner's via: exports queues, pipe ends, dicts, pools and
 * futures; imports the handles it exported. */
int par_remote_owner_attach(par_wire_vias *v, par_remote_owner *o);
/* The other end let go of n handles of export id (its proxy was
 * collected, par_remote_client_releases): once every handle sent is let
 * go, the export is dropped and its id may name another object. */
void par_remote_owner_release(par_remote_owner *o, uint64_t id, uint64_t n);
/* Whether o is of a kind this module carries (to refuse the others early). */
int par_remote_claims(const par_object *o);
/* How many objects all owners of this process export now (held for
 * another process): for tests that check nothing leaks. */
long par_remote_exports_live(void);
/* Replies whose values take more than max bytes (0: no limit) fail with
 * "not enough memory" instead, what the call took given back (a popped
 * item goes back to the head): the other end, a worker process under
 * memory_limit, could not hold them and would lose its channel trying.
 * Set before the first request. */
void par_remote_owner_limit(par_remote_owner *o, size_t max);
/* Readable when a reply waits for par_remote_next_reply; -1 if none. */
int par_remote_owner_fd(par_remote_owner *o);

/* Serves one request (the bytes after the backend's own header): 1 when
 * its reply was appended to out, 0 when it went to a helper (its reply
 * comes from par_remote_next_reply), -1 when the bytes are malformed
 * (e says why; nothing appended). */
int par_remote_serve(par_remote_owner *o, par_wire_peer *peer, const unsigned char *req,
                     size_t len, par_buf *out, par_wire_err *e);
/* A cancel (its bytes). */
void par_remote_cancel(par_remote_owner *o, const unsigned char *bytes, size_t len);
/* Appends the next finished reply to out: 1, or 0 when none waits. */
int par_remote_next_reply(par_remote_owner *o, par_wire_peer *peer, par_buf *out);

/* ----------------------------------------------------------- client side */

typedef struct par_remote_client par_remote_client;

typedef struct par_remote_link {
  /* Sends one frame: the backend's header (hlen bytes, may be 0) and body. */
  int (*send)(void *ud, const void *body, size_t blen, int cancel, par_wire_err *e);
  /* Waits until something arrives or the deadline, delivering replies;
   * 0, or -1 once the link is broken. */
  int (*pump)(void *ud, double deadline, par_wire_err *e);
  void *ud;
} par_remote_link;

par_remote_client *par_remote_client_new(const par_remote_link *link, uint64_t owner);
void par_remote_client_set_peer(par_remote_client *c, par_wire_peer *peer);
void par_remote_client_free(par_remote_client *c);
/* Adds the client's via: imports the owner's handles as par_remote_obj,
 * exports them back as the same handles. */
int par_remote_client_attach(par_wire_vias *v, par_remote_client *c);
/* Proxies collected since the last call: appends (u64 id, u64 handles
 * received) for each to out, for par_remote_owner_release at the owner;
 * how many, or -1 on out of memory (they are kept for the next call).
 * The list starts with the first call: a client never asked (MPI's)
 * keeps none. */
int par_remote_client_releases(par_remote_client *c, par_buf *out);
/* A reply's bytes, from the link's pump (or another thread). */
void par_remote_client_deliver(par_remote_client *c, const unsigned char *bytes, size_t len);

/* A proxy of an object at the owner. */
typedef struct par_remote_obj {
  par_object hdr;
  par_remote_client *client;
  uint64_t id;
  int kind;
} par_remote_obj;
extern const par_type par_remote_types[PR_KINDS];  /* "parallel.queue (remote)"... */
/* The kind of o when it is a par_remote_obj, else -1. */
int par_remote_kind(const par_object *o);

typedef struct par_remote_reply {
  int status;                /* PAR_*, PR_FAILED */
  int64_t value;
  par_remote_part *parts;    /* the caller frees them (par_remote_parts_free) */
  size_t nparts;
  char error[512];           /* PR_FAILED, or a broken link */
} par_remote_reply;

/* Whether the caller's wait must stop (an interrupt); then the request is
 * cancelled and its final reply awaited. */
typedef int (*par_remote_stop_fn)(void *ud);

/* A call that names no object (PR_CREATE) uses a par_remote_obj of id 0
 * on the stack, whose client and kind say where and what. */

/* Sends method on o with the given parts (taken over, even on failure) and
 * waits for the reply. 0 with *r filled (its status may be PAR_INTERRUPTED
 * when stop() said so and the owner cancelled), -1 with r->error when the
 * request could not be made or the link broke. */
int par_remote_call(par_remote_obj *o, int method, double timeout, int64_t arg,
                    par_remote_part *parts, size_t nparts, par_remote_reply *r,
                    par_remote_stop_fn stop, void *stop_ud);

#endif
