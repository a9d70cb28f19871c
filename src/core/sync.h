/*
 * Locks, re-entrant locks, semaphores, conditions, events and barriers.
 *
 * Threads and processes: any thread may use any object, and so may the
 * threads of other processes that mapped it: each object's state lives in
 * a block of the shared-memory arena (shm.h); the object here is a small
 * local header pointing at it (`s`). Every blocking call takes an absolute
 * deadline (clock.h) and returns PAR_OK or PAR_TIMEOUT, so the binding can
 * wait in slices and stay interruptible. Sleeping is on futexes in the
 * block (shared, not private), so no process can die holding what a
 * sleeper needs to wake up.
 * - lock: `held` is 0 (free), the holder's pid, or PAR_LOCK_DIED (free,
 *   and its holder's process died holding it: the next acquire says so,
 *   PAR_OWNER_DIED), with PAR_LOCK_WAITERS when a thread may sleep on it
 *   (a release wakes one only then). Taken by compare-and-swap, so an
 *   uncontended acquire/release is one atomic each; `sleepers` counts the
 *   threads in the slow path (sync.c's lock core says how they wait).
 * - rlock: a lock core plus `owner` (a thread id) and `count`, which only
 *   the owning thread writes; owned = held by this process and owner is
 *   this thread.
 * - semaphore: `value` by compare-and-swap; sleepers wait on `seq`, which
 *   every release bumps.
 * - event: sleepers wait on `flag`.
 * - barrier, condition: `mu`, a robust process-shared mutex (a process that
 *   dies inside it leaves it consistent, recovered by the next locker),
 *   guards the fields; sleepers wait on a sequence word (barrier: `gen`,
 *   one per round's end; condition: `notified`, the first ticket not yet
 *   notified: a waiter takes ticket `enlisted++`, notify(n) moves
 *   `notified` past n tickets still waiting, skipping the ones that gave
 *   up, which `withdrawn` marks in a window of 256 tickets).
 * Ownership: a condition holds a reference to its lock; a barrier owns its
 * encoded action. No object frees anything but itself.
 */
#ifndef PAR_SYNC_H
#define PAR_SYNC_H

#include <pthread.h>
#include <stdint.h>
#include "object.h"
#include "msg.h"
#include "shm.h"

/* A per-thread identifier, never 0. */
uintptr_t par_thread_id(void);

/* Marks in a lock's word besides the holder's pid (below 2^22). */
#define PAR_LOCK_DIED 0x7fffffffu
#define PAR_LOCK_WAITERS 0x80000000u

/* A lock's status besides PAR_OK / PAR_TIMEOUT: acquired, and the process
 * that held it before died holding it. */
#define PAR_OWNER_DIED 6

typedef struct par_lockcore {
  _Atomic uint32_t held;
  _Atomic uint32_t sleepers;
} par_lockcore;

typedef struct par_rlockstate {
  par_lockcore core;
  _Atomic uint64_t owner;   /* 0: free */
  long count;               /* written by the owner only */
} par_rlockstate;

typedef struct par_lock {
  par_object hdr;
  par_lockcore *core;
  par_shm_block blk;
} par_lock;

typedef struct par_rlock {
  par_object hdr;
  par_rlockstate *s;
  par_shm_block blk;
} par_rlock;

typedef struct par_semstate {
  _Atomic long value;
  long bound;               /* LONG_MAX unless bounded */
  _Atomic uint32_t seq;
  _Atomic uint32_t sleepers;
} par_semstate;

typedef struct par_semaphore {
  par_object hdr;
  par_semstate *s;
  par_shm_block blk;
} par_semaphore;

typedef struct par_eventstate {
  _Atomic uint32_t flag;
  _Atomic uint32_t sleepers;
} par_eventstate;

typedef struct par_event {
  par_object hdr;
  par_eventstate *s;
  par_shm_block blk;
} par_event;

#define PAR_BARRIER_RING 8

typedef struct par_barrierstate {
  pthread_mutex_t mu;
  _Atomic uint32_t gen;     /* rounds ended */
  long parties, count;
  int broken, acting;
  int outcome[PAR_BARRIER_RING];   /* of the round that made gen = g: [g % RING] */
} par_barrierstate;

/* gen: the round it waits on; outcome once known. */
typedef struct par_barrier_waiter {
  uint32_t gen;
  int outcome;
} par_barrier_waiter;

typedef struct par_barrier {
  par_object hdr;
  long parties;
  par_msg *action;          /* the encoded action, or NULL */
  par_barrierstate *s;
  par_shm_block blk;
} par_barrier;

typedef struct par_cond_waiter {
  uint32_t ticket;
} par_cond_waiter;

#define PAR_COND_WINDOW 256

typedef struct par_condstate {
  pthread_mutex_t mu;
  _Atomic uint32_t notified;
  uint32_t enlisted;
  uint64_t withdrawn[PAR_COND_WINDOW / 64];
} par_condstate;

typedef struct par_condition {
  par_object hdr;
  par_object *lock;         /* a par_lock or a par_rlock */
  par_condstate *s;
  par_shm_block blk;
} par_condition;

extern const par_type par_lock_type;       /* "parallel.lock" */
extern const par_type par_rlock_type;      /* "parallel.rlock" */
extern const par_type par_semaphore_type;  /* "parallel.semaphore" */
extern const par_type par_condition_type;  /* "parallel.condition" */
extern const par_type par_event_type;      /* "parallel.event" */
extern const par_type par_barrier_type;    /* "parallel.barrier" */

/* Constructors return one reference, or NULL on out of memory. */
par_lock *par_lock_new(void);
int par_lock_try(par_lock *l);                       /* 1 if acquired */
/* PAR_OK, PAR_OWNER_DIED (acquired, see above) or PAR_TIMEOUT. */
int par_lock_acquire(par_lock *l, double deadline);
int par_lock_release(par_lock *l);                   /* PAR_ERROR if not held */
int par_lock_locked(par_lock *l);

par_rlock *par_rlock_new(void);
int par_rlock_acquire(par_rlock *r, double deadline);
int par_rlock_release(par_rlock *r);   /* PAR_ERROR unless held by this thread */
int par_rlock_owned(par_rlock *r);     /* held by this thread */
int par_rlock_locked(par_rlock *r);
/* For condition waits: drop every level (returns the depth, 0 if not
 * owned), then take the lock back at that depth. */
long par_rlock_release_all(par_rlock *r);
int par_rlock_restore(par_rlock *r, long depth, double deadline);

/* Whether a lock or rlock is held by process pid; if so, marks it free
 * with PAR_LOCK_DIED and wakes a sleeper (the pool does this for the locks
 * a dead worker process could reach). Returns 1 if it did. */
int par_lock_recover(par_object *lock, uint32_t pid);

/* The objects another process's block names (shm.h): this process's own
 * object when loc is one of ours, else a new one over the mapped state.
 * One reference; NULL with err filled. A condition brings its lock along. */
par_object *par_sync_import(const par_type *type, const par_shm_loc *loc, char *err, size_t errsize);
/* The block an object of these types lives in, or NULL if o is not one. */
const par_shm_block *par_sync_block(par_object *o);

/* bound: the greatest value release may reach (LONG_MAX: unbounded). */
par_semaphore *par_semaphore_new(long value, long bound);
int par_semaphore_acquire(par_semaphore *s, double deadline);
/* PAR_ERROR when the value would pass the bound (nothing released). */
int par_semaphore_release(par_semaphore *s, long k);
long par_semaphore_value(par_semaphore *s);
long par_semaphore_bound(par_semaphore *s);

par_event *par_event_new(void);
void par_event_set(par_event *e);
void par_event_clear(par_event *e);
int par_event_is_set(par_event *e);
int par_event_wait(par_event *e, double deadline);

/* Takes the action message (NULL: none). */
par_barrier *par_barrier_new(long parties, par_msg *action);
/*
 * Arrives: *index is this thread's arrival index (1..parties). PAR_OK;
 * PAR_ERROR if the barrier is broken; PAR_TIMEOUT if the last round's
 * action still runs at the deadline (nothing done: arrive again). Every
 * arrival but the last enlists w and then waits on it. The last opens the
 * barrier, unless there is an action: it then runs the action and calls
 * par_barrier_end_round.
 */
int par_barrier_arrive(par_barrier *b, par_barrier_waiter *w, long *index, double deadline);
/* PAR_OK (opened), PAR_ERROR (broken), or PAR_TIMEOUT. */
int par_barrier_wait(par_barrier *b, par_barrier_waiter *w, double deadline);
/* Gives up waiting: PAR_TIMEOUT if it withdrew, else the outcome. */
int par_barrier_withdraw(par_barrier *b, par_barrier_waiter *w);
/* After the action: opens the barrier (ok) or breaks it. */
void par_barrier_end_round(par_barrier *b, int ok);
/* Breaks the barrier; its waiters get PAR_ERROR. */
void par_barrier_abort(par_barrier *b);
/* Back to empty and unbroken; current waiters get PAR_ERROR. */
void par_barrier_reset(par_barrier *b);
int par_barrier_broken(par_barrier *b);
long par_barrier_waiting(par_barrier *b);   /* parties waiting now */

/* lock: a par_lock or par_rlock, retained. */
par_condition *par_condition_new(par_object *lock);
void par_condition_enlist(par_condition *c, par_cond_waiter *w);
int par_condition_wait(par_condition *c, par_cond_waiter *w, double deadline);
/* Unlinks w if still waiting; returns 1 if it was notified. */
int par_condition_delist(par_condition *c, par_cond_waiter *w);
/* Wakes up to n waiters (n < 0: all), oldest first. */
void par_condition_notify(par_condition *c, long n);

#endif
