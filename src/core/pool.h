/*
 * A pool of worker threads running futures.
 *
 * Threads: any thread submits; each worker thread takes futures from the
 * shared FIFO. `mu` guards the FIFO, `sleeping`, `closed` and the
 * completed list; each worker's `mu` guards its `current` future, so an
 * interrupt reaches only the task it was meant for. The counters are
 * atomics read by stats without the lock.
 *
 * Lock order: a future's mutex, then the pool's `mu` (a finishing future
 * lists itself for pool:completed()), or then a waitset's mutex. Nothing
 * takes a future's mutex while holding the pool's.
 *
 * The pool knows nothing of Lua: par_pool_ops, supplied by the binding,
 * opens a worker's state, runs one future in it and closes it. A worker
 * that finds nothing to do spins briefly when that pays (wait.h), then
 * parks on its own word and lists itself idle; a submit wakes one listed
 * worker, never all of them: the one that parked last on the submitter's
 * CPU if there is one, else the one that parked last. On a machine whose
 * CPUs are all busy, a wake-up that must preempt another process's thread
 * on another CPU cost about 57 us here against 3 us for a handoff on the
 * same CPU, and a worker is woken where it parked.
 *
 * A worker may replace its context after a task (ops->spent): it stops
 * the old one and starts a fresh one in the same thread, between tasks;
 * `ctx` changes under the worker's `mu`.
 *
 * Shutdown is explicit and safe to repeat: it closes the FIFO (optionally
 * cancelling what is queued), optionally interrupts running tasks, and
 * joins the threads. The last reference frees the pool, which must have
 * been shut down (the binding's owner handle does that).
 */
#ifndef PAR_POOL_H
#define PAR_POOL_H

#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include "object.h"
#include "future.h"

typedef struct par_pool par_pool;
typedef struct par_worker par_worker;

typedef struct par_pool_ops {
  /* In the new worker thread: returns the worker's context (NULL: the
   * worker failed to start; its tasks then fail via run with ctx NULL). */
  void *(*start)(void *ud, int index, _Atomic int *interrupted);
  /* Runs f (already claimed) and calls par_future_finish. */
  void (*run)(void *ctx, par_future *f);
  /* In a signal handler on the worker's own thread (see pool.c): make the
   * running task stop soon. Must be async-signal-safe: the Lua binding
   * only calls lua_sethook. */
  void (*interrupt)(void *ctx);
  /* In the worker thread after an interrupted task: undo what interrupt did. */
  void (*clear_interrupt)(void *ctx);
  /* Closes the context. The interrupt flag still stops waits in code it
   * runs (finalizers), but interrupt is no longer called. */
  void (*stop)(void *ctx);
  void (*free_ud)(void *ud);
  /* After start, interruptible like a task (shutdown's interrupt reaches
   * it): the user's set-up code. May be NULL. */
  void (*init)(void *ctx);
  /* Any thread, with the worker's `mu` held while f is its current task:
   * end f now, wherever it is (a process backend kills the process).
   * NULL: kill falls back to interrupt. */
  void (*kill)(void *ctx, par_future *f);
  /* In the worker thread after each task: nonzero when the context has
   * served its time (max_tasks_per_worker). The worker then stops it and
   * opens a fresh one (start, then init) before its next task. May be
   * NULL: a context lives as long as its worker. */
  int (*spent)(void *ctx);
  /* Handing a task over from the submitting thread (all three or none;
   * NULL for none). An idle worker thread parks through park: it sleeps
   * while *word == seq, returns when unpark(ctx) is called after the word
   * changed, and may return early (its caller looks again). A submit that
   * would wake a parked worker, with nothing queued ahead, instead claims
   * the task, makes it the worker's current one and calls offer(ctx, f) on
   * the submitting thread (the worker thread does not touch ctx
   * meanwhile): 1 if offer started f itself (a process backend sends it to
   * the worker process), so that the worker thread is not woken for it:
   * park must then return by itself once f needs the worker thread (its
   * outcome arrived, its process died), which runs it with run(ctx, f) as
   * usual; 0: the worker thread is woken and runs f (run as always; offer
   * may have begun it). unpark may be called
   * with the pool's mutex held. */
  void (*park)(void *ctx, _Atomic int *word, int seq);
  void (*unpark)(void *ctx);
  int (*offer)(void *ctx, par_future *f);
  /* Waiting for a task offer started (both or none; NULL for none): a
   * thread that is no pool worker, about to sleep until f ends while f's
   * worker thread stays parked, calls help(ctx, f, deadline, stop) to take
   * f's outcome itself, so that the outcome wakes one thread instead of
   * two in a row (the worker thread, then the waiter). The worker thread
   * does not touch ctx meanwhile: should it wake (a death, an interrupt,
   * a shutdown), it sets *stop and calls stop_help(ctx), after which help
   * soon returns. 1: f ended and nothing else of ctx needs the worker
   * thread; 0: the worker thread is woken and runs f as usual (run).
   * The par_pool_* calls a backend makes from offer and help (aborting,
   * take_ahead...) mean that worker, as from its own thread. */
  int (*help)(void *ctx, par_future *f, double deadline, _Atomic int *stop);
  void (*stop_help)(void *ctx);
} par_pool_ops;

struct par_worker {
  par_pool *pool;
  pthread_t thread;
  int index, started;
  void *ctx;
  pthread_mutex_t mu;
  par_future *current;
  int busy;                       /* in init or stop: shutdown interrupts it */
  volatile sig_atomic_t hookable; /* the signal handler may call interrupt */
  _Atomic int interrupted;
  _Atomic long long busy_ns;
  /* Idle: parked on park_word; listed (pool mu) while no wake-up is on
   * its way, with the CPU it parked on. */
  _Atomic int park_word;
  int listed, cpu;
  par_worker *next_idle;
  /* ops->park: parked through the backend (pool mu), with that ctx */
  int hooked;
  void *park_ctx;
  /* A task handed over by a submit (ops->offer; pool mu): handing while
   * the submitter still uses ctx; offered: offer started it; await: the
   * worker thread waits for the handing to end (the submitter wakes it). */
  par_future *handed;
  int handing, offered, await_handoff;
  /* A waiter runs that task's outcome (ops->help; pool mu): the worker
   * thread, woken, stops it and waits on help_done until it left. */
  int helped;
  double handed_at;               /* when the submit handed it over: its busy time */
  _Atomic int help_stop;
  pthread_cond_t help_done;
};

struct par_pool {
  par_object hdr;
  const par_pool_ops *ops;
  void *ud;
  pthread_mutex_t mu;
  par_future **fifo;
  size_t head, count, cap;
  _Atomic size_t queued;          /* = count, readable while spinning */
  int sleeping;                   /* parked, or woken and not yet back (mu) */
  par_worker *idle;               /* listed parked workers, latest first (mu) */
  int listed;                     /* how many (mu); sleeping - listed - handed: wake-ups on their way */
  int handed;                     /* workers with a task handed over, not taken yet (mu) */
  _Atomic int spinning;           /* idle workers spinning (wait.h) */
  _Atomic int closed;
  _Atomic int aborting;           /* shutdown interrupts whatever runs now or next */
  _Atomic int cancelling;         /* shutdown cancels what has not started */
  int joined;
  pthread_mutex_t join_mu;        /* serialises shutdowns */
  int nworkers;
  par_worker *workers;
  /* Each counter has one writer side and its own cache line; pending and
   * running are derived: pending = submitted - started - cancelled,
   * running = started - completed - failed. */
  _Alignas(64) _Atomic long long submitted;
  _Alignas(64) _Atomic long long started;
  _Alignas(64) _Atomic long long completed;
  _Atomic long long failed, cancelled;
  /* Completion notices for event loops (par_pool_fd). */
  _Atomic int notify_fd;          /* -1 until asked for */
  par_future *done_head, *done_tail;
};

extern const par_type par_pool_type;

/* Starts n workers; NULL on failure (no thread left behind; ud is not
 * freed: it still belongs to the caller). */
par_pool *par_pool_new(int n, const par_pool_ops *ops, void *ud);
/* The pool whose worker thread calls this, or NULL. */
par_pool *par_pool_self(void);
/* 1 when the calling thread is the worker whose current task is f: a
 * wait for f there would never end, f finishing only once its task
 * returns. (A process backend's worker thread serves its process's
 * requests: there f is the task that process runs.) */
int par_pool_runs_self(const par_future *f);
/* What such a wait says instead (the binding and the wire raise it). */
#define PAR_SELF_WAIT_MSG "a task cannot wait for its own future: it would wait forever"
/* PAR_OK, or PAR_CLOSED after shutdown (f is then not taken). */
int par_pool_submit(par_pool *p, par_future *f);
/* Called by one of p's own workers (a task shutting down its pool), it
 * neither waits (a thread cannot join itself: the owner's shutdown joins
 * later) nor interrupts the caller. */
void par_pool_shutdown(par_pool *p, int wait, int cancel, int interrupt);
int par_pool_is_shut_down(par_pool *p);
/* Kills f if it runs on p now (ops->kill, else an interrupt): 1 if it did. */
int par_pool_kill(par_pool *p, par_future *f);

/*
 * Tasks ahead, for a backend whose run keeps several tasks in flight (a
 * process backend sends the next ones while one runs). Only from inside
 * ops->run, on the worker's own thread:
 *   par_pool_take_ahead  the next queued future, not claimed (it stays
 *                        pending: the caller decides when it starts), or
 *                        NULL when none is queued, another worker idles
 *                        (the task is left for it), or `ok` refuses it.
 *                        The caller owns the reference it returns.
 *   par_pool_give_back   puts futures it took ahead, unstarted, back at
 *                        the head of the queue, in their order (a worker
 *                        that died had them); takes the references.
 *   par_pool_now_running f, claimed by the caller, is the worker's task now
 *                        (what kill and interrupt reach; counted started).
 *   par_pool_others_idle another worker waits for a task (the caller may
 *                        give back what it took ahead).
 *   par_pool_aborting    a shutdown interrupts what runs.
 *   par_pool_cancelling  a shutdown cancels what has not started.
 */
par_future *par_pool_take_ahead(int (*ok)(par_future *f));
void par_pool_give_back(par_future **fs, size_t n);
void par_pool_now_running(par_future *f);
void par_pool_count_started(void);   /* claimed and failed at once, not current */
int par_pool_aborting(void);
int par_pool_others_idle(void);      /* another worker waits for a task */
int par_pool_cancelling(void);

/* Counters for pool:stats(), read without a lock. */
typedef struct par_pool_stats {
  int workers, shutdown;
  long long submitted, started, completed, failed, cancelled;
} par_pool_stats;
void par_pool_get_stats(par_pool *p, par_pool_stats *out);
/* Seconds worker i has spent running tasks. */
double par_pool_busy_seconds(par_pool *p, int i);

/* Event-loop support: a descriptor readable when futures have finished,
 * and the list of those finished since the last call. */
int par_pool_fd(par_pool *p);
par_future *par_pool_take_completed(par_pool *p);   /* a list via next_done */

#endif
