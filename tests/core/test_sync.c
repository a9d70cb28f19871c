/* Locks, semaphores, events and barriers without Lua: mutual exclusion
 * under contention, counts that add up, timeouts that time out. A lost
 * wake-up hangs a lock waiter with no deadline: the alarm fails it. */
#include <pthread.h>
#include <unistd.h>
#include "check.h"
#include "core/clock.h"
#include "core/sync.h"
#include "core/wait.h"

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

/* Odd threads give up after 0-63 us and try again, counting the misses;
 * a waiter woken just as its deadline passed must pass the wake-up on to
 * the even ones, which wait with no deadline. The lock is held ~2 us and
 * nothing spins, so that waiters sleep and deadlines pass while asleep. */
#define TIMED_ROUNDS 5000
static long misses;

static void *timed_locker(void *arg) {
  long k = (long)(intptr_t)arg;
  unsigned x = (unsigned)k * 2654435761u + 1;
  int i, r;
  par_event_wait(go, par_deadline(-1));
  for (i = 0; i < TIMED_ROUNDS; i++) {
    double until;
    for (;;) {
      x = x * 1103515245u + 12345u;
      r = par_lock_acquire(lock, k % 2 ? par_now() + (x >> 16 & 63) * 1e-6 : par_deadline(-1));
      if (r == PAR_OK) break;
      if (r != PAR_TIMEOUT || k % 2 == 0) return (void *)1;
      __atomic_add_fetch(&misses, 1, __ATOMIC_RELAXED);
    }
    counter++;
    until = par_now() + 2e-6;
    while (par_now() < until) {}
    par_lock_release(lock);
  }
  return NULL;
}

/* Sleeps in acquire with no deadline; returns what it got. */
static void *dead_holder_waiter(void *arg) {
  return (void *)(intptr_t)par_lock_acquire(lock, par_deadline(-1));
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

  alarm(120);
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
  CHECK(!par_lock_locked(lock));

  counter = 0;
  par_event_clear(go);
  par_wait_set_spin(0);
  for (i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, timed_locker, (void *)(intptr_t)i);
  par_event_set(go);
  for (i = 0; i < THREADS; i++) { pthread_join(t[i], &r); CHECK(r == NULL); }
  par_wait_set_spin(1);
  CHECK_EQ(counter, (long)THREADS * TIMED_ROUNDS);
  CHECK(!par_lock_locked(lock));

  /* A holder's process dies (here: recovered as if ours had): the waiter
   * asleep on it is woken and told. */
  CHECK(par_lock_try(lock));
  pthread_create(&t[0], NULL, dead_holder_waiter, NULL);
  CHECK_EQ(par_lock_recover(&lock->hdr, 12345), 0);   /* not the holder: nothing done */
  CHECK(par_lock_locked(lock));
  CHECK_EQ(par_lock_recover(&lock->hdr, (uint32_t)par_shm_self()), 1);
  pthread_join(t[0], &r);
  CHECK_EQ((intptr_t)r, PAR_OWNER_DIED);
  CHECK(par_lock_locked(lock));
  CHECK_EQ(par_lock_release(lock), PAR_OK);
  CHECK(!par_lock_locked(lock));
  CHECK_EQ(par_lock_release(lock), PAR_ERROR);

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
