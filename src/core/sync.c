#define _GNU_SOURCE
#include "sync.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include "clock.h"
#include "park.h"
#include "wait.h"

uintptr_t par_thread_id(void) {
  static _Thread_local char id __attribute__((tls_model("initial-exec")));
  return (uintptr_t)&id;
}

/* A robust process-shared mutex for the short sections of barriers and
 * conditions: one whose holder died is taken over as it is (the fields it
 * guards are updated so that any prefix of a section leaves them usable). */
static void shmu_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

static void shmu_lock(pthread_mutex_t *m) {
  if (pthread_mutex_lock(m) == EOWNERDEAD) pthread_mutex_consistent(m);
}

static void shmu_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

/* The holder's mark in a lock's word: this process. */
static uint32_t me(void) { return (uint32_t)par_shm_self(); }

/* ---- lock core ----
 *
 * The word `held` is 0 (free), PAR_LOCK_DIED (free, its holder died), or
 * a holder's pid, each possibly with PAR_LOCK_WAITERS: a thread may sleep
 * on the word, so whoever clears the bit wakes one (Drepper's "Futexes Are
 * Tricky", mutex 3, with the owner in the word for par_lock_recover).
 *  - A sleeper sets the bit on the holder's word, then sleeps while the
 *    word is still that value. The release clears the whole word, so its
 *    value changes even when the same process takes it again at once (its
 *    pid comes back; the word is pid|bit again only if it was taken
 *    through the slow path, with the bit, and then that release wakes).
 *    No generation word is needed: the bit is the ABA's missing half.
 *  - Wake-once: a release wakes only if the bit is set, and clears it, so
 *    the releases that follow while the woken thread is on its way (the
 *    releaser takes the lock back through the fast path, without the bit)
 *    make no system call. The old word kept a sleeper count beside the
 *    owner and woke whenever it was nonzero: with two threads always
 *    contending, nearly every release made a FUTEX_WAKE (0.77-0.9 futex
 *    calls per locked operation, issue 12).
 *  - The woken thread inherits the duty to the others: it takes the lock
 *    with the bit if other threads are in the slow path (`sleepers`,
 *    counted before they look at the word), or sets the bit on the holder
 *    before it sleeps again or leaves on a timeout. Mutex 3 always takes
 *    with the bit, one wasted FUTEX_WAKE per hand-over; the count says
 *    when the bit is needed. It is seq_cst: a sleeper's count comes before
 *    its bit, the bit before the release that cleared it, that release
 *    before the woken thread's read of the word, and that before its read
 *    of the count, so the count it reads includes every thread asleep.
 *  - A thread that gives up (timeout) owes nothing: it set the bit since
 *    it was last woken (the futex wait says "woken", not "timed out", when
 *    a wake-up reached it, so none is lost), and it takes a free lock.
 * A holder's pid is below 2^22 (PID_MAX_LIMIT), clear of both marks. */

#define WAITERS PAR_LOCK_WAITERS

static int is_free(uint32_t h) {
  h &= ~WAITERS;
  return h == 0 || h == PAR_LOCK_DIED;
}

static int core_try(par_lockcore *c) {
  uint32_t expected = 0;
  return atomic_load_explicit(&c->held, memory_order_relaxed) == 0 &&
         atomic_compare_exchange_strong(&c->held, &expected, me());
}

static int core_free(void *ud) {
  return is_free(atomic_load_explicit(&((par_lockcore *)ud)->held, memory_order_relaxed));
}

/* Takes a free lock, dead holder's or not, with `mark` (0 or WAITERS):
 * PAR_OK, PAR_OWNER_DIED, or PAR_TIMEOUT (held: *seen is the word). A
 * thread in the slow path passes mark < 0: the bit if others are in it. */
static int core_take(par_lockcore *c, int mark, uint32_t *seen) {
  uint32_t h = atomic_load(&c->held);
  while (is_free(h)) {
    uint32_t was = h, bit = mark > 0 || (mark < 0 && atomic_load(&c->sleepers) > 1) ? WAITERS : 0;
    if (atomic_compare_exchange_strong(&c->held, &h, me() | bit))
      return (was & ~WAITERS) == 0 ? PAR_OK : PAR_OWNER_DIED;
  }
  *seen = h;
  return PAR_TIMEOUT;
}

/* A futex wait that came back sooner than a sleep and a wake-up can take
 * found the word changed as it went in: the holder released. If it has the
 * lock again by the time we look, it runs and takes it back faster than
 * we can get to sleep; we step aside for BACKOFF instead of marking the
 * word again at once (each mark costs it a FUTEX_WAKE that finds no one,
 * and us a wait that does not sleep: about half of the futex calls of two
 * threads contending, up to 0.4 per operation, before). */
#define QUICK 2e-6
#define BACKOFF 50e-6

/* The slow path: sleeps on the word with the waiters bit set. */
static int core_sleep(par_lockcore *c, double deadline) {
  uint32_t h;
  double t0;
  int r, quick = 0;
  for (;;) {
    if ((r = core_take(c, -1, &h)) != PAR_TIMEOUT) return r;
    if (quick) {
      double until = par_now() + BACKOFF;
      par_sleep_until(until < deadline ? until : deadline);
      quick = 0;
      continue;
    }
    if (!(h & WAITERS) && !atomic_compare_exchange_strong(&c->held, &h, h | WAITERS)) continue;
    t0 = par_now();
    if (par_futex_wait(&c->held, h | WAITERS, ~0u, deadline) == PAR_TIMEOUT) break;
    quick = par_now() - t0 < QUICK;
  }
  return core_take(c, -1, &h);
}

static int core_acquire(par_lockcore *c, double deadline) {
  int r, round;
  uint32_t seen;
  if (core_try(c)) return PAR_OK;
  /* Spin (when the policy of wait.h says it pays) until the lock looks
   * free, then race for it; a few lost races, and we sleep. */
  for (round = 0; round < 4 && par_spin(PAR_WAIT_LOCK, core_free, c, deadline); round++)
    if ((r = core_take(c, 0, &seen)) != PAR_TIMEOUT) return r;
  atomic_fetch_add(&c->sleepers, 1);
  r = core_sleep(c, deadline);
  atomic_fetch_sub(&c->sleepers, 1);
  return r;
}

static int core_release(par_lockcore *c) {
  uint32_t h = atomic_load(&c->held);
  do {
    if (is_free(h)) return PAR_ERROR;
  } while (!atomic_compare_exchange_weak(&c->held, &h, 0));
  if (h & WAITERS) par_futex_wake(&c->held, 1, ~0u);
  return PAR_OK;
}

static int core_locked(par_lockcore *c) { return !core_free(c); }

static int core_recover(par_lockcore *c, uint32_t pid) {
  uint32_t h = atomic_load(&c->held);
  do {
    if (!pid || (h & ~WAITERS) != pid) return 0;
  } while (!atomic_compare_exchange_weak(&c->held, &h, PAR_LOCK_DIED | (h & WAITERS)));
  if (h & WAITERS) par_futex_wake(&c->held, 1, ~0u);
  return 1;
}

/* ---- lock ---- */

static void lock_destroy(par_object *o) {
  par_lock *l = (par_lock *)o;
  par_shm_block_drop(&l->blk, o);
  free(l);
}

const par_type par_lock_type = {"parallel.lock", lock_destroy};

par_lock *par_lock_new(void) {
  par_lock *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  par_object_init(&l->hdr, &par_lock_type);
  l->core = par_shm_block_new(&l->blk, sizeof *l->core, PAR_SHM_K_LOCK, &l->hdr);
  if (!l->core) { free(l); return NULL; }
  return l;
}

int par_lock_try(par_lock *l) { return core_try(l->core); }
int par_lock_acquire(par_lock *l, double deadline) { return core_acquire(l->core, deadline); }
int par_lock_release(par_lock *l) { return core_release(l->core); }
int par_lock_locked(par_lock *l) { return core_locked(l->core); }

/* ---- rlock ---- */

static void rlock_destroy(par_object *o) {
  par_rlock *r = (par_rlock *)o;
  par_shm_block_drop(&r->blk, o);
  free(r);
}

const par_type par_rlock_type = {"parallel.rlock", rlock_destroy};

par_rlock *par_rlock_new(void) {
  par_rlock *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  par_object_init(&r->hdr, &par_rlock_type);
  r->s = par_shm_block_new(&r->blk, sizeof *r->s, PAR_SHM_K_RLOCK, &r->hdr);
  if (!r->s) { free(r); return NULL; }
  return r;
}

int par_rlock_owned(par_rlock *r) {
  return atomic_load_explicit(&r->s->owner, memory_order_relaxed) == par_thread_id() &&
         (atomic_load_explicit(&r->s->core.held, memory_order_relaxed) & ~WAITERS) == me();
}

int par_rlock_locked(par_rlock *r) { return core_locked(&r->s->core); }

int par_rlock_restore(par_rlock *r, long depth, double deadline) {
  int st = core_acquire(&r->s->core, deadline);
  if (st == PAR_TIMEOUT) return PAR_TIMEOUT;
  atomic_store_explicit(&r->s->owner, par_thread_id(), memory_order_relaxed);
  r->s->count = depth;
  return st;
}

int par_rlock_acquire(par_rlock *r, double deadline) {
  if (par_rlock_owned(r)) {
    r->s->count++;
    return PAR_OK;
  }
  return par_rlock_restore(r, 1, deadline);
}

int par_rlock_release(par_rlock *r) {
  if (!par_rlock_owned(r)) return PAR_ERROR;
  if (--r->s->count == 0) {
    atomic_store_explicit(&r->s->owner, 0, memory_order_relaxed);
    core_release(&r->s->core);
  }
  return PAR_OK;
}

long par_rlock_release_all(par_rlock *r) {
  long depth;
  if (!par_rlock_owned(r)) return 0;
  depth = r->s->count;
  r->s->count = 0;
  atomic_store_explicit(&r->s->owner, 0, memory_order_relaxed);
  core_release(&r->s->core);
  return depth;
}

int par_lock_recover(par_object *o, uint32_t pid) {
  if (o->type == &par_lock_type) return core_recover(((par_lock *)o)->core, pid);
  if (o->type == &par_rlock_type) return core_recover(&((par_rlock *)o)->s->core, pid);
  return 0;
}

/* ---- semaphore ---- */

static void semaphore_destroy(par_object *o) {
  par_semaphore *s = (par_semaphore *)o;
  par_shm_block_drop(&s->blk, o);
  free(s);
}

const par_type par_semaphore_type = {"parallel.semaphore", semaphore_destroy};

par_semaphore *par_semaphore_new(long value, long bound) {
  par_semaphore *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  par_object_init(&s->hdr, &par_semaphore_type);
  s->s = par_shm_block_new(&s->blk, sizeof *s->s, PAR_SHM_K_SEMAPHORE, &s->hdr);
  if (!s->s) { free(s); return NULL; }
  atomic_init(&s->s->value, value);
  s->s->bound = bound;
  return s;
}

static int sem_take(par_semstate *s) {
  long v = atomic_load(&s->value);
  while (v > 0)
    if (atomic_compare_exchange_weak(&s->value, &v, v - 1)) return 1;
  return 0;
}

int par_semaphore_acquire(par_semaphore *sem, double deadline) {
  par_semstate *s = sem->s;
  int r = PAR_OK;
  if (sem_take(s)) return PAR_OK;
  atomic_fetch_add(&s->sleepers, 1);
  for (;;) {
    uint32_t seq = atomic_load(&s->seq);
    if (sem_take(s)) break;
    if (par_futex_wait(&s->seq, seq, ~0u, deadline) == PAR_TIMEOUT) {
      r = sem_take(s) ? PAR_OK : PAR_TIMEOUT;
      break;
    }
  }
  atomic_fetch_sub(&s->sleepers, 1);
  return r;
}

int par_semaphore_release(par_semaphore *sem, long k) {
  par_semstate *s = sem->s;
  long v = atomic_load(&s->value);
  do {
    if (k > s->bound - v) return PAR_ERROR;
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + k));
  atomic_fetch_add(&s->seq, 1);
  if (atomic_load(&s->sleepers) > 0)
    par_futex_wake(&s->seq, k >= INT_MAX ? INT_MAX : (int)k, ~0u);
  return PAR_OK;
}

long par_semaphore_bound(par_semaphore *s) { return s->s->bound; }
long par_semaphore_value(par_semaphore *s) { return atomic_load(&s->s->value); }

/* ---- event ---- */

static void event_destroy(par_object *o) {
  par_event *e = (par_event *)o;
  par_shm_block_drop(&e->blk, o);
  free(e);
}

const par_type par_event_type = {"parallel.event", event_destroy};

par_event *par_event_new(void) {
  par_event *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  par_object_init(&e->hdr, &par_event_type);
  e->s = par_shm_block_new(&e->blk, sizeof *e->s, PAR_SHM_K_EVENT, &e->hdr);
  if (!e->s) { free(e); return NULL; }
  return e;
}

void par_event_set(par_event *e) {
  atomic_store(&e->s->flag, 1);
  if (atomic_load(&e->s->sleepers) > 0) par_futex_wake(&e->s->flag, INT_MAX, ~0u);
}

void par_event_clear(par_event *e) { atomic_store(&e->s->flag, 0); }

int par_event_is_set(par_event *e) { return atomic_load(&e->s->flag) != 0; }

int par_event_wait(par_event *e, double deadline) {
  int r = PAR_OK;
  if (atomic_load(&e->s->flag)) return PAR_OK;
  atomic_fetch_add(&e->s->sleepers, 1);
  while (!atomic_load(&e->s->flag))
    if (par_futex_wait(&e->s->flag, 0, ~0u, deadline) == PAR_TIMEOUT) {
      r = atomic_load(&e->s->flag) ? PAR_OK : PAR_TIMEOUT;
      break;
    }
  atomic_fetch_sub(&e->s->sleepers, 1);
  return r;
}

/* ---- barrier ---- */

static void barrier_destroy(par_object *o) {
  par_barrier *b = (par_barrier *)o;
  par_msg_free(b->action);
  par_shm_block_drop(&b->blk, o);
  free(b);
}

const par_type par_barrier_type = {"parallel.barrier", barrier_destroy};

par_barrier *par_barrier_new(long parties, par_msg *action) {
  par_barrier *b = calloc(1, sizeof *b);
  if (!b) { par_msg_free(action); return NULL; }
  par_object_init(&b->hdr, &par_barrier_type);
  b->s = par_shm_block_new(&b->blk, sizeof *b->s, PAR_SHM_K_BARRIER, &b->hdr);
  if (!b->s) { par_msg_free(action); free(b); return NULL; }
  shmu_init(&b->s->mu);
  b->s->parties = b->parties = parties;
  b->action = action;
  return b;
}

/* Ends the round for every waiter (mu held). */
static void end_waiters(par_barrierstate *s, int outcome) {
  uint32_t g = atomic_load(&s->gen) + 1;
  s->outcome[g % PAR_BARRIER_RING] = outcome;
  s->count = 0;
  atomic_store(&s->gen, g);
  par_futex_wake(&s->gen, INT_MAX, ~0u);
}

int par_barrier_arrive(par_barrier *b, par_barrier_waiter *w, long *index, double deadline) {
  par_barrierstate *s = b->s;
  int r = PAR_OK;
  shmu_lock(&s->mu);
  while (s->acting && !s->broken) {
    uint32_t g = atomic_load(&s->gen);
    shmu_unlock(&s->mu);
    r = par_futex_wait(&s->gen, g, ~0u, deadline);
    shmu_lock(&s->mu);
    if (r == PAR_TIMEOUT) break;
  }
  r = PAR_OK;
  if (s->broken) r = PAR_ERROR;
  else if (s->acting) r = PAR_TIMEOUT;
  else {
    *index = ++s->count;
    w->gen = atomic_load(&s->gen);
    w->outcome = -1;
    if (s->count < s->parties) {
      /* waits for the round to end */
    } else if (b->action) {
      s->acting = 1;
    } else {
      end_waiters(s, PAR_OK);
    }
  }
  shmu_unlock(&s->mu);
  return r;
}

/* The outcome of w's round if it ended (mu held), else -1. */
static int round_outcome(par_barrierstate *s, par_barrier_waiter *w) {
  uint32_t g = atomic_load(&s->gen);
  if (g == w->gen) return -1;
  /* rounds end only with every party in: more than one cannot pass
   * while w waits, unless aborts and resets: the first is w's. */
  return s->outcome[(w->gen + 1) % PAR_BARRIER_RING];
}

int par_barrier_wait(par_barrier *b, par_barrier_waiter *w, double deadline) {
  par_barrierstate *s = b->s;
  for (;;) {
    uint32_t g = atomic_load(&s->gen);
    if (g != w->gen) break;
    if (par_futex_wait(&s->gen, g, ~0u, deadline) == PAR_TIMEOUT) break;
  }
  shmu_lock(&s->mu);
  w->outcome = round_outcome(s, w);
  shmu_unlock(&s->mu);
  return w->outcome < 0 ? PAR_TIMEOUT : w->outcome;
}

int par_barrier_withdraw(par_barrier *b, par_barrier_waiter *w) {
  par_barrierstate *s = b->s;
  int r;
  shmu_lock(&s->mu);
  r = round_outcome(s, w);
  if (r < 0) {
    s->count--;
    r = PAR_TIMEOUT;
  }
  shmu_unlock(&s->mu);
  return r;
}

void par_barrier_end_round(par_barrier *b, int ok) {
  par_barrierstate *s = b->s;
  shmu_lock(&s->mu);
  s->acting = 0;
  if (!ok) s->broken = 1;
  end_waiters(s, s->broken ? PAR_ERROR : PAR_OK);
  shmu_unlock(&s->mu);
}

void par_barrier_abort(par_barrier *b) {
  par_barrierstate *s = b->s;
  shmu_lock(&s->mu);
  s->broken = 1;
  end_waiters(s, PAR_ERROR);
  shmu_unlock(&s->mu);
}

void par_barrier_reset(par_barrier *b) {
  par_barrierstate *s = b->s;
  shmu_lock(&s->mu);
  end_waiters(s, PAR_ERROR);
  s->broken = 0;
  shmu_unlock(&s->mu);
}

long par_barrier_waiting(par_barrier *b) {
  par_barrierstate *s = b->s;
  long n;
  shmu_lock(&s->mu);
  n = s->acting ? s->count - 1 : s->count;
  shmu_unlock(&s->mu);
  return n;
}

int par_barrier_broken(par_barrier *b) {
  par_barrierstate *s = b->s;
  int r;
  shmu_lock(&s->mu);
  r = s->broken;
  shmu_unlock(&s->mu);
  return r;
}

/* ---- condition ---- */

static void condition_destroy(par_object *o) {
  par_condition *c = (par_condition *)o;
  par_object_release(c->lock);
  par_shm_block_drop(&c->blk, o);
  free(c);
}

const par_type par_condition_type = {"parallel.condition", condition_destroy};

const par_shm_block *par_sync_block(par_object *o);

par_condition *par_condition_new(par_object *lock) {
  par_condition *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  par_object_init(&c->hdr, &par_condition_type);
  c->s = par_shm_block_new(&c->blk, sizeof *c->s, PAR_SHM_K_CONDITION, &c->hdr);
  if (!c->s) { free(c); return NULL; }
  shmu_init(&c->s->mu);
  c->lock = par_object_retain(lock);
  c->blk.hdr->ref = par_sync_block(lock)->loc;
  c->blk.hdr->a = lock->type == &par_lock_type ? PAR_SHM_K_LOCK : PAR_SHM_K_RLOCK;
  return c;
}

static int is_notified(par_condstate *s, uint32_t ticket) {
  return (int32_t)(atomic_load(&s->notified) - ticket) > 0;
}

static uint32_t ticket_bit(uint32_t t) { return 1u << (t % 32); }

void par_condition_enlist(par_condition *c, par_cond_waiter *w) {
  shmu_lock(&c->s->mu);
  w->ticket = c->s->enlisted++;
  shmu_unlock(&c->s->mu);
}

int par_condition_wait(par_condition *c, par_cond_waiter *w, double deadline) {
  par_condstate *s = c->s;
  for (;;) {
    uint32_t n = atomic_load(&s->notified);
    if ((int32_t)(n - w->ticket) > 0) return PAR_OK;
    if (par_futex_wait(&s->notified, n, ticket_bit(w->ticket), deadline) == PAR_TIMEOUT)
      return is_notified(s, w->ticket) ? PAR_OK : PAR_TIMEOUT;
  }
}

int par_condition_delist(par_condition *c, par_cond_waiter *w) {
  par_condstate *s = c->s;
  int notified;
  shmu_lock(&s->mu);
  notified = is_notified(s, w->ticket);
  if (!notified && w->ticket - atomic_load(&s->notified) < PAR_COND_WINDOW) {
    uint32_t i = w->ticket % PAR_COND_WINDOW;
    s->withdrawn[i / 64] |= (uint64_t)1 << (i % 64);
  }
  shmu_unlock(&s->mu);
  return notified;
}

void par_condition_notify(par_condition *c, long n) {
  par_condstate *s = c->s;
  uint32_t bits = 0, t;
  shmu_lock(&s->mu);
  t = atomic_load(&s->notified);
  while (t != s->enlisted && n != 0) {
    uint32_t i = t % PAR_COND_WINDOW;
    uint64_t m = (uint64_t)1 << (i % 64);
    if (s->withdrawn[i / 64] & m) {
      s->withdrawn[i / 64] &= ~m;
    } else {
      bits |= ticket_bit(t);
      if (n > 0) n--;
    }
    t++;
  }
  atomic_store(&s->notified, t);
  shmu_unlock(&s->mu);
  if (bits) par_futex_wake(&s->notified, INT_MAX, bits);
}

/* ---- across processes ---- */

const par_shm_block *par_sync_block(par_object *o) {
  if (o->type == &par_lock_type) return &((par_lock *)o)->blk;
  if (o->type == &par_rlock_type) return &((par_rlock *)o)->blk;
  if (o->type == &par_semaphore_type) return &((par_semaphore *)o)->blk;
  if (o->type == &par_event_type) return &((par_event *)o)->blk;
  if (o->type == &par_barrier_type) return &((par_barrier *)o)->blk;
  if (o->type == &par_condition_type) return &((par_condition *)o)->blk;
  return NULL;
}

par_object *par_sync_import(const par_type *type, const par_shm_loc *loc, char *err, size_t errsize) {
  par_object *o = par_shm_lookup(loc);
  par_shm_block *b = NULL;
  void **state = NULL;
  size_t size;
  uint32_t kind;
  if (o) {
    if (o->type == type) return o;
    par_object_release(o);
    snprintf(err, errsize, "a malformed shared object handle");
    return NULL;
  }
  if (type == &par_lock_type) {
    par_lock *l = calloc(1, sizeof *l);
    if (l) { o = &l->hdr; b = &l->blk; state = (void **)&l->core; }
    size = sizeof(par_lockcore); kind = PAR_SHM_K_LOCK;
  } else if (type == &par_rlock_type) {
    par_rlock *r = calloc(1, sizeof *r);
    if (r) { o = &r->hdr; b = &r->blk; state = (void **)&r->s; }
    size = sizeof(par_rlockstate); kind = PAR_SHM_K_RLOCK;
  } else if (type == &par_semaphore_type) {
    par_semaphore *m = calloc(1, sizeof *m);
    if (m) { o = &m->hdr; b = &m->blk; state = (void **)&m->s; }
    size = sizeof(par_semstate); kind = PAR_SHM_K_SEMAPHORE;
  } else if (type == &par_event_type) {
    par_event *e = calloc(1, sizeof *e);
    if (e) { o = &e->hdr; b = &e->blk; state = (void **)&e->s; }
    size = sizeof(par_eventstate); kind = PAR_SHM_K_EVENT;
  } else if (type == &par_barrier_type) {
    par_barrier *ba = calloc(1, sizeof *ba);
    if (ba) { o = &ba->hdr; b = &ba->blk; state = (void **)&ba->s; }
    size = sizeof(par_barrierstate); kind = PAR_SHM_K_BARRIER;
  } else if (type == &par_condition_type) {
    par_condition *c = calloc(1, sizeof *c);
    if (c) { o = &c->hdr; b = &c->blk; state = (void **)&c->s; }
    size = sizeof(par_condstate); kind = PAR_SHM_K_CONDITION;
  } else {
    snprintf(err, errsize, "a malformed shared object handle");
    return NULL;
  }
  if (o == NULL) { snprintf(err, errsize, "not enough memory"); return NULL; }
  par_object_init(o, type);
  *state = par_shm_block_import(b, loc, kind, size, o, err, errsize);
  if (!*state) { free(o); return NULL; }
  if (type == &par_barrier_type) {
    par_barrier *ba = (par_barrier *)o;
    ba->parties = ba->s->parties;
    if (ba->parties < 1) goto bad;
  } else if (type == &par_condition_type) {
    par_condition *c = (par_condition *)o;
    const par_type *lt = b->hdr->a == PAR_SHM_K_LOCK ? &par_lock_type
                         : b->hdr->a == PAR_SHM_K_RLOCK ? &par_rlock_type : NULL;
    if (!lt) goto bad;
    c->lock = par_sync_import(lt, &b->hdr->ref, err, errsize);
    if (!c->lock) { par_shm_block_drop(b, o); free(o); return NULL; }
  }
  return o;
bad:
  snprintf(err, errsize, "a malformed shared object handle");
  par_shm_block_drop(b, o);
  free(o);
  return NULL;
}
