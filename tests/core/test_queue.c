/* The queue without Lua: order, capacity, timeouts, close, and a
 * producer/consumer pair that must neither lose nor duplicate an item. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include "check.h"
#include "msgutil.h"
#include "core/clock.h"
#include "core/queue.h"

#define ITEMS 100000

static void *producer(void *arg) {
  par_queue *q = arg;
  long i;
  for (i = 0; i < ITEMS; i++) {
    par_msg *m = msg_of(i);
    if (par_queue_push(q, m, par_deadline(-1)) != PAR_OK) { par_msg_free(m); return (void *)1; }
  }
  par_queue_close(q);
  return NULL;
}

/* Pushes values first..first+n-1 as one batch; all must go in. */
static void push_run(par_queue *q, long first, size_t n) {
  par_msg *ms[64];
  size_t i;
  int st;
  for (i = 0; i < n; i++) ms[i] = msg_of(first + (long)i);
  CHECK_EQ(par_queue_push_many(q, ms, n, 0, &st), n);
  CHECK_EQ(st, PAR_OK);
}

/* Pops a batch of exactly n items, expecting *next, *next+1, ... */
static void pop_run(par_queue *q, size_t max, size_t n, long *next) {
  size_t got, i;
  int st;
  par_msg **ms = par_queue_pop_many(q, max, 0, &got, &st);
  CHECK(ms != NULL);
  CHECK_EQ(st, PAR_OK);
  CHECK_EQ(got, n);
  for (i = 0; i < got; i++) {
    CHECK_EQ(msg_value(ms[i]), *next);
    (*next)++;
    par_msg_free(ms[i]);
  }
  free(ms);
}

/* Batches that cross the ring's end (bounded: it never grows) and a ring
 * that grows while its items wrap around: order kept, nothing lost. */
static void batches_across_the_wrap(void) {
  par_queue *q = par_queue_new(10);
  par_msg *ms[16];
  long next = 0, v = 0;
  size_t i, n;
  int st, round;
  for (round = 0; round < 40; round++) {
    /* the ring's head walks round by 3, 7, 4... so runs start anywhere */
    size_t in = (size_t)(round % 7) + 3;
    push_run(q, v, in);
    v += (long)in;
    pop_run(q, in - 1, in - 1, &next);
    pop_run(q, 10, 1, &next);
  }
  /* a run longer than the room left: the first ones go in, the rest stay ours */
  push_run(q, v, 6);
  v += 6;
  for (i = 0; i < 8; i++) ms[i] = msg_of(v + (long)i);
  n = par_queue_push_many(q, ms, 8, 0, &st);
  CHECK_EQ(n, 4);
  CHECK_EQ(st, PAR_TIMEOUT);
  for (i = n; i < 8; i++) par_msg_free(ms[i]);
  pop_run(q, 100, 10, &next);
  par_object_release((par_object *)q);

  q = par_queue_new(0);
  next = 0;
  push_run(q, 0, 12);
  pop_run(q, 9, 9, &next);      /* head at 9 of 16 slots */
  push_run(q, 12, 10);          /* wraps: 13 items in 16 slots */
  push_run(q, 22, 40);          /* grows twice from a wrapped ring */
  pop_run(q, 1000, 53, &next);
  CHECK_EQ(next, 62);
  par_object_release((par_object *)q);
}


/* Several pushers and poppers at once, item by item and in batches, some
 * popped items put back, with timeouts that make them sleep and wake:
 * every item arrives exactly once, and join sees every one marked done.
 * (Pushers and poppers take different locks: queue.c.) */
#define MPMC_SIDES 3
#define MPMC_PER 20000
static par_queue *mq;
static _Atomic unsigned char seen[MPMC_SIDES * MPMC_PER];
static _Atomic long taken;

static void *mpmc_pusher(void *arg) {
  long base = (long)(intptr_t)arg * MPMC_PER, i = 0;
  while (i < MPMC_PER) {
    if (i % 3 == 0) {
      par_msg *ms[8];
      size_t n = MPMC_PER - i < 8 ? (size_t)(MPMC_PER - i) : 8, k, done;
      int st;
      for (k = 0; k < n; k++) ms[k] = msg_of(base + i + (long)k);
      done = par_queue_push_many(mq, ms, n, par_deadline(0.001), &st);
      for (k = done; k < n; k++) par_msg_free(ms[k]);
      i += (long)done;
    } else {
      par_msg *m = msg_of(base + i);
      if (par_queue_push(mq, m, par_deadline(0.001)) == PAR_OK) i++;
      else par_msg_free(m);
    }
  }
  return NULL;
}

static void take(par_msg *m) {
  long v = msg_value(m);
  if (v >= 0 && v < MPMC_SIDES * MPMC_PER) atomic_fetch_add(&seen[v], 1);
  par_msg_free(m);
  atomic_fetch_add(&taken, 1);
  par_queue_task_done(mq);
}

static void *mpmc_popper(void *arg) {
  unsigned r = (unsigned)(intptr_t)arg * 2654435761u + 1;
  for (;;) {
    par_msg *m;
    int st;
    r = r * 1103515245u + 12345u;
    if (r >> 28 == 0) {
      size_t n, k;
      par_msg **ms = par_queue_pop_many(mq, 5, par_deadline(0.001), &n, &st);
      if (st == PAR_CLOSED) break;
      for (k = 0; k < n; k++) take(ms[k]);
      free(ms);
      continue;
    }
    st = par_queue_pop(mq, &m, par_deadline(0.001));
    if (st == PAR_CLOSED) break;
    if (st != PAR_OK) continue;
    if (r >> 26 == 1) { CHECK_EQ(par_queue_unpop(mq, m), PAR_OK); continue; }
    take(m);
  }
  return NULL;
}

static void many_pushers_and_poppers(size_t capacity) {
  pthread_t pu[MPMC_SIDES], po[MPMC_SIDES];
  long i;
  mq = par_queue_new(capacity);
  atomic_store(&taken, 0);
  for (i = 0; i < MPMC_SIDES * MPMC_PER; i++) atomic_store(&seen[i], 0);
  for (i = 0; i < MPMC_SIDES; i++) {
    pthread_create(&pu[i], NULL, mpmc_pusher, (void *)(intptr_t)i);
    pthread_create(&po[i], NULL, mpmc_popper, (void *)(intptr_t)i);
  }
  for (i = 0; i < MPMC_SIDES; i++) pthread_join(pu[i], NULL);
  CHECK_EQ(par_queue_join(mq, par_deadline(60)), PAR_OK);
  par_queue_close(mq);
  for (i = 0; i < MPMC_SIDES; i++) pthread_join(po[i], NULL);
  CHECK_EQ(atomic_load(&taken), MPMC_SIDES * MPMC_PER);
  for (i = 0; i < MPMC_SIDES * MPMC_PER; i++)
    if (atomic_load(&seen[i]) != 1) CHECK_EQ(atomic_load(&seen[i]), 1);
  CHECK_EQ(par_queue_count(mq), 0);
  CHECK_EQ(par_queue_task_done(mq), PAR_ERROR);
  par_object_release((par_object *)mq);
}

/* An item put back into a bounded queue that the pushers last saw with
 * room: the pushers must count it (queue.c keeps their snapshot of the
 * poppers' counter from running ahead of it). */
static void put_back_fills_the_queue(void) {
  par_queue *q = par_queue_new(3);
  par_msg *m, *held;
  long v, expect[] = {2, 3, 4};
  int i;
  for (v = 1; v <= 3; v++) CHECK_EQ(par_queue_push(q, msg_of(v), 0), PAR_OK);
  CHECK_EQ(par_queue_pop(q, &m, 0), PAR_OK);
  par_msg_free(m);
  CHECK_EQ(par_queue_pop(q, &held, 0), PAR_OK);   /* 2, put back below */
  /* the pushers saw the queue full: this push makes them look again */
  CHECK_EQ(par_queue_push(q, msg_of(4), 0), PAR_OK);
  CHECK_EQ(par_queue_unpop(q, held), PAR_OK);
  CHECK_EQ(par_queue_count(q), 3);
  m = msg_of(5);
  CHECK_EQ(par_queue_push(q, m, 0), PAR_TIMEOUT);
  par_msg_free(m);
  for (i = 0; i < 3; i++) {
    CHECK_EQ(par_queue_pop(q, &m, 0), PAR_OK);
    CHECK_EQ(msg_value(m), expect[i]);
    par_msg_free(m);
  }
  CHECK_EQ(par_queue_pop(q, &m, 0), PAR_TIMEOUT);
  par_object_release((par_object *)q);
}

/* A popped batch put back in one go: in order at the head, before what was
 * pushed meanwhile, past a full bounded queue's capacity and its ring
 * (which grows), skipping the entries the caller kept. */
static void put_back_a_batch(void) {
  par_queue *q = par_queue_new(4);
  par_msg **ms, *m;
  size_t n = 0, i;
  long v, expect[] = {1, 2, 4, 5, 6, 7, 8};
  int st;
  for (v = 1; v <= 4; v++) CHECK_EQ(par_queue_push(q, msg_of(v), 0), PAR_OK);
  ms = par_queue_pop_many(q, 10, 0, &n, &st);
  CHECK(ms != NULL);
  CHECK_EQ(n, 4);
  for (v = 5; v <= 8; v++) CHECK_EQ(par_queue_push(q, msg_of(v), 0), PAR_OK);
  par_msg_free(ms[2]);   /* 3: the caller keeps it out */
  ms[2] = NULL;
  CHECK_EQ(par_queue_unpop_all(q, ms, n), PAR_OK);
  free(ms);
  CHECK_EQ(par_queue_count(q), 7);
  m = msg_of(9);
  CHECK_EQ(par_queue_push(q, m, 0), PAR_TIMEOUT);
  par_msg_free(m);
  for (i = 0; i < 7; i++) {
    CHECK_EQ(par_queue_pop(q, &m, 0), PAR_OK);
    CHECK_EQ(msg_value(m), expect[i]);
    par_msg_free(m);
  }
  CHECK_EQ(par_queue_pop(q, &m, 0), PAR_TIMEOUT);
  CHECK_EQ(par_queue_unpop_all(q, NULL, 0), PAR_OK);
  par_object_release((par_object *)q);
}

int main(void) {
  par_queue *q = par_queue_new(2);
  par_msg *m = NULL;
  pthread_t t;
  long i, expect = 0;
  int st;

  CHECK(q != NULL);
  CHECK_EQ(par_queue_capacity(q), 2);
  CHECK_EQ(par_queue_push(q, msg_of(1), 0), PAR_OK);
  CHECK_EQ(par_queue_push(q, msg_of(2), 0), PAR_OK);
  /* full: a push that may not wait times out and keeps its message */
  m = msg_of(3);
  CHECK_EQ(par_queue_push(q, m, par_deadline(0.01)), PAR_TIMEOUT);
  par_msg_free(m);
  CHECK_EQ(par_queue_count(q), 2);
  CHECK_EQ(par_queue_pop(q, &m, 0), PAR_OK);
  CHECK_EQ(msg_value(m), 1);
  par_msg_free(m);
  par_queue_close(q);
  CHECK(par_queue_closed(q));
  m = msg_of(4);   /* refused: still ours */
  CHECK_EQ(par_queue_push(q, m, 0), PAR_CLOSED);
  par_msg_free(m);
  /* pops drain what is left, then report closed */
  CHECK_EQ(par_queue_pop(q, &m, 0), PAR_OK);
  CHECK_EQ(msg_value(m), 2);
  par_msg_free(m);
  CHECK_EQ(par_queue_pop(q, &m, par_deadline(1)), PAR_CLOSED);
  par_object_release((par_object *)q);

  /* one producer, this thread consuming, a small capacity: every item once, in order */
  q = par_queue_new(16);
  pthread_create(&t, NULL, producer, q);
  for (;;) {
    st = par_queue_pop(q, &m, par_deadline(-1));
    if (st == PAR_CLOSED) break;
    CHECK_EQ(st, PAR_OK);
    CHECK_EQ(msg_value(m), expect);
    expect++;
    par_msg_free(m);
  }
  pthread_join(t, (void **)&i);
  CHECK_EQ(i, 0);
  CHECK_EQ(expect, ITEMS);
  par_object_release((par_object *)q);
  batches_across_the_wrap();
  put_back_fills_the_queue();
  put_back_a_batch();
  many_pushers_and_poppers(7);
  many_pushers_and_poppers(0);
  DONE("queue");
}
