#include "queue.h"
#include "clock.h"
#include "wait.h"

#include <stdlib.h>
#include <string.h>

struct par_queue {
  par_object hdr;
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full, all_done;
  par_msg **ring;
  size_t size;            /* allocated slots */
  size_t head, count;
  size_t capacity;        /* 0: unbounded */
  int closed;
  size_t unfinished;       /* pushed, not yet marked done */
  int pop_sleepers, push_sleepers, poll_sleepers, join_sleepers;
  atomic_size_t avail;    /* == count, for the spin */
  atomic_int aclosed;     /* == closed, for the spin */
};

static void queue_destroy(par_object *o) {
  par_queue *q = (par_queue *)o;
  size_t i;
  for (i = 0; i < q->count; i++) par_msg_free(q->ring[(q->head + i) % q->size]);
  free(q->ring);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
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
  par_cond_init(&q->not_empty);
  par_cond_init(&q->not_full);
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

int par_queue_push(par_queue *q, par_msg *m, double deadline) {
  int spun = 0, r = PAR_OK;
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
    q->push_sleepers++;
    r = par_cond_wait_until(&q->not_full, &q->mu, deadline);
    q->push_sleepers--;
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
    /* A poller takes nothing: a signal it got would be lost to a popper. */
    if (q->poll_sleepers) pthread_cond_broadcast(&q->not_empty);
    else if (q->pop_sleepers) pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}

int par_queue_unpop(par_queue *q, par_msg *m) {
  int r = PAR_OK;
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
    if (q->poll_sleepers) pthread_cond_broadcast(&q->not_empty);
    else if (q->pop_sleepers) pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->mu);
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
    q->pop_sleepers++;
    r = par_cond_wait_until(&q->not_empty, &q->mu, deadline);
    q->pop_sleepers--;
    if (r == PAR_TIMEOUT) {
      if (q->count) r = PAR_OK;
      else if (q->closed) r = PAR_CLOSED;
      break;
    }
  }
  return r;
}

int par_queue_pop(par_queue *q, par_msg **out, double deadline) {
  int r;
  pthread_mutex_lock(&q->mu);
  r = wait_for_item(q, deadline);
  if (r == PAR_OK) {
    *out = q->ring[q->head];
    q->head = (q->head + 1) % q->size;
    q->count--;
    atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
    if (q->push_sleepers) pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}

/* Puts k messages behind the ring's tail (room and slots checked) and
 * wakes the poppers they are for: one signal, or all for a batch. */
static void put_run(par_queue *q, par_msg **ms, size_t k) {
  ring_write(q, q->count, ms, k);
  q->count += k;
  q->unfinished += k;
  atomic_store_explicit(&q->avail, q->count, memory_order_relaxed);
  /* A poller takes nothing: a signal it got would be lost to a popper. */
  if (q->poll_sleepers || (q->pop_sleepers > 1 && k > 1)) pthread_cond_broadcast(&q->not_empty);
  else if (q->pop_sleepers) pthread_cond_signal(&q->not_empty);
}

size_t par_queue_push_many(par_queue *q, par_msg **ms, size_t n, double deadline, int *status) {
  size_t done = 0;
  int spun = 0, r = PAR_OK;
  pthread_mutex_lock(&q->mu);
  while (done < n) {
    size_t k = n - done;
    if (q->closed) { r = PAR_CLOSED; break; }
    if (q->capacity) {
      if (q->count >= q->capacity) {
        if (deadline <= 0) { r = PAR_TIMEOUT; break; }
        if (!spun) {
          spun = 1;
          pthread_mutex_unlock(&q->mu);
          spin(q, 0, deadline);
          pthread_mutex_lock(&q->mu);
          continue;
        }
        q->push_sleepers++;
        r = par_cond_wait_until(&q->not_full, &q->mu, deadline);
        q->push_sleepers--;
        if (r == PAR_TIMEOUT && !q->closed && q->count >= q->capacity) break;
        r = PAR_OK;
        continue;
      }
      if (k > q->capacity - q->count) k = q->capacity - q->count;
    }
    while (q->count + k > q->size)
      if (!grow(q)) break;
    if (q->count + k > q->size) { r = PAR_NOMEM; break; }
    put_run(q, ms + done, k);
    done += k;
  }
  pthread_mutex_unlock(&q->mu);
  *status = r;
  return done;
}

par_msg **par_queue_pop_many(par_queue *q, size_t max, double deadline, size_t *n, int *status) {
  par_msg **out = NULL;
  size_t k = 0;
  int r;
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
    if (q->push_sleepers > 1 && k > 1) pthread_cond_broadcast(&q->not_full);
    else if (q->push_sleepers) pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->mu);
  *n = k;
  *status = r;
  return out;
}

void par_queue_close(par_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  atomic_store_explicit(&q->aclosed, 1, memory_order_relaxed);
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->mu);
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
    q->poll_sleepers++;
    r = par_cond_wait_until(&q->not_empty, &q->mu, deadline);
    q->poll_sleepers--;
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
