/* Locks, semaphores, events and barriers without Lua: mutual exclusion
 * under contention, counts that add up, timeouts that time out. */
#include <pthread.h>
#include "check.h"
#include "core/clock.h"
#include "core/sync.h"

#define THREADS 4
#define ROUNDS 20000

static par_lock *lock;
static par_semaphore *sem;
static par_barrier *barrier;
static par_event *go;
static long counter, passed;

static void *locker(void *arg) {
  int i;
  par_event_wait(go, par_deadline(-1));
  for (i = 0; i < ROUNDS; i++) {
    if (par_lock_acquire(lock, par_deadline(-1)) != PAR_OK) return (void *)1;
    counter++;   /* not atomic: only the lock makes it exact */
    par_lock_release(lock);
  }
  return NULL;
}

static void *barrier_party(void *arg) {
  par_barrier_waiter w;
  long index;
  int i;
  for (i = 0; i < 100; i++) {
    if (par_barrier_arrive(barrier, &w, &index, par_deadline(10)) != PAR_OK) return (void *)1;
    if (index < THREADS && par_barrier_wait(barrier, &w, par_deadline(10)) != PAR_OK)
      return (void *)1;
    __atomic_add_fetch(&passed, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

int main(void) {
  pthread_t t[THREADS];
  void *r;
  int i;

  lock = par_lock_new();
  go = par_event_new();
  CHECK(lock && go);
  CHECK(par_lock_try(lock));
  CHECK(!par_lock_try(lock));
  CHECK(par_lock_locked(lock));
  CHECK_EQ(par_lock_acquire(lock, par_deadline(0.01)), PAR_TIMEOUT);
  CHECK_EQ(par_lock_release(lock), PAR_OK);
  CHECK_EQ(par_lock_release(lock), PAR_ERROR);   /* not held */

  for (i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, locker, NULL);
  CHECK(!par_event_is_set(go));
  par_event_set(go);
  for (i = 0; i < THREADS; i++) { pthread_join(t[i], &r); CHECK(r == NULL); }
  CHECK_EQ(counter, (long)THREADS * ROUNDS);

  sem = par_semaphore_new(2, 2);
  CHECK_EQ(par_semaphore_acquire(sem, 0), PAR_OK);
  CHECK_EQ(par_semaphore_acquire(sem, 0), PAR_OK);
  CHECK_EQ(par_semaphore_acquire(sem, par_deadline(0.01)), PAR_TIMEOUT);
  CHECK_EQ(par_semaphore_release(sem, 2), PAR_OK);
  CHECK_EQ(par_semaphore_value(sem), 2);
  CHECK_EQ(par_semaphore_release(sem, 1), PAR_ERROR);   /* bounded at 2 */
  CHECK_EQ(par_semaphore_value(sem), 2);

  barrier = par_barrier_new(THREADS, NULL);
  for (i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, barrier_party, NULL);
  for (i = 0; i < THREADS; i++) { pthread_join(t[i], &r); CHECK(r == NULL); }
  CHECK_EQ(passed, THREADS * 100);
  CHECK(!par_barrier_broken(barrier));
  par_barrier_abort(barrier);
  CHECK(par_barrier_broken(barrier));
  {
    par_barrier_waiter w;
    long index;
    CHECK_EQ(par_barrier_arrive(barrier, &w, &index, 0), PAR_ERROR);
  }
  par_barrier_reset(barrier);
  CHECK(!par_barrier_broken(barrier));

  par_object_release((par_object *)lock);
  par_object_release((par_object *)go);
  par_object_release((par_object *)sem);
  par_object_release((par_object *)barrier);
  DONE("sync");
}
