/*
 * Locks, re-entrant locks, semaphores, conditions, events and barriers.
 *
 * Threads: any thread may use any object; every blocking call takes an
 * absolute deadline (clock.h) and returns PAR_OK or PAR_TIMEOUT, so the
 * binding can wait in slices and stay interruptible.
 * Locking: each object has its own mutex `mu` and condition variable `cv`.
 * - lock: `held` is an atomic taken by compare-and-swap, so an uncontended
 *   acquire/release never touches mu; mu/cv only park sleepers, counted in
 *   the atomic `sleepers` (a release signals only when someone sleeps).
 * - rlock: a lock core plus `owner` (a thread id) and `count`, which only
 *   the owning thread writes.
 * - semaphore (value, bound, sleepers), event (flag), barrier (count,
 *   broken, acting, waiter list), condition (waiter list): fields guarded
 *   by the object's mu.
 * - barrier: waiters are nodes owned by the waiting call (on its stack);
 *   the round's end (opening, abort, reset) unlinks them under mu and sets
 *   their outcome. With an action, the last arrival runs it (in its own
 *   Lua state) while the barrier is `acting`, then ends the round.
 * - condition: waiters are nodes owned by the waiting call (on its stack);
 *   notify unlinks them under mu and marks them notified.
 * Ownership: a condition holds a reference to its lock; a barrier owns its
 * encoded action. No object frees anything but itself.
 */
#ifndef PAR_SYNC_H
#define PAR_SYNC_H

#include <pthread.h>
#include <stdint.h>
#include "object.h"
#include "msg.h"

/* A per-thread identifier, never 0. */
uintptr_t par_thread_id(void);

typedef struct par_lockcore {
  atomic_int held;
  atomic_int sleepers;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} par_lockcore;

typedef struct par_lock {
  par_object hdr;
  par_lockcore core;
} par_lock;

typedef struct par_rlock {
  par_object hdr;
  par_lockcore core;
  atomic_uintptr_t owner;   /* 0: free */
  long count;               /* written by the owner only */
} par_rlock;

typedef struct par_semaphore {
  par_object hdr;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long value;
  long bound;               /* LONG_MAX unless bounded */
  int sleepers;
} par_semaphore;

typedef struct par_event {
  par_object hdr;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int flag;
} par_event;

/* outcome: -1 while waiting, then PAR_OK (opened) or PAR_ERROR (broken). */
typedef struct par_barrier_waiter {
  struct par_barrier_waiter *next;
  int outcome;
} par_barrier_waiter;

typedef struct par_barrier {
  par_object hdr;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long parties, count;
  int broken, acting;
  par_barrier_waiter *waiters;
  par_msg *action;          /* the encoded action, or NULL */
} par_barrier;

typedef struct par_cond_waiter {
  struct par_cond_waiter *prev, *next;
  int listed, notified;
} par_cond_waiter;

typedef struct par_condition {
  par_object hdr;
  par_object *lock;         /* a par_lock or a par_rlock */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  par_cond_waiter *head, *tail;
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
