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
  DONE("queue");
}
