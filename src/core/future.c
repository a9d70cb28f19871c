#include "future.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "park.h"
#include "wait.h"

/* A future's membership in a waitset: holds one reference to the future,
 * which next() hands to its caller; then the sub is freed, so a waitset
 * that futures stream through (imap_unordered) holds only those not yet
 * returned. */
struct par_sub {
  par_sub *next;             /* in the future's list (future mutex) */
  par_waitset *ws;
  par_future *f;
  size_t index;              /* in ws->subs (waitset mutex) */
  int linked;                /* future mutex */
};

struct par_waitset {
  pthread_mutex_t mu;        /* guards everything below */
  pthread_cond_t cv;
  int sleeping;
  par_sub **ready;           /* finished, not yet returned: FIFO from head */
  size_t head, nready, cap;
  par_sub **subs;            /* the subs not yet returned, NULL holes */
  size_t nsubs, subcap, nholes;
};

static void group_member_done(par_future *g, int state);

static void future_destroy(par_object *o) {
  par_future *f = (par_future *)o;
  size_t i;
  if (f->group) par_object_release(&f->group->hdr);
  for (i = 0; i < f->nmembers; i++) par_object_release(&f->members[i]->hdr);
  free(f->members);
  free(f->firsts);
  par_msg_free(f->task);
  par_msg_free(f->result);
  if (f->owner) par_object_release(f->owner);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

const par_type par_future_type = { "parallel.future", future_destroy };

par_future *par_future_new(int kind, par_msg *task) {
  par_future *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  par_object_init(&f->hdr, &par_future_type);
  atomic_init(&f->state, PAR_PENDING);
  f->kind = kind;
  f->task = task;
  f->segmented = task && task->rest;
  pthread_mutex_init(&f->mu, NULL);
  atomic_init(&f->nwaiters, 0);
  return f;
}

par_object *par_future_adopt(par_future *f, par_object *owner, const par_future_sink *sink) {
  if (!f->owner) {
    f->owner = par_object_retain(owner);
    f->sink = sink;
  }
  return f->owner;
}

par_object *par_future_owner(const par_future *f) { return f->owner; }

int par_future_interrupt(par_future *f) {
  if (f->kind == PAR_KIND_GROUP) {
    size_t i;
    int any = 0;
    for (i = 0; i < f->nmembers; i++) any |= par_future_interrupt(f->members[i]);
    return any;
  }
  return f->sink && f->sink->interrupt && f->sink->interrupt(f->owner, f);
}

int par_future_state(const par_future *f) {
  return atomic_load_explicit(&((par_future *)f)->state, memory_order_acquire);
}

const par_msg *par_future_result(const par_future *f) { return f->result; }

int par_future_kind(const par_future *f) { return f->kind; }
par_future *par_future_next_done(const par_future *f) { return f->next_done; }
void par_future_mark_orphan(par_future *f) { atomic_store(&f->orphan, 1); }
int par_future_is_orphan(par_future *f) { return atomic_load(&f->orphan); }

const par_msg *par_future_task(const par_future *f) { return f->task; }

par_msg *par_future_take_task(par_future *f) {
  par_msg *m = f->task;
  f->task = NULL;
  return m;
}

void par_future_drop_task(par_future *f) {
  par_msg *m;
  pthread_mutex_lock(&f->mu);
  m = f->task;
  f->task = NULL;
  pthread_mutex_unlock(&f->mu);
  par_msg_free(m);
}

int par_future_is_terminal(int state) {
  return state >= PAR_DONE;
}

int par_future_claim(par_future *f) {
  int expected = PAR_PENDING;
  return atomic_compare_exchange_strong(&f->state, &expected, PAR_RUNNING);
}

static void ws_push(par_waitset *ws, par_sub *s);

/* Called with f->mu held, after the terminal state is stored: notifies
 * the waitsets; returns whether waiters are parked on f->state. The
 * caller wakes them after unlocking (it holds a reference to f), so that
 * a woken waiter does not run into the mutex still held. Both sides use
 * sequentially consistent operations (the waiter: count itself, then read
 * the state; here: store the state, then read the count): either the
 * waiter sees the outcome, or this sees the waiter. */
static int wake_all(par_future *f) {
  par_sub *s = f->subs;
  f->subs = NULL;
  while (s) {
    par_sub *next = s->next;
    s->linked = 0;
    ws_push(s->ws, s);          /* s may be freed from here on */
    s = next;
  }
  return atomic_load(&f->nwaiters) > 0;
}

/* Called with f->mu held, once f is terminal: the group to tell. */
static par_future *take_group(par_future *f) {
  par_future *g = f->group;
  f->group = NULL;
  return g;
}

static void tell_group(par_future *g, int state) {
  if (!g) return;
  group_member_done(g, state);
  par_object_release(&g->hdr);
}

void par_future_finish(par_future *f, int state, par_msg *result) {
  int sleepers;
  par_future *g;
  /* Count and list before anyone can see the outcome: a waiter that reads
   * stats or pool:completed() next finds this future there. */
  if (f->sink) f->sink->count(f->owner, state);
  pthread_mutex_lock(&f->mu);
  f->result = result;
  if (f->sink) f->sink->notice(f->owner, f, state);
  else atomic_store(&f->state, state);
  sleepers = wake_all(f);
  g = take_group(f);
  pthread_mutex_unlock(&f->mu);
  if (sleepers) par_park_wake(&f->state, 1);
  tell_group(g, state);
}

int par_future_hold(par_future *f, par_recall *r) {
  int pending;
  pthread_mutex_lock(&f->mu);
  pending = atomic_load(&f->state) == PAR_PENDING;
  f->recall = pending ? r : NULL;
  pthread_mutex_unlock(&f->mu);
  return pending;
}

int par_future_take_back(par_future *f) {
  int ok;
  pthread_mutex_lock(&f->mu);
  ok = !f->recall || f->recall->recall(f->recall);
  if (ok) f->recall = NULL;
  pthread_mutex_unlock(&f->mu);
  return ok;
}

static int group_cancel(par_future *g) {
  size_t i;
  int any = 0;
  for (i = 0; i < g->nmembers; i++) any |= par_future_cancel(g->members[i]);
  return any;
}

int par_future_cancel(par_future *f) {
  int expected = PAR_PENDING, sleepers, held;
  par_msg *task = NULL;
  par_future *g;
  if (f->kind == PAR_KIND_GROUP) return group_cancel(f);
  if (atomic_load(&f->state) != PAR_PENDING) return 0;
  /* Under mu: a runner holding f unclaimed decides with its recall, and
   * one about to hold it sees the cancel (par_future_hold). */
  pthread_mutex_lock(&f->mu);
  if ((f->recall && !f->recall->recall(f->recall)) ||
      !atomic_compare_exchange_strong(&f->state, &expected, PAR_CANCELLED)) {
    pthread_mutex_unlock(&f->mu);
    return 0;
  }
  /* A runner that held f may still be reading its task (sending it
   * ahead): the task stays for it to free (par_future_drop_task). */
  held = f->recall != NULL;
  f->recall = NULL;
  pthread_mutex_unlock(&f->mu);
  if (f->sink) f->sink->count(f->owner, PAR_CANCELLED);
  pthread_mutex_lock(&f->mu);
  if (!held) {
    task = f->task;
    f->task = NULL;
  }
  if (f->sink) f->sink->notice(f->owner, f, PAR_CANCELLED);
  sleepers = wake_all(f);
  g = take_group(f);
  pthread_mutex_unlock(&f->mu);
  if (sleepers) par_park_wake(&f->state, 1);
  par_msg_free(task);
  tell_group(g, PAR_CANCELLED);
  return 1;
}

/* ---------------------------------------------------------------- groups */

par_future *par_future_group_new(void) {
  par_future *g = par_future_new(PAR_KIND_GROUP, NULL);
  if (!g) return NULL;
  atomic_init(&g->group_left, 1);
  atomic_init(&g->group_state, PAR_DONE);
  return g;
}

static void group_member_done(par_future *g, int state) {
  if (state == PAR_FAILED) {
    atomic_store(&g->group_state, PAR_FAILED);
  } else if (state == PAR_CANCELLED) {
    int expected = PAR_DONE;
    atomic_compare_exchange_strong(&g->group_state, &expected, PAR_CANCELLED);
  }
  if (atomic_fetch_sub(&g->group_left, 1) == 1)
    par_future_finish(g, atomic_load(&g->group_state), NULL);
}

int par_future_group_add(par_future *g, par_future *member, long first) {
  int state;
  if (g->nmembers == g->capmembers) {
    size_t cap = g->capmembers ? 2 * g->capmembers : 8;
    par_future **m = realloc(g->members, cap * sizeof *m);
    long *fi;
    if (!m) return 0;
    g->members = m;
    fi = realloc(g->firsts, cap * sizeof *fi);
    if (!fi) return 0;
    g->firsts = fi;
    g->capmembers = cap;
  }
  g->members[g->nmembers] = (par_future *)par_object_retain(&member->hdr);
  g->firsts[g->nmembers++] = first;
  atomic_fetch_add(&g->group_left, 1);
  pthread_mutex_lock(&member->mu);
  state = atomic_load(&member->state);
  if (!par_future_is_terminal(state)) {
    member->group = (par_future *)par_object_retain(&g->hdr);
    pthread_mutex_unlock(&member->mu);
    return 1;
  }
  pthread_mutex_unlock(&member->mu);
  group_member_done(g, state);
  return 1;
}

void par_future_group_seal(par_future *g, long nitems) {
  g->nitems = nitems;
  g->sealed = 1;
  group_member_done(g, PAR_DONE);
}

int par_future_group_sealed(const par_future *g) { return g->sealed; }
size_t par_future_group_size(const par_future *g) { return g->nmembers; }
long par_future_group_items(const par_future *g) { return g->nitems; }

par_future *par_future_group_member(const par_future *g, size_t i, long *first) {
  *first = g->firsts[i];
  return g->members[i];
}

static int is_done(void *ud) {
  par_future *f = (par_future *)ud;
  return par_future_is_terminal(atomic_load_explicit(&f->state, memory_order_acquire));
}

/* A short task finishing within microseconds is caught by the spin, when
 * the policy (wait.h) lets us spin, instead of a futex round trip. Then
 * the waiter parks on the state word itself (park.h): no mutex, and the
 * claim (pending -> running) only costs it one more look. */
int par_future_wait(par_future *f, double deadline) {
  int rc = PAR_OK, state;
  if (is_done(f)) return PAR_OK;
  if (f->sink && f->sink->help) {
    f->sink->help(f->owner, f, deadline);
    if (is_done(f)) return PAR_OK;
  }
  if (par_spin(PAR_WAIT_FUTURE, is_done, f, deadline)) return PAR_OK;
  atomic_fetch_add(&f->nwaiters, 1);
  while (!par_future_is_terminal(state = atomic_load(&f->state)) && rc == PAR_OK)
    rc = par_park_wait(&f->state, state, deadline);
  atomic_fetch_sub(&f->nwaiters, 1);
  if (par_future_is_terminal(atomic_load(&f->state))) rc = PAR_OK;
  return rc;
}

/* ------------------------------------------------------------- waitsets */

static void ws_push(par_waitset *ws, par_sub *s) {
  pthread_mutex_lock(&ws->mu);
  /* Space was reserved when s was added, so this cannot fail. */
  ws->ready[ws->nready++] = s;
  if (ws->sleeping) pthread_cond_signal(&ws->cv);
  pthread_mutex_unlock(&ws->mu);
}

/* With ws->mu held: drops the returned entries of ready and the holes of
 * subs, so that both stay the size of what is still to be returned. */
static void ws_compact(par_waitset *ws) {
  size_t i, j;
  if (ws->head > 0) {
    memmove(ws->ready, ws->ready + ws->head, (ws->nready - ws->head) * sizeof *ws->ready);
    ws->nready -= ws->head;
    ws->head = 0;
  }
  if (ws->nholes > 16 && ws->nholes * 2 > ws->nsubs) {
    for (i = j = 0; i < ws->nsubs; i++)
      if (ws->subs[i]) {
        ws->subs[j] = ws->subs[i];
        ws->subs[j]->index = j;
        j++;
      }
    ws->nsubs = j;
    ws->nholes = 0;
  }
}

par_waitset *par_waitset_new(void) {
  par_waitset *ws = calloc(1, sizeof *ws);
  if (!ws) return NULL;
  pthread_mutex_init(&ws->mu, NULL);
  par_cond_init(&ws->cv);
  return ws;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  size_t c = *cap ? *cap : 16;
  void *q;
  if (need <= *cap) return 1;
  while (c < need) c *= 2;
  q = realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

int par_waitset_add(par_waitset *ws, par_future *f) {
  par_sub *s = malloc(sizeof *s);
  int ok;
  if (!s) return 0;
  s->ws = ws;
  s->f = f;
  pthread_mutex_lock(&ws->mu);
  ws_compact(ws);
  /* ready gets at most every sub not yet returned */
  ok = grow((void **)&ws->ready, &ws->cap, ws->nsubs - ws->nholes + 1, sizeof *ws->ready) &&
       grow((void **)&ws->subs, &ws->subcap, ws->nsubs + 1, sizeof *ws->subs);
  if (ok) {
    s->index = ws->nsubs;
    ws->subs[ws->nsubs++] = s;
  }
  pthread_mutex_unlock(&ws->mu);
  if (!ok) { free(s); return 0; }
  par_object_retain(&f->hdr);
  pthread_mutex_lock(&f->mu);
  if (par_future_is_terminal(atomic_load(&f->state))) {
    s->linked = 0;
    pthread_mutex_unlock(&f->mu);
    ws_push(ws, s);
  } else {
    s->linked = 1;
    s->next = f->subs;
    f->subs = s;
    pthread_mutex_unlock(&f->mu);
  }
  return 1;
}

par_future *par_waitset_next(par_waitset *ws, double deadline, int *status) {
  par_future *f = NULL;
  par_sub *s = NULL;
  int rc = PAR_OK;
  pthread_mutex_lock(&ws->mu);
  while (ws->head == ws->nready && ws->nholes < ws->nsubs && rc == PAR_OK) {
    ws->sleeping++;
    rc = par_cond_wait_until(&ws->cv, &ws->mu, deadline);
    ws->sleeping--;
  }
  if (ws->head < ws->nready) {
    s = ws->ready[ws->head];
    ws->ready[ws->head++] = NULL;
    if (ws->head == ws->nready) ws->head = ws->nready = 0;
    ws->subs[s->index] = NULL;
    ws->nholes++;
    f = s->f;                  /* its reference goes to the caller */
    rc = PAR_OK;
  } else if (ws->nholes >= ws->nsubs) {
    rc = PAR_CLOSED;           /* nothing left to wait for */
  }
  pthread_mutex_unlock(&ws->mu);
  free(s);                     /* unlinked from f when f finished */
  *status = rc;
  return f;
}

size_t par_waitset_pending(par_waitset *ws) {
  size_t n;
  pthread_mutex_lock(&ws->mu);
  n = ws->nsubs - ws->nholes;
  pthread_mutex_unlock(&ws->mu);
  return n;
}

void par_waitset_release(par_waitset *ws) {
  size_t i;
  if (!ws) return;
  for (i = 0; i < ws->nsubs; i++) {
    par_sub *s = ws->subs[i], **pp;
    par_future *f;
    if (!s) continue;          /* returned */
    f = s->f;
    pthread_mutex_lock(&f->mu);
    if (s->linked)
      for (pp = &f->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) { *pp = s->next; break; }
    pthread_mutex_unlock(&f->mu);
    par_object_release(&f->hdr);
    free(s);
  }
  free(ws->ready);               /* its subs were in subs */
  free(ws->subs);
  pthread_mutex_destroy(&ws->mu);
  pthread_cond_destroy(&ws->cv);
  free(ws);
}
