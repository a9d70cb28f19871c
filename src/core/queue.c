/* The queue: see queue.h. Two locks, after Michael and Scott's two-lock
 * queue: pushers take tail_mu, poppers head_mu. With one mutex, a
 * producer and a consumer running on two CPUs fought over it on every
 * item: the loser slept in the kernel and the winner paid a futex wake on
 * unlock (perf: a third of the time in lll_lock_wait/lll_lock_wake).
 * The items there are `pushed - popped`, two counters that only ever go
 * up, each written by one side only; each side keeps a snapshot of the
 * other's and reads the real one only when the snapshot says the queue
 * is empty (poppers) or full (pushers). A snapshot is never ahead of the
 * counter, so a side's view is never more than it may use. A shared
 * `count` that both sides changed on every item cost two cache misses a
 * side per item. */
#include "queue.h"
#include "clock.h"
#include "park.h"
#include "wait.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The sleepers of one direction: poppers and pollers wait for items on
 * `items`, pushers for room on `room`. A sleeper reads the word, counts
 * itself in, looks at the queue once more and parks (park.h); whoever
 * changes what it waits for moves its counter first, then reads the counts:
 * both are sequentially consistent, so either the sleeper sees the change
 * or the changer sees the sleeper and bumps the word before waking.
 * `waiting` packs sleepers (high half) and the wake-ups sent that no
 * sleeper has come back from yet (low half): a burst of pushes must not
 * make a system call each for one sleeper already woken. A sleeper that
 * comes back unwoken still takes one off: the count then runs low, which
 * costs a spare wake-up later, never a missed one. */
typedef struct {
  _Atomic int word;
  _Atomic uint64_t waiting;
  _Atomic int pollers;     /* items only: they take nothing, so all wake */
} waiters;

struct par_queue {
  /* read-mostly: ring and size change only with both locks held (grow),
   * so either lock is enough to read them */
  par_object hdr;
  size_t capacity;            /* 0: unbounded; fixed */
  par_msg **ring;
  size_t size;
  atomic_int closed;          /* set once, with both locks held */
  /* the poppers' line and the pushers' line */
  _Alignas(64) pthread_mutex_t head_mu;
  size_t head;                /* head_mu */
  size_t pushed_seen;         /* head_mu: <= pushed */
  _Alignas(64) pthread_mutex_t tail_mu;
  size_t tail;                /* tail_mu */
  size_t popped_seen;         /* tail_mu: <= popped */
  atomic_size_t unfinished;   /* pushed, not yet marked done (join) */
  /* Raised by a pusher after writing its slots (tail_mu), by a popper
   * after reading them (head_mu). */
  _Alignas(64) atomic_size_t pushed;
  _Alignas(64) atomic_size_t popped;
  _Alignas(64) waiters items;
  _Alignas(64) waiters room;
  _Alignas(64) pthread_mutex_t done_mu;    /* task_done and join */
  pthread_cond_t all_done;
  int join_sleepers;          /* done_mu */
};

/* The items there: exact with both locks held, else a moment's view. */
static size_t count_now(par_queue *q) {
  size_t popped = atomic_load(&q->popped);
  return atomic_load(&q->pushed) - popped;
}

/* With head_mu held: the items the poppers may take. */
static size_t items_seen(par_queue *q) {
  size_t popped = atomic_load_explicit(&q->popped, memory_order_relaxed);
  if (q->pushed_seen == popped) q->pushed_seen = atomic_load(&q->pushed);
  return q->pushed_seen - popped;
}

/* With tail_mu held: whether `want` more items keep the queue within
 * limit, counting them as the pushers may (never fewer than are there). */
static int fits(par_queue *q, size_t want, size_t limit) {
  size_t pushed = atomic_load_explicit(&q->pushed, memory_order_relaxed);
  if (pushed - q->popped_seen + want <= limit) return 1;
  q->popped_seen = atomic_load(&q->popped);
  return pushed - q->popped_seen + want <= limit;
}

static void queue_destroy(par_object *o) {
  par_queue *q = (par_queue *)o;
  size_t i, n = count_now(q);
  for (i = 0; i < n; i++) par_msg_free(q->ring[(q->head + i) % q->size]);
  free(q->ring);
  pthread_cond_destroy(&q->all_done);
  pthread_mutex_destroy(&q->done_mu);
  pthread_mutex_destroy(&q->tail_mu);
  pthread_mutex_destroy(&q->head_mu);
  free(q);
}

const par_type par_queue_type = {"parallel.queue", queue_destroy};

par_queue *par_queue_new(size_t capacity) {
  par_queue *q = aligned_alloc(64, (sizeof(par_queue) + 63) / 64 * 64);
  if (!q) return NULL;
  memset(q, 0, sizeof *q);
  q->size = capacity && capacity < 16 ? capacity : 16;
  q->ring = malloc(q->size * sizeof *q->ring);
  if (!q->ring) { free(q); return NULL; }
  par_object_init(&q->hdr, &par_queue_type);
  pthread_mutex_init(&q->head_mu, NULL);
  pthread_mutex_init(&q->tail_mu, NULL);
  pthread_mutex_init(&q->done_mu, NULL);
  par_cond_init(&q->all_done);
  q->capacity = capacity;
  atomic_init(&q->pushed, 0);
  atomic_init(&q->popped, 0);
  atomic_init(&q->closed, 0);
  atomic_init(&q->unfinished, 0);
  atomic_init(&q->items.word, 0);
  atomic_init(&q->items.waiting, 0);
  atomic_init(&q->items.pollers, 0);
  atomic_init(&q->room.word, 0);
  atomic_init(&q->room.waiting, 0);
  atomic_init(&q->room.pollers, 0);
  return q;
}

/* Both locks, always head first. */
static void lock_both(par_queue *q) {
  pthread_mutex_lock(&q->head_mu);
  pthread_mutex_lock(&q->tail_mu);
}

static void unlock_both(par_queue *q) {
  pthread_mutex_unlock(&q->tail_mu);
  pthread_mutex_unlock(&q->head_mu);
}

/* The ring as at most two contiguous runs: a batch moves in or out with
 * memcpy, not a division per item. */
static void ring_write(par_queue *q, size_t pos, par_msg *const *src, size_t k) {
  size_t first = q->size - pos;
  if (first > k) first = k;
  memcpy(q->ring + pos, src, first * sizeof *src);
  memcpy(q->ring, src + first, (k - first) * sizeof *src);
}

static void ring_read(par_queue *q, size_t pos, par_msg **dst, size_t k) {
  size_t first = q->size - pos;
  if (first > k) first = k;
  memcpy(dst, q->ring + pos, first * sizeof *dst);
  memcpy(dst + first, q->ring, (k - first) * sizeof *dst);
}

/* With both locks held: a ring of at least `want` slots (never past the
 * capacity unless `past_capacity`). 0 on out of memory. */
static int grow_to(par_queue *q, size_t want, int past_capacity) {
  size_t size = q->size, n = count_now(q);
  par_msg **ring;
  while (size < want) size *= 2;
  if (q->capacity && !past_capacity && size > q->capacity) size = q->capacity;
  if (size < want) return 0;
  if (size == q->size) return 1;
  ring = malloc(size * sizeof *ring);
  if (!ring) return 0;
  ring_read(q, q->head, ring, n);
  free(q->ring);
  q->ring = ring;
  q->size = size;
  q->head = 0;
  q->tail = n % size;
  q->pushed_seen = atomic_load(&q->pushed);
  q->popped_seen = atomic_load(&q->popped);
  return 1;
}

/* With tail_mu held: whether the ring has slots for `want` more items.
 * SLOTS_GREW: it had not, and has now, but growing it took head_mu, so
 * tail_mu was let go meanwhile: the caller looks at the queue again. */
enum { SLOTS_OK, SLOTS_GREW, SLOTS_NOMEM };
static int ensure_slots(par_queue *q, size_t want) {
  int ok;
  if (fits(q, want, q->size)) return SLOTS_OK;
  pthread_mutex_unlock(&q->tail_mu);
  lock_both(q);
  ok = grow_to(q, count_now(q) + want, 0);
  pthread_mutex_unlock(&q->head_mu);
  return ok ? SLOTS_GREW : SLOTS_NOMEM;
}

/* ---- sleeping and waking ------------------------------------------------ */

enum { WAKE_NONE, WAKE_ONE, WAKE_ALL };

#define SLEEPER ((uint64_t)1 << 32)

/* After moving pushed or popped: whom to wake on w once the caller's lock is
 * let go (wake_after). `all`: every sleeper (a batch for several). */
static int announce(waiters *w, int all) {
  uint64_t v = atomic_load(&w->waiting), nv;
  int pollers = atomic_load(&w->pollers);
  for (;;) {
    uint32_t sleepers = (uint32_t)(v >> 32), woken = (uint32_t)v;
    if (sleepers <= woken) {
      if (!pollers) return WAKE_NONE;
      break;
    }
    nv = all || pollers ? (uint64_t)sleepers << 32 | sleepers : v + 1;
    if (atomic_compare_exchange_weak(&w->waiting, &v, nv)) {
      if (!all && !pollers) {
        atomic_fetch_add(&w->word, 1);
        return WAKE_ONE;
      }
      break;
    }
  }
  atomic_fetch_add(&w->word, 1);
  return WAKE_ALL;
}

static void wake_after(waiters *w, int who) {
  if (who != WAKE_NONE) par_park_wake(&w->word, who == WAKE_ALL);
}

/* A sleeper's way back: one less sleeper, one less wake-up in flight. */
static void sleeper_back(waiters *w) {
  uint64_t v = atomic_load(&w->waiting), nv;
  do {
    nv = v - SLEEPER;
    if ((uint32_t)v > 0) nv -= 1;
  } while (!atomic_compare_exchange_weak(&w->waiting, &v, nv));
}

/* With *mu held: sleeps on w unless ready(q) turns true once counted in
 * (mu let go meanwhile, taken again after). PAR_OK or PAR_TIMEOUT; the
 * caller looks again either way. */
typedef int (*ready_fn)(void *q);
static int sleep_on(par_queue *q, pthread_mutex_t *mu, waiters *w, int poller,
                    ready_fn ready, double deadline) {
  int seq = atomic_load(&w->word), r = PAR_OK;
  if (poller) atomic_fetch_add(&w->pollers, 1);
  else atomic_fetch_add(&w->waiting, SLEEPER);
  if (mu) pthread_mutex_unlock(mu);
  if (!ready(q)) r = par_park_wait(&w->word, seq, deadline);
  if (poller) atomic_fetch_sub(&w->pollers, 1);
  else sleeper_back(w);
  if (mu) pthread_mutex_lock(mu);
  return r;
}

/* The lock-free looks of the spin before sleeping (wait.h) and of a
 * sleeper counted in. */
static int can_pop(void *ud) {
  par_queue *q = (par_queue *)ud;
  return count_now(q) > 0 || atomic_load(&q->closed);
}

static int can_push(void *ud) {
  par_queue *q = (par_queue *)ud;
  return count_now(q) < q->capacity || atomic_load(&q->closed);
}

/* With head_mu held: waits (spinning first, once) until an item is
 * there. PAR_OK, PAR_CLOSED once closed and drained, or PAR_TIMEOUT. */
static int wait_for_item(par_queue *q, double deadline) {
  int spun = 0, r;
  while (items_seen(q) == 0) {
    if (atomic_load(&q->closed)) return PAR_CLOSED;
    if (deadline <= 0) return PAR_TIMEOUT;
    if (!spun) {
      spun = 1;
      pthread_mutex_unlock(&q->head_mu);
      par_spin(PAR_WAIT_QUEUE, can_pop, q, deadline);
      pthread_mutex_lock(&q->head_mu);
      continue;
    }
    r = sleep_on(q, &q->head_mu, &q->items, 0, can_pop, deadline);
    if (r == PAR_TIMEOUT) {
      if (items_seen(q)) return PAR_OK;
      return atomic_load(&q->closed) ? PAR_CLOSED : PAR_TIMEOUT;
    }
  }
  return PAR_OK;
}

/* With tail_mu held: waits (spinning first, once) until a bounded queue
 * has room. PAR_OK, PAR_CLOSED or PAR_TIMEOUT. */
static int wait_for_room(par_queue *q, double deadline) {
  int spun = 0, r;
  for (;;) {
    if (atomic_load(&q->closed)) return PAR_CLOSED;
    if (!q->capacity || fits(q, 1, q->capacity)) return PAR_OK;
    if (deadline <= 0) return PAR_TIMEOUT;
    if (!spun) {
      spun = 1;
      pthread_mutex_unlock(&q->tail_mu);
      par_spin(PAR_WAIT_QUEUE, can_push, q, deadline);
      pthread_mutex_lock(&q->tail_mu);
      continue;
    }
    r = sleep_on(q, &q->tail_mu, &q->room, 0, can_push, deadline);
    if (r == PAR_TIMEOUT) {
      /* a slot freed at the last moment still counts */
      if (atomic_load(&q->closed)) return PAR_CLOSED;
      return fits(q, 1, q->capacity) ? PAR_OK : PAR_TIMEOUT;
    }
  }
}

/* ---- pushing and popping -------------------------------------------- */

/* With tail_mu held and room made: k messages behind the tail, then
 * announced; returns whom to wake. unfinished goes up first: a popper
 * that marks the item done must find it counted. */
static int put_run(par_queue *q, par_msg *const *ms, size_t k) {
  ring_write(q, q->tail, ms, k);
  q->tail = (q->tail + k) % q->size;
  atomic_fetch_add(&q->unfinished, k);
  atomic_store(&q->pushed, atomic_load_explicit(&q->pushed, memory_order_relaxed) + k);
  return announce(&q->items, k > 1);
}

/* With head_mu held and k items there: they leave through out. */
static int take_run(par_queue *q, par_msg **out, size_t k) {
  ring_read(q, q->head, out, k);
  q->head = (q->head + k) % q->size;
  atomic_store(&q->popped, atomic_load_explicit(&q->popped, memory_order_relaxed) + k);
  return q->capacity ? announce(&q->room, k > 1) : WAKE_NONE;
}

int par_queue_push(par_queue *q, par_msg *m, double deadline) {
  int r, who = WAKE_NONE, slots = SLOTS_GREW;
  pthread_mutex_lock(&q->tail_mu);
  while ((r = wait_for_room(q, deadline)) == PAR_OK && (slots = ensure_slots(q, 1)) == SLOTS_GREW) {}
  if (r == PAR_OK && slots == SLOTS_NOMEM) r = PAR_NOMEM;
  if (r == PAR_OK) who = put_run(q, &m, 1);
  pthread_mutex_unlock(&q->tail_mu);
  wake_after(&q->items, who);
  return r;
}

int par_queue_pop(par_queue *q, par_msg **out, double deadline) {
  int r, who = WAKE_NONE;
  pthread_mutex_lock(&q->head_mu);
  r = wait_for_item(q, deadline);
  if (r == PAR_OK) who = take_run(q, out, 1);
  pthread_mutex_unlock(&q->head_mu);
  wake_after(&q->room, who);
  return r;
}

int par_queue_unpop(par_queue *q, par_msg *m) {
  return par_queue_unpop_all(q, &m, 1);
}

int par_queue_unpop_all(par_queue *q, par_msg *const *ms, size_t n) {
  size_t i, k = 0;
  int r = PAR_OK, who = WAKE_NONE;
  for (i = 0; i < n; i++) k += ms[i] != NULL;
  if (k == 0) return PAR_OK;
  lock_both(q);
  /* the slots over the capacity are made here if need be */
  if (count_now(q) + k > q->size && !grow_to(q, count_now(q) + k, 1)) r = PAR_NOMEM;
  if (r == PAR_OK) {
    for (i = n; i-- > 0;) {
      if (!ms[i]) continue;
      q->head = (q->head + q->size - 1) % q->size;
      q->ring[q->head] = ms[i];
    }
    /* popped goes back: the pushers' snapshot must not stay ahead of it */
    atomic_store(&q->popped, atomic_load(&q->popped) - k);
    q->popped_seen = atomic_load(&q->popped);
    who = announce(&q->items, k > 1);
  }
  unlock_both(q);
  wake_after(&q->items, who);
  return r;
}

size_t par_queue_push_many(par_queue *q, par_msg **ms, size_t n, double deadline, int *status) {
  size_t done = 0;
  int r = PAR_OK, who = WAKE_NONE, w, slots;
  pthread_mutex_lock(&q->tail_mu);
  while (done < n) {
    size_t k = n - done, used;
    if (atomic_load(&q->closed)) { r = PAR_CLOSED; break; }
    if (q->capacity && !fits(q, 1, q->capacity)) {
      if (who != WAKE_NONE) {
        /* the poppers of what went in so far wake before this thread waits */
        pthread_mutex_unlock(&q->tail_mu);
        wake_after(&q->items, who);
        who = WAKE_NONE;
        pthread_mutex_lock(&q->tail_mu);
        continue;
      }
      r = wait_for_room(q, deadline);
      if (r != PAR_OK) break;
      continue;
    }
    used = atomic_load_explicit(&q->pushed, memory_order_relaxed) - q->popped_seen;
    if (q->capacity && k > q->capacity - used) k = q->capacity - used;
    slots = ensure_slots(q, k);
    if (slots == SLOTS_GREW) continue;
    if (slots == SLOTS_NOMEM) { r = PAR_NOMEM; break; }
    w = put_run(q, ms + done, k);
    /* two runs' announcements: wake them all (a spare wake-up is harmless) */
    if (w != WAKE_NONE) who = who == WAKE_NONE ? w : WAKE_ALL;
    done += k;
  }
  pthread_mutex_unlock(&q->tail_mu);
  wake_after(&q->items, who);
  *status = r;
  return done;
}

par_msg **par_queue_pop_many(par_queue *q, size_t max, double deadline, size_t *n, int *status) {
  par_msg **out = NULL;
  size_t k = 0;
  int r, who = WAKE_NONE;
  pthread_mutex_lock(&q->head_mu);
  r = wait_for_item(q, deadline);
  if (r == PAR_OK) {
    q->pushed_seen = atomic_load(&q->pushed);   /* every item there, up to max */
    k = items_seen(q);
    if (k > max) k = max;
    out = malloc(k * sizeof *out);
    if (!out) { k = 0; r = PAR_NOMEM; }
  }
  if (k) who = take_run(q, out, k);
  pthread_mutex_unlock(&q->head_mu);
  wake_after(&q->room, who);
  *n = k;
  *status = r;
  return out;
}

void par_queue_close(par_queue *q) {
  lock_both(q);
  atomic_store(&q->closed, 1);
  atomic_fetch_add(&q->items.word, 1);
  atomic_fetch_add(&q->room.word, 1);
  unlock_both(q);
  par_park_wake(&q->items.word, 1);
  par_park_wake(&q->room.word, 1);
}

int par_queue_closed(par_queue *q) {
  return atomic_load_explicit(&q->closed, memory_order_relaxed);
}

size_t par_queue_count(par_queue *q) {
  return count_now(q);
}

size_t par_queue_capacity(par_queue *q) {
  return q->capacity;
}

int par_queue_poll(par_queue *q, double deadline) {
  while (!can_pop(q) && deadline > 0)
    if (sleep_on(q, NULL, &q->items, 1, can_pop, deadline) == PAR_TIMEOUT) break;
  if (count_now(q)) return PAR_OK;
  return atomic_load(&q->closed) ? PAR_CLOSED : PAR_TIMEOUT;
}

int par_queue_task_done(par_queue *q) {
  int r = PAR_OK;
  size_t left = atomic_load(&q->unfinished);
  pthread_mutex_lock(&q->done_mu);
  do {
    if (left == 0) { r = PAR_ERROR; break; }
  } while (!atomic_compare_exchange_weak(&q->unfinished, &left, left - 1));
  if (r == PAR_OK && left == 1 && q->join_sleepers) pthread_cond_broadcast(&q->all_done);
  pthread_mutex_unlock(&q->done_mu);
  return r;
}

int par_queue_join(par_queue *q, double deadline) {
  int r = PAR_OK;
  pthread_mutex_lock(&q->done_mu);
  while (atomic_load(&q->unfinished) > 0) {
    q->join_sleepers++;
    r = par_cond_wait_until(&q->all_done, &q->done_mu, deadline);
    q->join_sleepers--;
    if (r == PAR_TIMEOUT) break;
  }
  r = atomic_load(&q->unfinished) == 0 ? PAR_OK : PAR_TIMEOUT;
  pthread_mutex_unlock(&q->done_mu);
  return r;
}
