/*
 * Futures: the state machine of one task and the ways to wait for it.
 *
 * Threads: the submitting thread creates a future; one worker runs it;
 * any thread may wait on, cancel or drop it. `state` is atomic so that
 * done()/state() and the spinning phase of a wait need no lock, and so
 * that a waiter can park on it (park.h; `nwaiters` counts them). `mu`
 * guards result and the subscription list; the transition to a terminal
 * state happens under `mu` and wakes waiters and subscribers.
 * The task message is owned by the future until a worker claims it
 * (PENDING -> RUNNING, a CAS) or a cancel wins (PENDING -> CANCELLED).
 *
 * A waitset (par_waitset) serves as_completed/wait over many futures: each
 * future pushes itself onto the waitset's ready list as it finishes, so
 * waiting over n futures costs O(n), not O(n) per wake-up.
 */
/*
 * Groups: a group future stands for many (pool:map_async). It has no task
 * and no owner, and finishes, without a result of its own, when its last
 * member has and it has been sealed. A member holds a reference to its
 * group until it finishes (`group`, under the member's mu); the group holds
 * its members. Only the thread that made a group adds members, before
 * sealing it; afterwards the member list never changes.
 */
#ifndef PAR_FUTURE_H
#define PAR_FUTURE_H

#include <pthread.h>
#include "object.h"
#include "msg.h"

typedef enum {
  PAR_PENDING, PAR_RUNNING, PAR_DONE, PAR_FAILED, PAR_CANCELLED
} par_state;

typedef struct par_future par_future;
typedef struct par_waitset par_waitset;

/*
 * A future its runner holds without having claimed it (a process backend
 * sent it ahead to a worker that has not started it): a cancel first asks
 * recall, with f's mutex held, whether it can still be stopped from
 * starting. 1: it will never start (the cancel goes on); 0: it started.
 */
typedef struct par_recall par_recall;
struct par_recall { int (*recall)(par_recall *r); };
typedef struct par_sub par_sub;

/*
 * Who runs a future (a pool) learns its outcome through a sink, so that
 * futures know nothing of pools: count(owner, state) runs before anyone can
 * see the outcome; notice(owner, f, state) runs with f->mu held and must
 * store f->state (it may list f somewhere in the same critical section);
 * interrupt(owner, f) asks whoever runs f to stop it: 1 if it was running.
 */
typedef struct par_future_sink {
  void (*count)(par_object *owner, int state);
  void (*notice)(par_object *owner, par_future *f, int state);
  int (*interrupt)(par_object *owner, par_future *f);
  /* May be NULL. A thread about to sleep until f ends (par_future_wait)
   * first lets the owner finish f on it, when it can do so sooner than
   * by waking its own thread (pool.h: ops->help). */
  void (*help)(par_object *owner, par_future *f, double deadline);
} par_future_sink;

struct par_future {
  par_object hdr;
  _Atomic int state;
  int kind;                  /* what the binding runs (call, map chunk, ...) */
  pthread_mutex_t mu;
  _Atomic int nwaiters;      /* threads parked on state (park.h) */
  par_msg *task;             /* function and arguments */
  int segmented;             /* task had more segments to come (task->rest), set at creation */
  par_recall *recall;        /* held unclaimed by its runner (mu), or NULL */
  par_msg *result;           /* results, or the error and its traceback */
  par_sub *subs;
  par_object *owner;         /* retained: who runs it (a pool), or NULL */
  const par_future_sink *sink;   /* the owner's completion notices */
  par_future *next_done;     /* the owner's completed list (its mutex) */
  _Atomic int orphan;        /* no handle to it was ever given out */
  _Atomic int stop_asked;    /* an interrupt came while it ran: the worker
                                that makes it its current task after
                                (pool.c) interrupts it then */
  double timeout;            /* seconds a backend that can kill lets it run; 0: no limit */
  par_future *group;         /* the group this future is a member of (mu) */
  _Atomic long group_left;   /* a group: unfinished members, + 1 until sealed */
  _Atomic int group_state;   /* a group: PAR_DONE, or the worst member outcome */
  par_future **members;      /* a group: its members, retained, in item order */
  long *firsts;              /* a group: each member's first item index */
  size_t nmembers, capmembers;
  long nitems;               /* a group: set by seal */
  int sealed;                /* a group: seal was called */
};

/* The kind of a group future. */
#define PAR_KIND_GROUP (-1)

extern const par_type par_future_type;

par_future *par_future_new(int kind, par_msg *task);   /* takes the message */
int par_future_is_terminal(int state);
/* The first call makes owner (retained) the one told of f's outcome;
 * later calls change nothing. Returns the owner. */
par_object *par_future_adopt(par_future *f, par_object *owner, const par_future_sink *sink);
par_object *par_future_owner(const par_future *f);
/* Asks the owner to interrupt f if it is running: 1 if asked. */
int par_future_interrupt(par_future *f);
int par_future_state(const par_future *f);
/* The outcome message (results, or error and traceback) once terminal. */
const par_msg *par_future_result(const par_future *f);
int par_future_kind(const par_future *f);
/* The next future of an owner's completed list. */
par_future *par_future_next_done(const par_future *f);
/* An orphan: no handle to it was ever given out (left out of completed()). */
void par_future_mark_orphan(par_future *f);
int par_future_is_orphan(par_future *f);
/* The task message of a future this caller claimed, and taking it over. */
const par_msg *par_future_task(const par_future *f);
par_msg *par_future_take_task(par_future *f);
/* Claims a pending future for running: 1 if this caller now runs it. */
int par_future_claim(par_future *f);
/* Sets the outcome (DONE or FAILED) and wakes everyone; takes result. */
void par_future_finish(par_future *f, int state, par_msg *result);
/* 1 if the future was pending and is now cancelled. */
int par_future_cancel(par_future *f);
/* The runner holds pending f unclaimed (r), or no longer (NULL): 0 if f
 * is no longer pending (cancelled meanwhile). */
int par_future_hold(par_future *f, par_recall *r);
/* Frees f's task (under f's mutex): the runner's, once done with a future
 * it held unclaimed that is no longer pending (a cancel of a held future
 * leaves the task, which the runner may have been reading). */
void par_future_drop_task(par_future *f);
/* The runner takes back pending f it held (its recall says it will not
 * start where it was sent): 1, and f is no longer held; 0 if it started. */
int par_future_take_back(par_future *f);
/* Spins briefly, then sleeps until terminal or the deadline:
 * PAR_OK or PAR_TIMEOUT. */
int par_future_wait(par_future *f, double deadline);

/* A group (one reference, or NULL on out of memory). It finishes DONE when
 * every member is done, FAILED if one failed, else CANCELLED if one was
 * cancelled. par_future_cancel on a group cancels the members that have
 * not started; par_future_interrupt interrupts those running. */
par_future *par_future_group_new(void);
/* Adds a member whose items start at `first` (any state; a finished one
 * counts at once). 0 on out of memory (not added). */
int par_future_group_add(par_future *g, par_future *member, long first);
/* No more members (nitems items in all): the group can finish. Once. */
void par_future_group_seal(par_future *g, long nitems);
int par_future_group_sealed(const par_future *g);
size_t par_future_group_size(const par_future *g);
long par_future_group_items(const par_future *g);
/* Member i (0-based, in item order) and its first item index. */
par_future *par_future_group_member(const par_future *g, size_t i, long *first);

par_waitset *par_waitset_new(void);
int par_waitset_add(par_waitset *ws, par_future *f);   /* 0 on out of memory */
/* Next finished future (a new reference) or NULL with the status. */
par_future *par_waitset_next(par_waitset *ws, double deadline, int *status);
size_t par_waitset_pending(par_waitset *ws);           /* not yet returned by next */
void par_waitset_release(par_waitset *ws);

#endif
