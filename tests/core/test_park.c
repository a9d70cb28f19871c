/* Parking on a word without Lua: a changed word or a passed deadline
 * returns at once, a deadline ends a wait, and many waiters, each woken
 * after its word changes, never miss the change (a lost wake-up would
 * hang here, and the alarm fails it). */
#include <pthread.h>
#include <unistd.h>
#include "check.h"
#include "core/clock.h"
#include "core/object.h"
#include "core/park.h"

#define ROUNDS 20000

static _Atomic int ping, pong;

/* Waits for each value of ping in turn and answers on pong. */
static void *echo(void *arg) {
  int i, v;
  (void)arg;
  for (i = 1; i <= ROUNDS; i++) {
    while ((v = atomic_load(&ping)) != i) par_park_wait(&ping, v, PAR_FOREVER);
    atomic_store(&pong, i);
    par_park_wake(&pong, 0);
  }
  return NULL;
}

int main(void) {
  _Atomic int word = 5;
  pthread_t t;
  int i, v;

  alarm(120);
  CHECK_EQ(par_park_wait(&word, 4, par_deadline(10)), PAR_OK);   /* not the value: no sleep */
  CHECK_EQ(par_park_wait(&word, 5, par_now() - 1), PAR_TIMEOUT);
  CHECK_EQ(par_park_wait(&word, 5, par_deadline(0.02)), PAR_TIMEOUT);
  par_park_wake(&word, 1);                                        /* nobody there: harmless */

  pthread_create(&t, NULL, echo, NULL);
  for (i = 1; i <= ROUNDS; i++) {
    atomic_store(&ping, i);
    par_park_wake(&ping, 0);
    while ((v = atomic_load(&pong)) != i) par_park_wait(&pong, v, PAR_FOREVER);
  }
  pthread_join(t, NULL);
  CHECK_EQ(atomic_load(&pong), ROUNDS);
  DONE("park");
}
