#include "queue.h"
#include "clock.h"
#include "park.h"
#include "wait.h"

#include <stdlib.h>
#include <string.h>

struct par_queue {
  par_object hdr;
  pthread_mutex_t mu;
  /* Poppers and pollers park on not_empty, pushers on not_full (park.h);
   * a change they wait for bumps the word under mu, the wake follows the
   * unlock. */
  _Atomic int not_empty, not_full;
  pthread_cond_t all_done;
  par_msg **ring;
  size_t size;            /* allocated slots */
  size_t head, count;
  size_t capacity;        /* 0: unbounded */
  int closed;
  size_t unfinished;       /* pushed, not yet marked done */
  int pop_sleepers, push_sleepers, poll_sleepers, join_sleepers;
  /* wake-ups sent on not_empty / not_full that no sleeper has come back
   * from yet: a sleeper stays counted until it re-takes mu, and a burst of
   * pushes must not make a system call each for one that is already awake */
  int empty_woken, full_woken;
  atomic_size_t avail;    /* == count, for the spin */
  atomic_int aclosed;     /* == closed, for the spin */
};

static void queue_destroy(par_object *o) {
  par_queue *q = (par_queue *)o;
  size_t i;
  for (i = 0; i < q->count; i++) par_msg_free(q->ring[(q->head + i) % q->size]);
  free(q->ring);
  pthread_cond_destroy(&q->all_done);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

const par_type par_queue_type = {"parallel.queue", queue_destroy};

par_queue *par_queue_new(size_t capacity) {
  par_queue *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->size = capacity && capacity < 16 ? capacity : 16;
  q->ring = malloc(q->size * sizeof *q->ring);
  if (!q->ring) { free(q); return NULL; }
  par_object_init(&q->hdr, &par_queue_type);
  pthread_mutex_init(&q->mu, NULL);
  atomic_init(&q->not_empty, 0);
  atomic_init(&q->not_full, 0);
  par_cond_init(&q->all_done);
  q->capacity = capacity;
  atomic_init(&q->avail, 0);
  atomic_init(&q->aclosed, 0);
  return q;
}

/* The ring as at most two contiguous runs: a batch moves in or out with
 * memcpy, not a division per item. */
static void ring_write(par_queue *q, size_t at, par_msg *const *src, size_t k) {
  size_t pos = (q->head + at) % q->size, first = q->size - pos;
  if (first > k) first = k;
  memcpy(q->ring + pos, src, first * sizeof *src);
  memcpy(q->ring, src + first, (k - first) * sizeof *src);
}

static void ring_read(par_queue *q, par_msg **dst, size_t k) {
  size_t first = q->size - q->head;
  if (first > k) first = k;
  memcpy(dst, q->ring + q->head, first * sizeof *dst);
  memcpy(dst + first, q->ring, (k - first) * sizeof *dst);
}

static int grow(par_queue *q) {
  size_t size = q->size * 2;
  par_msg **ring;
  if (q->capacity && size > q->capacity) size = q->capacity;
  ring = malloc(size * sizeof *ring);
  if (!ring) return 0;
  ring_read(q, ring, q->count);
  free(q->ring);
  q->ring = ring;
  q->size = size;
  q->head = 0;
  return 1;
}

/* A would-be sleeper spins first when the policy (wait.h) says it pays:
 * a handoff between two running threads is then a few cache misses
 * instead of a futex round trip. */
static int can_pop(void *ud) {
  par_queue *q = (par_queue *)ud;
  return atomic_load_explicit(&q->avail, memory_order_relaxed) > 0 ||
         atomic_load_explicit(&q->aclosed, memory_order_relaxed);
}

static int can_push(void *ud) {
  par_queue *q = (par_queue *)ud;
  return atomic_load_explicit(&q->avail, memory_order_relaxed) < q->capacity ||
         atomic_load_explicit(&q->aclosed, memory_order_relaxed);
}

static void spin(par_queue *q, int for_pop, double deadline) {
  par_spin(PAR_WAIT_QUEUE, for_pop ? can_pop : can_push, q, deadline);
}

/* With mu held: sleeps on word, counted in *sleepers, until woken or the
 * deadline (mu released meanwhile). PAR_OK or PAR_TIMEOUT; a waiter
 * looks again either way. Coming back settles one wake-up sent (*woken):
 * if this one was not woken, the count only runs low, which costs a spare
 * wake-up later, never a missed one. */
static int sleep_on(par_queue *q, _Atomic int *word, int *sleepers, int *woken, double deadline) {
  int seq = atomic_load_explicit(word, memory_order_relaxed), r;
  (*sleepers)++;
  pthread_mutex_unlock(&q->mu);
  r = par_park_wait(word, seq, deadline);
  pthread_mutex_lock(&q->mu);
  (*sleepers)--;
  if (*woken > 0) (*woken)--;
  return r;
}

/* With mu held: tells the sleepers on word that it changed; returns whom
 * to wake once mu is released (wake_after): none when every sleeper has a
 * wake-up on its way (each one sent makes at least one counted sleeper
 * return: the one it wakes, or all that see the word changed before they
 * park), else one, or all. */
enum { WAKE_NONE, WAKE_ONE, WAKE_ALL };
static int announce(_Atomic int *word, int sleepers, int *woken, int all) {
  if (sleepers <= *woken) return WAKE_NONE;
  atomic_fetch_add_explicit(word, 1, memory_order_relaxed);
  if (all) { *woken = sleepers; return WAKE_ALL; }
  (*woken)++;
  return WAKE_ONE;
}

static void wake_after(_Atomic int *word, int who) {
  if (who != WAKE_NONE) par_park_wake(word, who == WAKE_ALL);
}

/* A poller takes nothing: a wake-up it got would be lost to a popper. */
static int announce_items(par_queue *q, size_t k) {
  return announce(&q->not_empty, q->pop_sleepers + q->poll_sleepers, &q->empty_woken,
                  q->poll_sleepers || (q->pop_sleepers > 1 && k > 1));
}

int par_queue_push(par_queue *q, par_msg *m, double deadline) {
  int spun = 0, r = PAR_OK, who = WAKE_NONE;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    if (q->closed) { r = PAR_CLOSED; break; }
    if (!q->capacity || q->count < q->capacity) break;
    if (deadline <= 0) { r = PAR_TIMEOUT; break; }
    if (!spun) {
      spun = 1;
      pthread_mutex_unlock(&q->mu);
      spin(q, 0, deadline);
      pthread_mutex_lock(&q->mu);
      continue;
    }
    r = sleep_on(q, &q->not_full, &q->push_sleepers, &q->full_woken, deadline);
    if (r == PAR_TIMEOUT) {
      /* a slot freed at the last moment still counts */
      r = PAR_OK;
      if (q->closed) r = PAR_CLOSED;
      else if (q->count >= q->capacity) r = PAR_TIMEOUT;
      break;
    }
  }
  if (r == PAR_OK && q->count == q->size && !grow(q)) r = PAR_NOMEM;
  if (r == PAR_OK) {
    q->ring[(q->head + q->count) % q->size] = m;
    q->count++;
    q->unfinished++;
    atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
    who = announce_items(q, 1);
  }
  pthread_mutex_unlock(&q->mu);
  wake_after(&q->not_empty, who);
  return r;
}

int par_queue_unpop(par_queue *q, par_msg *m) {
  int r = PAR_OK, who = WAKE_NONE;
  pthread_mutex_lock(&q->mu);
  if (q->count == q->size) {
    /* grow() stops at the capacity: the one slot over it is made here */
    size_t cap = q->capacity;
    q->capacity = 0;
    if (!grow(q)) r = PAR_NOMEM;
    q->capacity = cap;
  }
  if (r == PAR_OK) {
    q->head = (q->head + q->size - 1) % q->size;
    q->ring[q->head] = m;
    q->count++;
    atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
    who = announce_items(q, 1);
  }
  pthread_mutex_unlock(&q->mu);
  wake_after(&q->not_empty, who);
  return r;
}

/* With mu held: waits (spinning first, once) until an item is there.
 * PAR_OK, PAR_CLOSED once closed and drained, or PAR_TIMEOUT. */
static int wait_for_item(par_queue *q, double deadline) {
  int spun = 0, r = PAR_OK;
  while (q->count == 0) {
    if (q->closed) { r = PAR_CLOSED; break; }
    if (deadline <= 0) { r = PAR_TIMEOUT; break; }
    if (!spun) {
      spun = 1;
      pthread_mutex_unlock(&q->mu);
      spin(q, 1, deadline);
      pthread_mutex_lock(&q->mu);
      continue;
    }
    r = sleep_on(q, &q->not_empty, &q->pop_sleepers, &q->empty_woken, deadline);
    if (r == PAR_TIMEOUT) {
      if (q->count) r = PAR_OK;
      else if (q->closed) r = PAR_CLOSED;
      break;
    }
  }
  return r;
}

int par_queue_pop(par_queue *q, par_msg **out, double deadline) {
  int r, who = WAKE_NONE;
  pthread_mutex_lock(&q->mu);
  r = wait_for_item(q, deadline);
  if (r == PAR_OK) {
    *out = q->ring[q->head];
    q->head = (q->head + 1) % q->size;
    q->count--;
    atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
    who = announce(&q->not_full, q->push_sleepers, &q->full_woken, 0);
  }
  pthread_mutex_unlock(&q->mu);
  wake_after(&q->not_full, who);
  return r;
}

/* Puts k messages behind the ring's tail (room and slots checked) and
 * announces them to the poppers they are for: one, or all for a batch;
 * returns whom to wake. */
static int put_run(par_queue *q, par_msg **ms, size_t k) {
  ring_write(q, q->count, ms, k);
  q->count += k;
  q->unfinished += k;
  atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
  return announce_items(q, k);
}

size_t par_queue_push_many(par_queue *q, par_msg **ms, size_t n, double deadline, int *status) {
  size_t done = 0;
  int spun = 0, r = PAR_OK, who = WAKE_NONE, w;
  pthread_mutex_lock(&q->mu);
  while (done < n) {
    size_t k = n - done;
    if (q->closed) { r = PAR_CLOSED; break; }
    if (q->capacity) {
      if (q->count >= q->capacity) {
        if (deadline <= 0) { r = PAR_TIMEOUT; break; }
        if (who != WAKE_NONE) {
          /* the poppers of what went in so far wake before this thread waits */
          pthread_mutex_unlock(&q->mu);
          wake_after(&q->not_empty, who);
          who = WAKE_NONE;
          pthread_mutex_lock(&q->mu);
          continue;
        }
        if (!spun) {
          spun = 1;
          pthread_mutex_unlock(&q->mu);
          spin(q, 0, deadline);
          pthread_mutex_lock(&q->mu);
          continue;
        }
        r = sleep_on(q, &q->not_full, &q->push_sleepers, &q->full_woken, deadline);
        if (r == PAR_TIMEOUT && !q->closed && q->count >= q->capacity) break;
        r = PAR_OK;
        continue;
      }
      if (k > q->capacity - q->count) k = q->capacity - q->count;
    }
    while (q->count + k > q->size)
      if (!grow(q)) break;
    if (q->count + k > q->size) { r = PAR_NOMEM; break; }
    w = put_run(q, ms + done, k);
    /* two runs' announcements: wake them all (a spare wake-up is harmless) */
    if (w != WAKE_NONE) who = who == WAKE_NONE ? w : WAKE_ALL;
    done += k;
  }
  pthread_mutex_unlock(&q->mu);
  wake_after(&q->not_empty, who);
  *status = r;
  return done;
}

par_msg **par_queue_pop_many(par_queue *q, size_t max, double deadline, size_t *n, int *status) {
  par_msg **out = NULL;
  size_t k = 0;
  int r, who = WAKE_NONE;
  pthread_mutex_lock(&q->mu);
  r = wait_for_item(q, deadline);
  if (r == PAR_OK) {
    k = q->count < max ? q->count : max;
    out = malloc(k * sizeof *out);
    if (!out) { k = 0; r = PAR_NOMEM; }
  }
  if (k) {
    ring_read(q, out, k);
    q->head = (q->head + k) % q->size;
    q->count -= k;
    atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
    who = announce(&q->not_full, q->push_sleepers, &q->full_woken, q->push_sleepers > 1 && k > 1);
  }
  pthread_mutex_unlock(&q->mu);
  wake_after(&q->not_full, who);
  *n = k;
  *status = r;
  return out;
}

void par_queue_close(par_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  atomic_store_explicit(&q->aclosed, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&q->not_empty, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&q->not_full, 1, memory_order_relaxed);
  pthread_mutex_unlock(&q->mu);
  par_park_wake(&q->not_empty, 1);
  par_park_wake(&q->not_full, 1);
}

int par_queue_closed(par_queue *q) {
  return atomic_load_explicit(&q->aclosed, memory_order_relaxed);
}

size_t par_queue_count(par_queue *q) {
  return atomic_load_explicit(&q->avail, memory_order_relaxed);
}

size_t par_queue_capacity(par_queue *q) {
  return q->capacity;
}

int par_queue_poll(par_queue *q, double deadline) {
  int r = PAR_OK;
  pthread_mutex_lock(&q->mu);
  while (q->count == 0 && !q->closed && deadline > 0) {
    r = sleep_on(q, &q->not_empty, &q->poll_sleepers, &q->empty_woken, deadline);
    if (r == PAR_TIMEOUT) break;
  }
  if (q->count) r = PAR_OK;
  else if (q->closed) r = PAR_CLOSED;
  else r = PAR_TIMEOUT;
  pthread_mutex_unlock(&q->mu);
  return r;
}

int par_queue_task_done(par_queue *q) {
  int r = PAR_OK;
  pthread_mutex_lock(&q->mu);
  if (q->unfinished == 0) r = PAR_ERROR;
  else if (--q->unfinished == 0 && q->join_sleepers) pthread_cond_broadcast(&q->all_done);
  pthread_mutex_unlock(&q->mu);
  return r;
}

int par_queue_join(par_queue *q, double deadline) {
  int r = PAR_OK;
  pthread_mutex_lock(&q->mu);
  while (q->unfinished > 0) {
    q->join_sleepers++;
    r = par_cond_wait_until(&q->all_done, &q->mu, deadline);
    q->join_sleepers--;
    if (r == PAR_TIMEOUT) break;
  }
  r = q->unfinished == 0 ? PAR_OK : PAR_TIMEOUT;
  pthread_mutex_unlock(&q->mu);
  return r;
}
