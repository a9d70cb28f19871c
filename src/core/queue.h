/*
 * MPMC queue of messages with an optional capacity, used by parallel.queue
 * and by both directions of a parallel.pipe.
 *
 * Threads: any number of producers and consumers, in any thread.
 * Locking: two mutexes, so that a producer and a consumer do not contend:
 * pushers hold tail_mu (the tail, their snapshot of the pops), poppers
 * head_mu (the head, their snapshot of the pushes); the ring's allocation
 * changes with both held (growing, unpop), and close takes both. The
 * counts of pushes and pops, the closed flag, the unfinished count and
 * the sleepers' counts are atomics (queue.c says who writes which);
 * task_done and join share done_mu.
 * Ownership: par_queue_push takes over the message only when it returns
 * PAR_OK; par_queue_pop hands one to the caller. Messages still queued when
 * the last reference goes are freed with par_msg_free.
 */
#ifndef PAR_QUEUE_H
#define PAR_QUEUE_H

#include <stddef.h>
#include "object.h"
#include "msg.h"

/* Opaque; its first member is the par_object header. */
typedef struct par_queue par_queue;

extern const par_type par_queue_type;   /* "parallel.queue" */

/* capacity 0: unbounded. NULL on out of memory. One reference to the caller. */
par_queue *par_queue_new(size_t capacity);
/* Deadlines are absolute (clock.h); 0 means do not wait at all, not even
 * spin or read the clock (the binding's fast path). */
/* PAR_OK, PAR_TIMEOUT (full until the deadline), PAR_CLOSED or PAR_NOMEM. */
int par_queue_push(par_queue *q, par_msg *m, double deadline);
/* PAR_OK (*out set), PAR_TIMEOUT, or PAR_CLOSED once closed and drained. */
int par_queue_pop(par_queue *q, par_msg **out, double deadline);
/* Batches: one lock and one wake-up per run of items instead of per item.
 * push_many queues ms[0..n-1] in order, waiting (until the deadline) only
 * while a bounded queue is full; it returns how many went in, the first
 * ones, with *status PAR_OK (all), PAR_TIMEOUT, PAR_CLOSED or PAR_NOMEM;
 * the rest stay the caller's. pop_many waits like pop for one item, then
 * takes every item there, up to max: a malloc'd array of *n messages
 * (the caller frees it and them), NULL with *status PAR_TIMEOUT,
 * PAR_CLOSED or PAR_NOMEM when it took none. */
size_t par_queue_push_many(par_queue *q, par_msg **ms, size_t n, double deadline, int *status);
par_msg **par_queue_pop_many(par_queue *q, size_t max, double deadline, size_t *n, int *status);
/* Puts m back at the front, as if it had never been popped (a pop whose
 * taker went away: wire/remote.c), past the capacity and a close if need
 * be. PAR_OK or PAR_NOMEM (m stays the caller's). */
int par_queue_unpop(par_queue *q, par_msg *m);
/* The same for a batch that was popped (a pop_many whose taker failed or
 * went away): ms[0] goes back to the head, the others behind it in order;
 * NULL entries are skipped (items the caller keeps or freed). All or none:
 * PAR_OK (the queue owns them) or PAR_NOMEM (they stay the caller's). */
int par_queue_unpop_all(par_queue *q, par_msg *const *ms, size_t n);
/* Wakes every waiter; pops drain what is left. Safe to repeat. */
void par_queue_close(par_queue *q);
int par_queue_closed(par_queue *q);
size_t par_queue_count(par_queue *q);
size_t par_queue_capacity(par_queue *q);
/* Waits until a pop would not block: PAR_OK (an item is there),
 * PAR_CLOSED (closed and drained) or PAR_TIMEOUT. Takes nothing. */
int par_queue_poll(par_queue *q, double deadline);
/* Marks one pushed item done; PAR_ERROR if every pushed item already is. */
int par_queue_task_done(par_queue *q);
/* Waits until every pushed item is marked done: PAR_OK or PAR_TIMEOUT. */
int par_queue_join(par_queue *q, double deadline);

#endif
