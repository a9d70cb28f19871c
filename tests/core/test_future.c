/* Futures and waitsets without Lua: claim/cancel races resolve to one
 * winner, finish wakes a waiter on another thread, a waitset returns each
 * finished future exactly once. */
#include <pthread.h>
#include "check.h"
#include "msgutil.h"
#include "core/clock.h"
#include "core/future.h"

#define N 64

static void *finisher(void *arg) {
  par_future **fs = arg;
  int i;
  for (i = N - 1; i >= 0; i--) {   /* in reverse: the waitset must not care */
    if (par_future_claim(fs[i])) par_future_finish(fs[i], PAR_DONE, msg_of(i));
  }
  return NULL;
}

static void *canceller(void *arg) {
  return (void *)(long)par_future_cancel(arg);
}

int main(void) {
  par_future *f = par_future_new(0, msg_of(7)), *fs[N], *g;
  par_waitset *ws;
  pthread_t t;
  int i, st, seen[N] = {0}, round;
  void *r;

  CHECK(f != NULL);
  CHECK_EQ(atomic_load(&f->state), PAR_PENDING);
  CHECK_EQ(par_future_wait(f, par_deadline(0.01)), PAR_TIMEOUT);
  CHECK(par_future_claim(f));
  CHECK(!par_future_claim(f));        /* only one runner */
  CHECK(!par_future_cancel(f));       /* too late to cancel */
  par_future_finish(f, PAR_DONE, msg_of(42));
  CHECK_EQ(par_future_wait(f, 0), PAR_OK);
  CHECK_EQ(msg_value(f->result), 42);
  par_object_release(&f->hdr);

  /* claim against cancel from another thread: exactly one wins, each round */
  for (round = 0; round < 200; round++) {
    int claimed;
    f = par_future_new(0, msg_of(round));
    pthread_create(&t, NULL, canceller, f);
    claimed = par_future_claim(f);
    pthread_join(t, &r);
    CHECK_EQ(claimed + (int)(long)r, 1);
    if (claimed) par_future_finish(f, PAR_DONE, NULL);
    CHECK(par_future_is_terminal(atomic_load(&f->state)));
    par_object_release(&f->hdr);
  }

  /* a waitset over N futures finished by another thread */
  ws = par_waitset_new();
  CHECK(ws != NULL);
  for (i = 0; i < N; i++) {
    fs[i] = par_future_new(0, msg_of(i));
    CHECK(par_waitset_add(ws, fs[i]));
  }
  CHECK_EQ(par_waitset_pending(ws), N);
  pthread_create(&t, NULL, finisher, fs);
  for (i = 0; i < N; i++) {
    g = par_waitset_next(ws, par_deadline(10), &st);
    CHECK(g != NULL);
    CHECK_EQ(atomic_load(&g->state), PAR_DONE);
    CHECK_EQ(seen[msg_value(g->result)]++, 0);
    par_object_release(&g->hdr);
  }
  pthread_join(t, NULL);
  CHECK_EQ(par_waitset_pending(ws), 0);
  g = par_waitset_next(ws, par_deadline(0.01), &st);
  CHECK(g == NULL);
  par_waitset_release(ws);
  for (i = 0; i < N; i++) par_object_release(&fs[i]->hdr);

  /* groups: finished when sealed and every member is; the worst outcome */
  {
    par_future *grp = par_future_group_new(), *a = par_future_new(1, msg_of(1)),
               *b = par_future_new(1, msg_of(2)), *c = par_future_new(1, msg_of(3));
    long first;
    CHECK(grp && a && b && c);
    CHECK(par_future_claim(a));
    par_future_finish(a, PAR_DONE, msg_of(10));           /* finished before joining */
    CHECK(par_future_group_add(grp, a, 1));
    CHECK(par_future_group_add(grp, b, 2));
    CHECK(par_future_group_add(grp, c, 3));
    CHECK_EQ(par_future_group_size(grp), 3);
    CHECK(par_future_group_member(grp, 2, &first) == c);
    CHECK_EQ(first, 3);
    CHECK(par_future_claim(b));
    CHECK(par_future_cancel(grp));                         /* c had not started */
    CHECK_EQ(par_future_state(c), PAR_CANCELLED);
    par_future_finish(b, PAR_DONE, msg_of(20));
    CHECK_EQ(par_future_state(grp), PAR_PENDING);          /* not sealed yet */
    par_future_group_seal(grp, 3);
    CHECK_EQ(par_future_state(grp), PAR_CANCELLED);
    CHECK_EQ(par_future_group_items(grp), 3);
    par_object_release(&a->hdr);
    par_object_release(&b->hdr);
    par_object_release(&c->hdr);
    par_object_release(&grp->hdr);
  }
  DONE("future");
}
