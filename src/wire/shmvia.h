/*
 * The shared-memory via (wire/objects.h): arrays, values, locks, rlocks,
 * semaphores, conditions, events and barriers cross a connection as the
 * name of their block in the arena (core/shm.h); the receiver maps it, and
 * both processes then work on the same memory. No request ever goes to the
 * creator.
 *
 * Handle: type = the object's type name, owner/id = its par_shm_loc.
 *
 * Two kinds of connections:
 * - down (a pool to its worker process): every object sent is kept alive
 *   in the connection's set, so a worker never uses a block its creator
 *   freed, until the worker let go of every handle of it sent
 *   (par_shm_via_releases there, par_shm_via_release here: the set counts
 *   the handles sent, the worker those received, so none is in flight
 *   when the count reaches 0) or is gone (par_shm_via_gone). When the worker is
 *   gone, the locks in the set that it held are marked free, their holder
 *   dead (par_lock_recover): the next acquire gets them.
 *   A lock, rlock or condition the worker made and sent up is kept too,
 *   so that the same recovery frees it if the worker dies holding it
 *   (pinned: until the worker is gone).
 * - up (a worker process to its pool): an object the worker made is kept
 *   alive in the set, so its block is never freed and reused under the
 *   other side, until the pool let go of every handle of it sent (the
 *   same counting the other way: the pool lets go only once it has no
 *   wrapper left, and it keeps its wrapper while it relays the object to
 *   another worker) or the worker exits. After the exit, the block lives
 *   on in the processes that mapped it (a memfd lives while mapped), and
 *   the pool relays it to the other workers through its own descriptor
 *   (core/shm.h: par_shm_loc_relay).
 * A barrier with an action cannot cross (the action is a Lua function of
 * its creator's state).
 *
 * Threads: a via's set has its own mutex; the rest is core/shm.h's.
 */
#ifndef PAR_WIRE_SHMVIA_H
#define PAR_WIRE_SHMVIA_H

#include <stdint.h>
#include "core/msg.h"
#include "core/shm.h"
#include "wire/objects.h"

typedef struct par_shm_via par_shm_via;

/* up: 1 for a worker's connection to its pool. NULL on out of memory. */
par_shm_via *par_shm_via_new(int up);
/* Adds it to vias (first: see the notes in wire/objects.h). 0 or -1. */
int par_shm_via_attach(par_shm_via *v, par_wire_vias *vias);
/* The other side's pid (a down connection: its worker's, set at each
 * launch; up: the pool's): where blocks made by a third process are
 * relayed through this one. */
void par_shm_via_peer(par_shm_via *v, uint32_t pid);
/* The worker process pid is gone: frees the locks it held, then lets go
 * of everything sent to it. Safe to repeat; pid 0: only lets go. On an up
 * connection (the worker's end, as it exits) the objects it made are not
 * let go: their blocks stay as they are for the processes using them. */
void par_shm_via_gone(par_shm_via *v, uint32_t pid);
void par_shm_via_free(par_shm_via *v);
/* Whether a pool's connection to its worker carries o: 1 yes; 0 not one
 * of this via's types; -1 one of them that cannot cross (e says why). For
 * the check a submit makes before it queues a task. */
int par_shm_via_carries(par_object *o, par_wire_err *e);

/* The objects the other side made that this process imported and has
 * since dropped (no reference left here): appends (u64 owner, u64 id, u64
 * handles received) for each to out and forgets them. How many, or -1 on
 * out of memory. Cheap when no import was dropped since the last call. */
int par_shm_via_releases(par_shm_via *v, par_buf *out);
/* The other side let go of n handles of the block name names; the
 * object is let go once every handle sent is (unless pinned: a lock the
 * worker made, kept by the pool). */
void par_shm_via_release(par_shm_via *v, const par_shm_loc *name, uint64_t n);
/* Reads n records as par_shm_via_releases wrote them from p (len bytes
 * there) and lets each go (v NULL: only reads past them). The bytes read,
 * or -1 when fewer than n records are there (nothing let go). */
long par_shm_via_take_releases(par_shm_via *v, const unsigned char *p, size_t len, uint32_t n);

/* Objects kept alive for the other side (tests). */
size_t par_shm_via_kept(par_shm_via *v);

#endif
