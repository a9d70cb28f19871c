#define _GNU_SOURCE
#include "pool.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "park.h"
#include "wait.h"

/*
 * Interrupting a running task. The binding's interrupt (lua_sethook) may
 * only run on the thread that runs the state, or in a signal handler on
 * that thread: Lua makes lua_sethook safe against the thread it
 * interrupts, not against a concurrent one (it walks the thread's call
 * frames). So the interrupter marks the worker and sends it
 * PAR_INTERRUPT_SIGNAL; the handler, on the worker, installs the hook.
 * Workers block every other signal; the handler chains to a previous
 * handler for threads that are not workers.
 */
#ifndef PAR_INTERRUPT_SIGNAL
#define PAR_INTERRUPT_SIGNAL SIGURG
#endif

/* initial-exec: a dlopen'd module's dynamic TLS is allocated at a thread's first use,
 * and glibc aborts the process when that fails (a pool started under
 * ulimit -v) */
static _Thread_local par_worker *this_worker __attribute__((tls_model("initial-exec")));
/* The worker whose ctx this thread runs backend code for: this_worker, or
 * the one a waiter helps (pool_help). The par_pool_* calls of backends
 * (take_ahead, aborting...) mean it; the signal handler and
 * par_pool_self mean this_worker only: a helping thread is not a worker
 * (a process-directed SIGURG it receives is not for that worker). */
static _Thread_local par_worker *acting_worker __attribute__((tls_model("initial-exec")));
static struct sigaction previous_action;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static pthread_t handler_thread;     /* the thread that installed the handler */

/* Whether a handler was there before this one (a process pool's worker
 * program installs one for its tasks; SIGURG is ignored by default). */
static int chained(void) {
  if (previous_action.sa_flags & SA_SIGINFO) return previous_action.sa_sigaction != NULL;
  return previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN;
}

static void on_interrupt_signal(int sig, siginfo_t *info, void *uctx) {
  par_worker *w = this_worker;
  if (w && info->si_code != SI_TKILL && chained() && !pthread_equal(pthread_self(), handler_thread)) {
    /* Not this pool's (its interrupts are pthread_kill's): a signal sent
     * to the process, which the kernel gave to a worker because it does
     * not block it -- a process pool's worker asked to stop its task,
     * whose own handler this one replaced. It goes to the thread that
     * had that handler, its value (the task's number) kept. */
    if (info->si_code == SI_QUEUE) pthread_sigqueue(handler_thread, sig, info->si_value);
    else pthread_kill(handler_thread, sig);
  } else if (w) {
    if (w->hookable && atomic_load(&w->interrupted) && w->ctx) w->pool->ops->interrupt(w->ctx);
  } else if (previous_action.sa_flags & SA_SIGINFO) {
    if (previous_action.sa_sigaction) previous_action.sa_sigaction(sig, info, uctx);
  } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
  }
}

static void install_handler(void) {
  struct sigaction sa;
  handler_thread = pthread_self();
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_interrupt_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  sigaction(PAR_INTERRUPT_SIGNAL, &sa, &previous_action);
}

static void pool_destroy(par_object *o) {
  par_pool *p = (par_pool *)o;
  int i;
  par_pool_shutdown(p, 1, 1, 1);
  for (i = 0; i < p->nworkers; i++) {
    pthread_mutex_destroy(&p->workers[i].mu);
    pthread_cond_destroy(&p->workers[i].help_done);
  }
  free(p->workers);
  free(p->fifo);
  while (p->done_head) {
    par_future *f = p->done_head;
    p->done_head = f->next_done;
    par_object_release(&f->hdr);
  }
  if (p->notify_fd >= 0) close(p->notify_fd);
  if (p->ops->free_ud && p->ud) p->ops->free_ud(p->ud);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->join_mu);
  free(p);
}

const par_type par_pool_type = { "parallel.pool", pool_destroy };

static int has_work(void *ud) {
  par_pool *p = (par_pool *)ud;
  return atomic_load_explicit(&p->queued, memory_order_relaxed) > 0 ||
         atomic_load_explicit(&p->closed, memory_order_relaxed);
}

/* Takes the next future, or NULL when the pool is closed and drained. An
 * idle worker spins first when the policy (wait.h) says it pays: the next
 * task of a submit loop then costs no wake-up. */
/* The task at the head of the queue, taken off it (p->mu held, count > 0). */
static par_future *pop_head(par_pool *p) {
  par_future *f = p->fifo[p->head];
  p->head = (p->head + 1) % p->cap;
  p->count--;
  atomic_store_explicit(&p->queued, p->count, memory_order_relaxed);
  return f;
}

/* Takes w off the idle list (p->mu held). */
static void unlist(par_pool *p, par_worker *w) {
  par_worker **at = &p->idle;
  while (*at != w) at = &(*at)->next_idle;
  *at = w->next_idle;
  w->listed = 0;
  p->listed--;
}

/* With p->mu held: w goes on the idle list, with the CPU it parks on. */
static void list_idle(par_pool *p, par_worker *w) {
  w->cpu = sched_getcpu();
  w->next_idle = p->idle;
  p->idle = w;
  w->listed = 1;
  p->listed++;
}

/* With p->mu held, w's word bumped: a worker parked through the backend
 * is woken now (its ctx is valid while the mutex holds it in take); 1 if
 * so, 0: wake it with par_park_wake after unlocking. */
static int wake_hooked(par_pool *p, par_worker *w) {
  if (!w->hooked) return 0;
  p->ops->unpark(w->park_ctx);
  return 1;
}

/* With p->mu held: the idle worker to wake for one task, taken off the
 * list with its word bumped (wake it after unlocking), or NULL. See
 * pool.h: the latest to park on this CPU, else the latest. */
static par_worker *pick_idle(par_pool *p) {
  par_worker *w = p->idle, *pick = p->idle;
  int cpu = p->listed > 1 ? sched_getcpu() : -1, looked = 0;
  for (; cpu >= 0 && w && looked < 8; w = w->next_idle, looked++)
    if (w->cpu == cpu) { pick = w; break; }
  if (pick) {
    unlist(p, pick);
    atomic_fetch_add(&pick->park_word, 1);
  }
  return pick;
}

/* With p->mu held: every listed worker is to wake (wake_all_after). */
static void unlist_all(par_pool *p) {
  while (p->idle) {
    par_worker *w = p->idle;
    atomic_fetch_add(&w->park_word, 1);
    unlist(p, w);
    wake_hooked(p, w);
  }
}

/* After unlist_all, p->mu let go: each word bumped is woken; a worker
 * woken for nothing looks again and parks again. */
static void wake_all_after(par_pool *p) {
  int i;
  for (i = 0; i < p->nworkers; i++) par_park_wake(&p->workers[i].park_word, 0);
}

static par_future *take(par_worker *w, int *offered) {
  par_pool *p = w->pool;
  par_future *f = NULL;
  int spun = 0;
  *offered = 0;
  if (!has_work(p)) {
    /* a submit that a spinner will see needs no wake-up (par_pool_submit) */
    atomic_fetch_add(&p->spinning, 1);
    par_spin(PAR_WAIT_POOL, has_work, p, PAR_FOREVER);
    spun = 1;
  }
  pthread_mutex_lock(&p->mu);
  if (spun) atomic_fetch_sub(&p->spinning, 1);
  for (;;) {
    /* read under mu: whoever unlists this worker bumps it before waking */
    int seq = atomic_load(&w->park_word);
    if (w->handed && !w->handing) {
      f = w->handed;
      w->handed = NULL;
      p->handed--;
      *offered = w->offered;
      w->await_handoff = 0;
      break;
    }
    if (!w->handed) {
      if (p->count > 0) {
        f = pop_head(p);
        break;
      }
      if (atomic_load(&p->closed)) break;
      list_idle(p, w);
    } else {
      w->await_handoff = 1;     /* the submitter still hands it over */
    }
    w->hooked = p->ops->park && w->ctx;
    w->park_ctx = w->ctx;
    p->sleeping++;
    pthread_mutex_unlock(&p->mu);
    if (w->hooked) p->ops->park(w->ctx, &w->park_word, seq);
    else par_park_wait(&w->park_word, seq, PAR_FOREVER);
    pthread_mutex_lock(&p->mu);
    p->sleeping--;
    w->hooked = 0;
    if (w->listed) unlist(p, w);   /* back without a wake-up */
    while (w->helped) {            /* a waiter has ctx (pool_help): it is ours again */
      atomic_store(&w->help_stop, 1);
      p->ops->stop_help(w->ctx);
      pthread_cond_wait(&w->help_done, &p->mu);
    }
  }
  pthread_mutex_unlock(&p->mu);
  return f;
}

/* Marks the worker busy outside a task (init, stop) so that a shutdown that
 * interrupts reaches it, and interrupts at once if one already began. */
static void set_busy(par_worker *w, int busy) {
  pthread_mutex_lock(&w->mu);
  w->busy = busy;
  pthread_mutex_unlock(&w->mu);
}

/* After w->current or w->busy is set: a shutdown that interrupted before
 * could not see this work, so the worker interrupts itself. */
static void catch_abort(par_worker *w) {
  if (atomic_load(&w->pool->aborting) && !atomic_exchange(&w->interrupted, 1) && w->hookable)
    w->pool->ops->interrupt(w->ctx);
}

static void end_interrupt(par_worker *w) {
  if (atomic_exchange(&w->interrupted, 0) && w->ctx) w->pool->ops->clear_interrupt(w->ctx);
}

static void set_ctx(par_worker *w, void *ctx) {
  pthread_mutex_lock(&w->mu);
  w->ctx = ctx;
  pthread_mutex_unlock(&w->mu);
  /* the signal handler, on this thread, reads ctx once hookable says so */
  atomic_signal_fence(memory_order_seq_cst);
  w->hookable = ctx != NULL;
}

/* Opens the worker's context and runs the user's init in it. */
static void open_ctx(par_worker *w) {
  par_pool *p = w->pool;
  set_ctx(w, p->ops->start(p->ud, w->index, &w->interrupted));
  if (w->ctx && p->ops->init) {
    set_busy(w, 1);
    catch_abort(w);
    p->ops->init(w->ctx);
    set_busy(w, 0);
    end_interrupt(w);
  }
}

static void close_ctx(par_worker *w) {
  par_pool *p = w->pool;
  if (!w->ctx) return;
  /* Closing runs finalizers: their waits stop on the flag alone, since
   * the state may be freed under a late signal. */
  w->hookable = 0;
  atomic_signal_fence(memory_order_seq_cst);
  set_busy(w, 1);
  if (atomic_load(&p->aborting)) atomic_store(&w->interrupted, 1);
  p->ops->stop(w->ctx);
  set_busy(w, 0);
  atomic_store(&w->interrupted, 0);
  set_ctx(w, NULL);
}

/* A context that has served its time is replaced by a fresh one, unless
 * no task can come any more: the pool is closed (no submit gets in) and
 * drained. */
static void recycle(par_worker *w) {
  par_pool *p = w->pool;
  close_ctx(w);
  if (atomic_load(&p->closed) && atomic_load(&p->queued) == 0) return;
  open_ctx(w);
}

static void interrupt_worker(par_worker *w, par_future *only);

/* Makes f w's current task (kill and interrupt reach it from now on). An
 * interrupt between f's claim and this found no worker running f: it is
 * kept on f (stop_asked) and delivered here. */
static void make_current(par_worker *w, par_future *f) {
  pthread_mutex_lock(&w->mu);
  w->current = f;
  pthread_mutex_unlock(&w->mu);
  if (atomic_load(&f->stop_asked)) interrupt_worker(w, f);
}

static void *worker_main(void *arg) {
  par_worker *w = (par_worker *)arg;
  par_pool *p = w->pool;
  par_future *f;
  sigset_t interrupt_only;
  int offered;
  par_wait_thread_begin();
  this_worker = acting_worker = w;
  sigemptyset(&interrupt_only);
  sigaddset(&interrupt_only, PAR_INTERRUPT_SIGNAL);
  pthread_sigmask(SIG_UNBLOCK, &interrupt_only, NULL);
  open_ctx(w);
  while ((f = take(w, &offered)) != NULL) {
    double t0;
    if (offered < 0) {               /* handed over, but cancelled first */
      par_object_release(&f->hdr);
      continue;
    }
    if (offered == 0) {              /* from the queue */
      if (!par_future_claim(f)) {    /* cancelled while queued */
        par_object_release(&f->hdr);
        continue;
      }
      atomic_fetch_add_explicit(&p->started, 1, memory_order_relaxed);
    }
    /* (a task handed over is claimed and current already: hand_over) */
    make_current(w, f);
    if (w->ctx) catch_abort(w);
    /* a task handed over runs from then (offer may have started it, a
     * waiter may have helped it before giving it back) */
    t0 = offered > 0 ? w->handed_at : par_now();
    p->ops->run(w->ctx, f);
    atomic_fetch_add(&w->busy_ns, (long long)((par_now() - t0) * 1e9));
    pthread_mutex_lock(&w->mu);
    w->current = NULL;
    pthread_mutex_unlock(&w->mu);
    end_interrupt(w);
    par_object_release(&f->hdr);
    if (w->ctx && p->ops->spent && p->ops->spent(w->ctx)) recycle(w);
  }
  close_ctx(w);
  pthread_sigmask(SIG_BLOCK, &interrupt_only, NULL);
  this_worker = acting_worker = NULL;
  par_wait_thread_end();
  return NULL;
}

par_pool *par_pool_self(void) {
  return this_worker ? this_worker->pool : NULL;
}

int par_pool_runs_self(const par_future *f) {
  par_worker *w = this_worker;
  int self;
  if (!w || !f) return 0;
  pthread_mutex_lock(&w->mu);
  self = w->current == f;
  pthread_mutex_unlock(&w->mu);
  return self;
}

par_pool *par_pool_new(int n, const par_pool_ops *ops, void *ud) {
  par_pool *p = calloc(1, sizeof *p);
  sigset_t all, old;
  int i;
  if (!p) return NULL;
  par_object_init(&p->hdr, &par_pool_type);
  p->ops = ops;
  p->ud = ud;
  p->notify_fd = -1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->join_mu, NULL);
  p->workers = calloc((size_t)n, sizeof *p->workers);
  p->cap = 64;
  p->fifo = malloc(p->cap * sizeof *p->fifo);
  if (!p->workers || !p->fifo) {
    free(p->workers); free(p->fifo);
    pthread_mutex_destroy(&p->mu); pthread_mutex_destroy(&p->join_mu);
    free(p);
    return NULL;
  }
  pthread_once(&handler_once, install_handler);
  /* Workers block every signal (but the interrupt, see worker_main) so that
   * Ctrl-C reaches the main thread. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (i = 0; i < n; i++) {
    par_worker *w = &p->workers[i];
    w->pool = p;
    w->index = i;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->help_done, NULL);
    p->nworkers = i + 1;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) break;
    w->started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!p->workers[n - 1].started) {
    /* The workers that did start read p->ud (their ops->start): join them
     * before handing ud back. Clearing it first crashed them (a NULL
     * config) whenever a later thread could not be created. */
    par_pool_shutdown(p, 1, 1, 1);
    p->ud = NULL;                  /* the caller's again */
    par_object_release(&p->hdr);
    return NULL;
  }
  return p;
}

static void pool_count(par_object *owner, int state);
static void pool_notice_done(par_object *owner, par_future *f, int state);
static int pool_interrupt(par_object *owner, par_future *f);
static void pool_help(par_object *owner, par_future *f, double deadline);

/* What a future submitted here tells its pool (future.h); with help when
 * the backend can (ops->help). */
static const par_future_sink pool_sink = { pool_count, pool_notice_done, pool_interrupt, NULL };
static const par_future_sink helped_sink = { pool_count, pool_notice_done, pool_interrupt,
                                             pool_help };

/* A submit hands f over to w, parked through the backend and taken off
 * the idle list (w->handing: its thread waits in take, ctx is ours): f
 * is claimed and made w's current task here, so that a cancel can no
 * longer take it back and kill and interrupt reach it, then ops->offer
 * may start it from this thread. w's thread is woken only if offer did
 * not start it, or it already waits for the hand-over to end; else the
 * backend's park returns when f needs it. */
static void hand_over(par_pool *p, par_worker *w, void *ctx, par_future *f) {
  int state = -1, wake;
  if (par_future_claim(f)) {
    atomic_fetch_add_explicit(&p->started, 1, memory_order_relaxed);
    make_current(w, f);
    par_worker *was = acting_worker;   /* a submit from a task of another pool */
    acting_worker = w;
    state = p->ops->offer(ctx, f) ? 2 : 1;
    acting_worker = was;
  }
  pthread_mutex_lock(&p->mu);
  w->offered = state;
  w->handing = 0;
  wake = state != 2 || w->await_handoff;
  if (wake) {
    atomic_fetch_add(&w->park_word, 1);
    if (!wake_hooked(p, w)) wake = 2;
  }
  pthread_mutex_unlock(&p->mu);
  if (wake == 2) par_park_wake(&w->park_word, 0);
}

int par_pool_submit(par_pool *p, par_future *f) {
  par_worker *woke = NULL;
  int wake;
  pthread_mutex_lock(&p->mu);
  if (atomic_load(&p->closed)) {
    pthread_mutex_unlock(&p->mu);
    return PAR_CLOSED;
  }
  if (p->count == p->cap) {
    size_t cap = p->cap * 2, i;
    par_future **q = malloc(cap * sizeof *q);
    if (!q) { pthread_mutex_unlock(&p->mu); return PAR_NOMEM; }
    for (i = 0; i < p->count; i++) q[i] = p->fifo[(p->head + i) % p->cap];
    free(p->fifo);
    p->fifo = q;
    p->cap = cap;
    p->head = 0;
  }
  par_future_adopt(f, &p->hdr, p->ops->help ? &helped_sink : &pool_sink);
  p->fifo[(p->head + p->count) % p->cap] = (par_future *)par_object_retain(&f->hdr);
  p->count++;
  atomic_store_explicit(&p->queued, p->count, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed);
  /* A spinner decrements `spinning` under mu before it looks at count: one
   * counted here will take a task without being woken; so will a worker
   * already woken (sleeping - listed: it stays counted in `sleeping` until
   * it has the mutex again, and a submit loop must not make a system call
   * a task for it). */
  wake = p->listed > 0 &&
         p->count > (size_t)atomic_load(&p->spinning) +
                    (size_t)(p->sleeping - p->listed - p->handed);
  if (wake) woke = pick_idle(p);
  if (woke && woke->hooked && p->ops->offer && p->count == 1) {
    /* nothing ahead of it: handed over to that worker (hand_over) */
    p->count = 0;
    p->head = (p->head + 1) % p->cap;
    atomic_store_explicit(&p->queued, 0, memory_order_relaxed);
    void *ctx = woke->park_ctx;   /* read under mu: the worker thread writes it */
    woke->handed = f;
    woke->handed_at = par_now();
    woke->handing = 1;
    p->handed++;
    pthread_mutex_unlock(&p->mu);
    hand_over(p, woke, ctx, f);
    return PAR_OK;
  }
  if (woke && wake_hooked(p, woke)) woke = NULL;
  pthread_mutex_unlock(&p->mu);
  /* after unlocking: the woken worker does not run into the held mutex */
  if (woke) par_park_wake(&woke->park_word, 0);
  return PAR_OK;
}

/* A thread about to sleep until f ends (future.h: sink help): when f was
 * handed over and started by the backend's offer and its worker thread
 * still sleeps in park, the backend takes f's outcome on this thread
 * (pool.h: ops->help), then the worker is idle again without having
 * woken: listed, or woken for tasks queued meanwhile. Pool workers do not
 * help (acting_worker names the one whose ctx the backend uses). */
static void pool_help(par_object *owner, par_future *f, double deadline) {
  par_pool *p = (par_pool *)owner;
  par_worker *w = NULL;
  void *ctx;
  int i, done, stopped, wake = 0;
  /* a wait that cannot sleep (f:wait(0)) would only give f back at once */
  if (this_worker || atomic_load(&f->state) != PAR_RUNNING || deadline <= par_now()) return;
  pthread_mutex_lock(&p->mu);
  for (i = 0; i < p->nworkers && !w; i++) {
    par_worker *c = &p->workers[i];
    if (c->handed == f && !c->handing && c->offered == 2 && c->hooked && !c->helped) w = c;
  }
  if (!w) { pthread_mutex_unlock(&p->mu); return; }
  w->helped = 1;
  atomic_store(&w->help_stop, 0);
  ctx = w->park_ctx;
  pthread_mutex_unlock(&p->mu);
  acting_worker = w;     /* what the backend asks of the pool (aborting...) means w */
  done = p->ops->help(ctx, f, deadline, &w->help_stop);
  acting_worker = NULL;  /* no worker helps (this_worker is NULL) */
  pthread_mutex_lock(&p->mu);
  w->helped = 0;
  stopped = atomic_load(&w->help_stop);
  if (done) {
    w->handed = NULL;
    p->handed--;
    w->offered = w->await_handoff = 0;
    atomic_fetch_add(&w->busy_ns, (long long)((par_now() - w->handed_at) * 1e9));
    pthread_mutex_lock(&w->mu);
    w->current = NULL;
    pthread_mutex_unlock(&w->mu);
    end_interrupt(w);
  }
  if (stopped) {
    pthread_cond_signal(&w->help_done);   /* awake: it looks again itself */
  } else if (done && p->count == 0 && !atomic_load(&p->closed)) {
    list_idle(p, w);                      /* idle again, still parked */
  } else {                                /* f, or tasks queued meanwhile, or the end */
    atomic_fetch_add(&w->park_word, 1);
    wake = !wake_hooked(p, w);
  }
  pthread_mutex_unlock(&p->mu);
  if (wake) par_park_wake(&w->park_word, 0);
  if (done) par_object_release(&f->hdr);  /* the reference the worker would drop */
}

/* Interrupts the task `only` if w runs it; with only NULL, whatever w runs
 * (a task, init, or the finalizers of its closing state). */
static void interrupt_worker(par_worker *w, par_future *only) {
  pthread_mutex_lock(&w->mu);
  if (only ? w->current == only : (w->current || w->busy)) {
    if (!atomic_exchange(&w->interrupted, 1)) pthread_kill(w->thread, PAR_INTERRUPT_SIGNAL);
  }
  pthread_mutex_unlock(&w->mu);
}

static int pool_interrupt(par_object *owner, par_future *f) {
  par_pool *p = (par_pool *)owner;
  int i;
  if (atomic_load(&f->state) != PAR_RUNNING) return 0;
  /* before looking for its worker: one that takes f after looks here */
  atomic_store(&f->stop_asked, 1);
  for (i = 0; i < p->nworkers; i++) interrupt_worker(&p->workers[i], f);
  return 1;
}

int par_pool_kill(par_pool *p, par_future *f) {
  int i, found = 0;
  if (!p->ops->kill) return pool_interrupt(&p->hdr, f);
  if (atomic_load(&f->state) != PAR_RUNNING) return 0;
  for (i = 0; i < p->nworkers; i++) {
    par_worker *w = &p->workers[i];
    pthread_mutex_lock(&w->mu);
    if (w->current == f && w->ctx) { p->ops->kill(w->ctx, f); found = 1; }
    pthread_mutex_unlock(&w->mu);
  }
  return found;
}

void par_pool_shutdown(par_pool *p, int wait, int cancel, int interrupt) {
  par_future **drop = NULL;
  size_t ndrop = 0, i;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->closed, 1);
  /* aborting before cancelling: a worker that sees the cancel of a
   * terminate() sees its interrupt too (a process pool's I/O thread treats
   * the two differently). */
  if (interrupt) atomic_store(&p->aborting, 1);
  if (cancel) atomic_store(&p->cancelling, 1);
  if (cancel && p->count) {
    drop = malloc(p->count * sizeof *drop);
    if (drop) {
      for (i = 0; i < p->count; i++) drop[i] = p->fifo[(p->head + i) % p->cap];
      ndrop = p->count;
      p->count = 0;
      p->head = 0;
      atomic_store(&p->queued, 0);
    }
  }
  unlist_all(p);
  /* A worker waiting, parked, for the outcome of a task handed over looks
   * at the shutdown now (a cancel fails that task if its process has not
   * started it: an init that never ends) */
  for (i = 0; i < (size_t)p->nworkers; i++) {
    par_worker *w = &p->workers[i];
    if (w->handed && !w->handing) {
      atomic_fetch_add(&w->park_word, 1);
      wake_hooked(p, w);
    }
  }
  pthread_mutex_unlock(&p->mu);
  wake_all_after(p);
  for (i = 0; i < ndrop; i++) {
    par_future_cancel(drop[i]);
    par_object_release(&drop[i]->hdr);
  }
  free(drop);
  if (interrupt) {
    for (i = 0; i < (size_t)p->nworkers; i++)
      if (p->workers[i].started && &p->workers[i] != this_worker)
        interrupt_worker(&p->workers[i], NULL);
  }
  if (wait && par_pool_self() != p) {
    pthread_mutex_lock(&p->join_mu);
    if (!p->joined) {
      for (i = 0; i < (size_t)p->nworkers; i++)
        if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
      p->joined = 1;
    }
    pthread_mutex_unlock(&p->join_mu);
  }
}

par_future *par_pool_take_ahead(int (*ok)(par_future *f)) {
  par_worker *w = acting_worker;
  par_pool *p;
  par_future *f = NULL;
  if (!w || !has_work(w->pool)) return NULL;
  p = w->pool;
  pthread_mutex_lock(&p->mu);
  if (p->count > 0 && p->sleeping == p->handed && atomic_load(&p->spinning) == 0 &&
      (!ok || ok(p->fifo[p->head]))) {
    f = pop_head(p);
  }
  pthread_mutex_unlock(&p->mu);
  return f;
}

void par_pool_give_back(par_future **fs, size_t n) {
  par_worker *w = acting_worker;
  par_pool *p;
  size_t i;
  int wake;
  if (!w || n == 0) return;
  p = w->pool;
  pthread_mutex_lock(&p->mu);
  while (p->count + n > p->cap) {
    size_t cap = p->cap * 2;
    par_future **q = malloc(cap * sizeof *q);
    if (!q) break;
    for (i = 0; i < p->count; i++) q[i] = p->fifo[(p->head + i) % p->cap];
    free(p->fifo);
    p->fifo = q;
    p->cap = cap;
    p->head = 0;
  }
  for (i = n; i-- > 0;) {
    if (p->count == p->cap) {            /* no memory to grow: it cannot run */
      pthread_mutex_unlock(&p->mu);
      par_future_cancel(fs[i]);
      par_object_release(&fs[i]->hdr);
      pthread_mutex_lock(&p->mu);
      continue;
    }
    p->head = (p->head + p->cap - 1) % p->cap;
    p->fifo[p->head] = fs[i];
    p->count++;
  }
  atomic_store_explicit(&p->queued, p->count, memory_order_relaxed);
  wake = p->listed > 0;
  unlist_all(p);
  pthread_mutex_unlock(&p->mu);
  if (wake) wake_all_after(p);
}

void par_pool_now_running(par_future *f) {
  par_worker *w = acting_worker;
  if (!w) return;
  atomic_fetch_add_explicit(&w->pool->started, 1, memory_order_relaxed);
  pthread_mutex_lock(&w->mu);
  w->current = f;
  /* an interrupt meant for the task before is spent */
  atomic_store(&w->interrupted, 0);
  pthread_mutex_unlock(&w->mu);
  if (atomic_load(&f->stop_asked)) interrupt_worker(w, f);
  catch_abort(w);
}

void par_pool_count_started(void) {
  if (acting_worker) atomic_fetch_add_explicit(&acting_worker->pool->started, 1, memory_order_relaxed);
}

int par_pool_others_idle(void) {
  par_pool *p;
  int idle;
  if (!acting_worker) return 0;
  p = acting_worker->pool;
  pthread_mutex_lock(&p->mu);
  idle = p->sleeping > p->handed || atomic_load(&p->spinning) > 0;
  pthread_mutex_unlock(&p->mu);
  return idle;
}

int par_pool_aborting(void) {
  return acting_worker && atomic_load(&acting_worker->pool->aborting);
}

int par_pool_cancelling(void) {
  return acting_worker && atomic_load(&acting_worker->pool->cancelling);
}

static void pool_count(par_object *owner, int state) {
  par_pool *p = (par_pool *)owner;
  switch (state) {
    case PAR_DONE: atomic_fetch_add(&p->completed, 1); break;
    case PAR_FAILED: atomic_fetch_add(&p->failed, 1); break;
    case PAR_CANCELLED: atomic_fetch_add(&p->cancelled, 1); break;
    default: break;
  }
}

/* With f's mutex held: stores the outcome, and lists f for pool:completed()
 * in the same critical section, so no one sees the one without the other. */
static void pool_notice_done(par_object *owner, par_future *f, int state) {
  par_pool *p = (par_pool *)owner;
  uint64_t one = 1;
  if (atomic_load(&p->notify_fd) < 0) {
    atomic_store(&f->state, state);
    return;
  }
  pthread_mutex_lock(&p->mu);
  if (atomic_load(&p->notify_fd) >= 0) {
    par_object_retain(&f->hdr);
    f->next_done = NULL;
    if (p->done_tail) p->done_tail->next_done = f;
    else p->done_head = f;
    p->done_tail = f;
    /* under the mutex: a drained descriptor never turns readable again
     * with nothing listed */
    if (write(p->notify_fd, &one, sizeof one) < 0) { /* counter full: already readable */ }
  }
  atomic_store(&f->state, state);
  pthread_mutex_unlock(&p->mu);
}

int par_pool_is_shut_down(par_pool *p) { return atomic_load(&p->closed); }

void par_pool_get_stats(par_pool *p, par_pool_stats *out) {
  /* done before started before submitted: no negative differences */
  out->workers = p->nworkers;
  out->shutdown = atomic_load(&p->closed);
  out->completed = atomic_load(&p->completed);
  out->failed = atomic_load(&p->failed);
  out->cancelled = atomic_load(&p->cancelled);
  out->started = atomic_load(&p->started);
  out->submitted = atomic_load(&p->submitted);
}

double par_pool_busy_seconds(par_pool *p, int i) {
  return (double)atomic_load(&p->workers[i].busy_ns) * 1e-9;
}

int par_pool_fd(par_pool *p) {
  pthread_mutex_lock(&p->mu);
  if (atomic_load(&p->notify_fd) < 0) atomic_store(&p->notify_fd, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  pthread_mutex_unlock(&p->mu);
  return atomic_load(&p->notify_fd);
}

par_future *par_pool_take_completed(par_pool *p) {
  par_future *list;
  uint64_t n;
  ssize_t r;
  pthread_mutex_lock(&p->mu);
  list = p->done_head;
  p->done_head = p->done_tail = NULL;
  if (p->notify_fd >= 0) r = read(p->notify_fd, &n, sizeof n);
  pthread_mutex_unlock(&p->mu);
  (void)r;
  return list;
}
