#include "sync.h"

#include <limits.h>
#include "clock.h"
#include "wait.h"

#include <stdlib.h>

uintptr_t par_thread_id(void) {
  static _Thread_local char id;
  return (uintptr_t)&id;
}

/* ---- lock core ---- */

static void core_init(par_lockcore *c) {
  atomic_init(&c->held, 0);
  atomic_init(&c->sleepers, 0);
  pthread_mutex_init(&c->mu, NULL);
  par_cond_init(&c->cv);
}

static void core_destroy(par_lockcore *c) {
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
}

static int core_try(par_lockcore *c) {
  int expected = 0;
  return atomic_load_explicit(&c->held, memory_order_relaxed) == 0 &&
         atomic_compare_exchange_strong(&c->held, &expected, 1);
}

static int core_free(void *ud) {
  par_lockcore *c = (par_lockcore *)ud;
  return atomic_load_explicit(&c->held, memory_order_relaxed) == 0;
}

static int core_acquire(par_lockcore *c, double deadline) {
  int r = PAR_OK, round;
  if (core_try(c)) return PAR_OK;
  /* Spin (when the policy of wait.h says it pays) until the lock looks
   * free, then race for it; a few lost races, and we sleep. */
  for (round = 0; round < 4 && par_spin(PAR_WAIT_LOCK, core_free, c, deadline); round++)
    if (core_try(c)) return PAR_OK;
  pthread_mutex_lock(&c->mu);
  /* Dekker with core_release: count ourselves before the last try. */
  atomic_fetch_add(&c->sleepers, 1);
  while (!core_try(c)) {
    if (par_cond_wait_until(&c->cv, &c->mu, deadline) == PAR_TIMEOUT) {
      r = core_try(c) ? PAR_OK : PAR_TIMEOUT;
      break;
    }
  }
  atomic_fetch_sub(&c->sleepers, 1);
  pthread_mutex_unlock(&c->mu);
  return r;
}

static int core_release(par_lockcore *c) {
  if (atomic_exchange(&c->held, 0) == 0) return PAR_ERROR;
  if (atomic_load(&c->sleepers) > 0) {
    pthread_mutex_lock(&c->mu);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
  }
  return PAR_OK;
}

/* ---- lock ---- */

static void lock_destroy(par_object *o) {
  par_lock *l = (par_lock *)o;
  core_destroy(&l->core);
  free(l);
}

const par_type par_lock_type = {"parallel.lock", lock_destroy};

par_lock *par_lock_new(void) {
  par_lock *l = malloc(sizeof *l);
  if (!l) return NULL;
  par_object_init(&l->hdr, &par_lock_type);
  core_init(&l->core);
  return l;
}

int par_lock_try(par_lock *l) { return core_try(&l->core); }
int par_lock_acquire(par_lock *l, double deadline) { return core_acquire(&l->core, deadline); }
int par_lock_release(par_lock *l) { return core_release(&l->core); }
int par_lock_locked(par_lock *l) { return atomic_load(&l->core.held) != 0; }

/* ---- rlock ---- */

static void rlock_destroy(par_object *o) {
  par_rlock *r = (par_rlock *)o;
  core_destroy(&r->core);
  free(r);
}

const par_type par_rlock_type = {"parallel.rlock", rlock_destroy};

par_rlock *par_rlock_new(void) {
  par_rlock *r = malloc(sizeof *r);
  if (!r) return NULL;
  par_object_init(&r->hdr, &par_rlock_type);
  core_init(&r->core);
  atomic_init(&r->owner, 0);
  r->count = 0;
  return r;
}

int par_rlock_owned(par_rlock *r) {
  return atomic_load_explicit(&r->owner, memory_order_relaxed) == par_thread_id();
}

int par_rlock_locked(par_rlock *r) { return atomic_load(&r->core.held) != 0; }

int par_rlock_restore(par_rlock *r, long depth, double deadline) {
  if (core_acquire(&r->core, deadline) != PAR_OK) return PAR_TIMEOUT;
  atomic_store_explicit(&r->owner, par_thread_id(), memory_order_relaxed);
  r->count = depth;
  return PAR_OK;
}

int par_rlock_acquire(par_rlock *r, double deadline) {
  if (par_rlock_owned(r)) {
    r->count++;
    return PAR_OK;
  }
  return par_rlock_restore(r, 1, deadline);
}

int par_rlock_release(par_rlock *r) {
  if (!par_rlock_owned(r)) return PAR_ERROR;
  if (--r->count == 0) {
    atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
    core_release(&r->core);
  }
  return PAR_OK;
}

long par_rlock_release_all(par_rlock *r) {
  long depth;
  if (!par_rlock_owned(r)) return 0;
  depth = r->count;
  r->count = 0;
  atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
  core_release(&r->core);
  return depth;
}

/* ---- semaphore ---- */

static void semaphore_destroy(par_object *o) {
  par_semaphore *s = (par_semaphore *)o;
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

const par_type par_semaphore_type = {"parallel.semaphore", semaphore_destroy};

par_semaphore *par_semaphore_new(long value, long bound) {
  par_semaphore *s = malloc(sizeof *s);
  if (!s) return NULL;
  par_object_init(&s->hdr, &par_semaphore_type);
  pthread_mutex_init(&s->mu, NULL);
  par_cond_init(&s->cv);
  s->value = value;
  s->bound = bound;
  s->sleepers = 0;
  return s;
}

int par_semaphore_acquire(par_semaphore *s, double deadline) {
  int r = PAR_OK;
  pthread_mutex_lock(&s->mu);
  while (s->value == 0) {
    s->sleepers++;
    r = par_cond_wait_until(&s->cv, &s->mu, deadline);
    s->sleepers--;
    if (r == PAR_TIMEOUT) break;
  }
  if (s->value > 0) {
    s->value--;
    r = PAR_OK;
  }
  pthread_mutex_unlock(&s->mu);
  return r;
}

int par_semaphore_release(par_semaphore *s, long k) {
  pthread_mutex_lock(&s->mu);
  if (k > s->bound - s->value) {
    pthread_mutex_unlock(&s->mu);
    return PAR_ERROR;
  }
  s->value += k;
  if (s->sleepers) {
    if (k == 1) pthread_cond_signal(&s->cv);
    else pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return PAR_OK;
}

long par_semaphore_bound(par_semaphore *s) { return s->bound; }

long par_semaphore_value(par_semaphore *s) {
  long v;
  pthread_mutex_lock(&s->mu);
  v = s->value;
  pthread_mutex_unlock(&s->mu);
  return v;
}

/* ---- event ---- */

static void event_destroy(par_object *o) {
  par_event *e = (par_event *)o;
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

const par_type par_event_type = {"parallel.event", event_destroy};

par_event *par_event_new(void) {
  par_event *e = malloc(sizeof *e);
  if (!e) return NULL;
  par_object_init(&e->hdr, &par_event_type);
  pthread_mutex_init(&e->mu, NULL);
  par_cond_init(&e->cv);
  atomic_init(&e->flag, 0);
  return e;
}

void par_event_set(par_event *e) {
  pthread_mutex_lock(&e->mu);
  atomic_store(&e->flag, 1);
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
}

void par_event_clear(par_event *e) {
  pthread_mutex_lock(&e->mu);
  atomic_store(&e->flag, 0);
  pthread_mutex_unlock(&e->mu);
}

int par_event_is_set(par_event *e) { return atomic_load(&e->flag); }

int par_event_wait(par_event *e, double deadline) {
  int r;
  if (atomic_load(&e->flag)) return PAR_OK;
  pthread_mutex_lock(&e->mu);
  while (!atomic_load(&e->flag))
    if (par_cond_wait_until(&e->cv, &e->mu, deadline) == PAR_TIMEOUT) break;
  r = atomic_load(&e->flag) ? PAR_OK : PAR_TIMEOUT;
  pthread_mutex_unlock(&e->mu);
  return r;
}

/* ---- barrier ---- */

static void barrier_destroy(par_object *o) {
  par_barrier *b = (par_barrier *)o;
  par_msg_free(b->action);
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

const par_type par_barrier_type = {"parallel.barrier", barrier_destroy};

par_barrier *par_barrier_new(long parties, par_msg *action) {
  par_barrier *b = calloc(1, sizeof *b);
  if (!b) { par_msg_free(action); return NULL; }
  par_object_init(&b->hdr, &par_barrier_type);
  pthread_mutex_init(&b->mu, NULL);
  par_cond_init(&b->cv);
  b->parties = parties;
  b->action = action;
  return b;
}

/* Ends the round for every waiter (mu held). */
static void end_waiters(par_barrier *b, int outcome) {
  par_barrier_waiter *w = b->waiters;
  while (w) {
    par_barrier_waiter *next = w->next;
    w->outcome = outcome;
    w->next = NULL;
    w = next;
  }
  b->waiters = NULL;
  b->count = 0;
  pthread_cond_broadcast(&b->cv);
}

int par_barrier_arrive(par_barrier *b, par_barrier_waiter *w, long *index, double deadline) {
  int r = PAR_OK;
  pthread_mutex_lock(&b->mu);
  while (b->acting && !b->broken)
    if (par_cond_wait_until(&b->cv, &b->mu, deadline) == PAR_TIMEOUT) break;
  if (b->broken) r = PAR_ERROR;
  else if (b->acting) r = PAR_TIMEOUT;
  else {
    *index = ++b->count;
    if (b->count < b->parties) {
      w->outcome = -1;
      w->next = b->waiters;
      b->waiters = w;
    } else if (b->action) {
      b->acting = 1;
    } else {
      end_waiters(b, PAR_OK);
    }
  }
  pthread_mutex_unlock(&b->mu);
  return r;
}

int par_barrier_wait(par_barrier *b, par_barrier_waiter *w, double deadline) {
  int r;
  pthread_mutex_lock(&b->mu);
  while (w->outcome < 0)
    if (par_cond_wait_until(&b->cv, &b->mu, deadline) == PAR_TIMEOUT) break;
  r = w->outcome < 0 ? PAR_TIMEOUT : w->outcome;
  pthread_mutex_unlock(&b->mu);
  return r;
}

int par_barrier_withdraw(par_barrier *b, par_barrier_waiter *w) {
  int r;
  pthread_mutex_lock(&b->mu);
  if (w->outcome < 0) {
    par_barrier_waiter **pp;
    for (pp = &b->waiters; *pp; pp = &(*pp)->next)
      if (*pp == w) { *pp = w->next; break; }
    b->count--;
    r = PAR_TIMEOUT;
  } else {
    r = w->outcome;
  }
  pthread_mutex_unlock(&b->mu);
  return r;
}

void par_barrier_end_round(par_barrier *b, int ok) {
  pthread_mutex_lock(&b->mu);
  b->acting = 0;
  if (!ok) b->broken = 1;
  end_waiters(b, b->broken ? PAR_ERROR : PAR_OK);
  pthread_mutex_unlock(&b->mu);
}

void par_barrier_abort(par_barrier *b) {
  pthread_mutex_lock(&b->mu);
  b->broken = 1;
  end_waiters(b, PAR_ERROR);
  pthread_mutex_unlock(&b->mu);
}

void par_barrier_reset(par_barrier *b) {
  pthread_mutex_lock(&b->mu);
  end_waiters(b, PAR_ERROR);
  b->broken = 0;
  pthread_mutex_unlock(&b->mu);
}

long par_barrier_waiting(par_barrier *b) {
  long n = 0;
  par_barrier_waiter *w;
  pthread_mutex_lock(&b->mu);
  for (w = b->waiters; w; w = w->next) n++;
  pthread_mutex_unlock(&b->mu);
  return n;
}

int par_barrier_broken(par_barrier *b) {
  int r;
  pthread_mutex_lock(&b->mu);
  r = b->broken;
  pthread_mutex_unlock(&b->mu);
  return r;
}

/* ---- condition ---- */

static void condition_destroy(par_object *o) {
  par_condition *c = (par_condition *)o;
  par_object_release(c->lock);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

const par_type par_condition_type = {"parallel.condition", condition_destroy};

par_condition *par_condition_new(par_object *lock) {
  par_condition *c = malloc(sizeof *c);
  if (!c) return NULL;
  par_object_init(&c->hdr, &par_condition_type);
  c->lock = par_object_retain(lock);
  pthread_mutex_init(&c->mu, NULL);
  par_cond_init(&c->cv);
  c->head = c->tail = NULL;
  return c;
}

static void unlink_waiter(par_condition *c, par_cond_waiter *w) {
  if (w->prev) w->prev->next = w->next; else c->head = w->next;
  if (w->next) w->next->prev = w->prev; else c->tail = w->prev;
  w->prev = w->next = NULL;
  w->listed = 0;
}

void par_condition_enlist(par_condition *c, par_cond_waiter *w) {
  pthread_mutex_lock(&c->mu);
  w->notified = 0;
  w->listed = 1;
  w->next = NULL;
  w->prev = c->tail;
  if (c->tail) c->tail->next = w; else c->head = w;
  c->tail = w;
  pthread_mutex_unlock(&c->mu);
}

int par_condition_wait(par_condition *c, par_cond_waiter *w, double deadline) {
  int r;
  pthread_mutex_lock(&c->mu);
  while (!w->notified)
    if (par_cond_wait_until(&c->cv, &c->mu, deadline) == PAR_TIMEOUT) break;
  r = w->notified ? PAR_OK : PAR_TIMEOUT;
  pthread_mutex_unlock(&c->mu);
  return r;
}

int par_condition_delist(par_condition *c, par_cond_waiter *w) {
  int notified;
  pthread_mutex_lock(&c->mu);
  if (w->listed) unlink_waiter(c, w);
  notified = w->notified;
  pthread_mutex_unlock(&c->mu);
  return notified;
}

void par_condition_notify(par_condition *c, long n) {
  int woke = 0;
  pthread_mutex_lock(&c->mu);
  while (c->head && n != 0) {
    par_cond_waiter *w = c->head;
    unlink_waiter(c, w);
    w->notified = 1;
    woke = 1;
    if (n > 0) n--;
  }
  if (woke) pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}
