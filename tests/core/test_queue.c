/* The queue without Lua: order, capacity, timeouts, close, and a
 * producer/consumer pair that must neither lose nor duplicate an item. */
#include <pthread.h>
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
  DONE("queue");
}
