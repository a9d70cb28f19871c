/* The pool without Lua: a pool whose "run" doubles a number. Every
 * submitted task runs exactly once and finishes; a shutdown that cancels
 * leaves queued tasks cancelled, never half-run; closed pools refuse. */
#include <pthread.h>
#include <stdlib.h>
#include "check.h"
#include "msgutil.h"
#include "core/clock.h"
#include "core/pool.h"

#define TASKS 2000

static _Atomic int started_workers, stopped_workers;

static void *start(void *ud, int index, _Atomic int *interrupted) {
  atomic_fetch_add(&started_workers, 1);
  return ud;
}
static void run(void *ctx, par_future *f) {
  par_future_finish(f, PAR_DONE, msg_of(2 * msg_value(f->task)));
}
static void nothing(void *ctx) {}
static void stop(void *ctx) { atomic_fetch_add(&stopped_workers, 1); }

static const par_pool_ops ops = { start, run, nothing, nothing, stop, NULL, NULL, NULL, NULL };

/* Recycling: a context serves RECYCLE_AFTER tasks, then the worker opens a
 * fresh one; a task that shuts down its own pool does not join itself. */
#define RECYCLE_AFTER 5
typedef struct counted { int tasks; } counted;
static _Atomic int opened, closed, overworked;
static par_pool *recycling;

static void *start_counted(void *ud, int index, _Atomic int *interrupted) {
  atomic_fetch_add(&opened, 1);
  return calloc(1, sizeof(counted));
}
static void run_counted(void *ctx, par_future *f) {
  counted *c = (counted *)ctx;
  long v = msg_value(f->task);
  if (++c->tasks > RECYCLE_AFTER) atomic_fetch_add(&overworked, 1);
  if (v < 0) par_pool_shutdown(recycling, 1, 0, 1);   /* its own pool: returns */
  par_future_finish(f, PAR_DONE, msg_of(2 * v));
}
static void stop_counted(void *ctx) { atomic_fetch_add(&closed, 1); free(ctx); }
static int spent(void *ctx) { return ((counted *)ctx)->tasks >= RECYCLE_AFTER; }

static const par_pool_ops counted_ops = {
  start_counted, run_counted, nothing, nothing, stop_counted, NULL, NULL, NULL, spent
};

static void test_recycling(void) {
  par_future *fs[100], *own;
  int i;
  recycling = par_pool_new(2, &counted_ops, NULL);
  CHECK(recycling != NULL);
  for (i = 0; i < 100; i++) {
    fs[i] = par_future_new(0, msg_of(i));
    CHECK_EQ(par_pool_submit(recycling, fs[i]), PAR_OK);
  }
  for (i = 0; i < 100; i++) {
    CHECK_EQ(par_future_wait(fs[i], par_deadline(30)), PAR_OK);
    CHECK_EQ(msg_value(fs[i]->result), 2L * i);
    par_object_release(&fs[i]->hdr);
  }
  CHECK_EQ(atomic_load(&overworked), 0);
  CHECK(atomic_load(&opened) >= 100 / RECYCLE_AFTER);
  own = par_future_new(0, msg_of(-1));
  CHECK_EQ(par_pool_submit(recycling, own), PAR_OK);
  CHECK_EQ(par_future_wait(own, par_deadline(30)), PAR_OK);
  CHECK_EQ(msg_value(own->result), -2L);
  CHECK(par_pool_is_shut_down(recycling));
  par_object_release(&own->hdr);
  par_pool_shutdown(recycling, 1, 0, 0);      /* joins both workers, this time */
  CHECK_EQ(atomic_load(&opened), atomic_load(&closed));
  CHECK(atomic_load(&opened) <= 100 / RECYCLE_AFTER + 3);
  par_object_release(&recycling->hdr);
}

int main(void) {
  static int ctx;
  par_pool *p = par_pool_new(3, &ops, &ctx);
  par_future *fs[TASKS], *late;
  int i, cancelled = 0, done = 0;

  CHECK(p != NULL);
  for (i = 0; i < TASKS; i++) {
    fs[i] = par_future_new(0, msg_of(i));
    CHECK_EQ(par_pool_submit(p, fs[i]), PAR_OK);
  }
  for (i = 0; i < TASKS; i++) {
    CHECK_EQ(par_future_wait(fs[i], par_deadline(30)), PAR_OK);
    CHECK_EQ(atomic_load(&fs[i]->state), PAR_DONE);
    CHECK_EQ(msg_value(fs[i]->result), 2L * i);
    par_object_release(&fs[i]->hdr);
  }
  CHECK_EQ(atomic_load(&p->completed), TASKS);

  /* queue more, then shut down cancelling: each task is either done or cancelled */
  for (i = 0; i < TASKS; i++) {
    fs[i] = par_future_new(0, msg_of(i));
    CHECK_EQ(par_pool_submit(p, fs[i]), PAR_OK);
  }
  par_pool_shutdown(p, 1, 1, 0);
  for (i = 0; i < TASKS; i++) {
    int st = atomic_load(&fs[i]->state);
    CHECK(st == PAR_DONE || st == PAR_CANCELLED);
    if (st == PAR_DONE) { done++; CHECK_EQ(msg_value(fs[i]->result), 2L * i); }
    else cancelled++;
    par_object_release(&fs[i]->hdr);
  }
  CHECK_EQ(done + cancelled, TASKS);
  CHECK_EQ(atomic_load(&started_workers), 3);
  CHECK_EQ(atomic_load(&stopped_workers), 3);

  late = par_future_new(0, msg_of(0));
  CHECK_EQ(par_pool_submit(p, late), PAR_CLOSED);
  par_object_release(&late->hdr);
  par_pool_shutdown(p, 1, 1, 0);   /* safe to repeat */
  par_object_release(&p->hdr);
  test_recycling();
  DONE("pool");
}
