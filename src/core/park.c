/* Parking on a word: see park.h. */
#define _GNU_SOURCE
#include "park.h"
#include "clock.h"
#include "object.h"
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

#if defined(__linux__) && !defined(PAR_NO_FUTEX)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int par_park_wait(_Atomic int *word, int expected, double deadline) {
  struct timespec ts;
  long r;
  if (!isinf(deadline) && par_now() >= deadline) return PAR_TIMEOUT;
  ts = par_timespec(deadline);
  par_wait_sleep_begin();
  /* FUTEX_WAIT_BITSET: an absolute deadline on CLOCK_MONOTONIC */
  r = syscall(SYS_futex, (int *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
              isinf(deadline) ? NULL : &ts, NULL, FUTEX_BITSET_MATCH_ANY);
  par_wait_sleep_end();
  return r == -1 && errno == ETIMEDOUT ? PAR_TIMEOUT : PAR_OK;
}

void par_park_wake(_Atomic int *word, int all) {
  syscall(SYS_futex, (int *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, all ? INT_MAX : 1, NULL, NULL, 0);
}

#else
#include <pthread.h>
#include <stdint.h>

/* Words hash to buckets; a waker takes its word's bucket lock, so a waiter
 * that saw the old value under that lock is asleep before the wake. */
#define BUCKETS 64
static struct bucket {
  pthread_mutex_t mu;
  pthread_cond_t cv;
} buckets[BUCKETS];
static pthread_once_t buckets_once = PTHREAD_ONCE_INIT;

static void init_buckets(void) {
  int i;
  for (i = 0; i < BUCKETS; i++) {
    pthread_mutex_init(&buckets[i].mu, NULL);
    par_cond_init(&buckets[i].cv);
  }
}

static struct bucket *bucket_of(_Atomic int *word) {
  uintptr_t x = (uintptr_t)word;
  pthread_once(&buckets_once, init_buckets);
  return &buckets[(x >> 4 ^ x >> 10) % BUCKETS];
}

int par_park_wait(_Atomic int *word, int expected, double deadline) {
  struct bucket *b = bucket_of(word);
  int r = PAR_OK;
  pthread_mutex_lock(&b->mu);
  if (atomic_load(word) == expected) r = par_cond_wait_until(&b->cv, &b->mu, deadline);
  pthread_mutex_unlock(&b->mu);
  return r;
}

void par_park_wake(_Atomic int *word, int all) {
  struct bucket *b = bucket_of(word);
  (void)all;   /* a bucket is shared: every sleeper in it checks its own word */
  pthread_mutex_lock(&b->mu);
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}
#endif
