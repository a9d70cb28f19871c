/* Parking on a word: see park.h. */
#define _GNU_SOURCE
#include "park.h"
#include "clock.h"
#include "object.h"
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The one futex wait: FUTEX_WAIT_BITSET for an absolute deadline on
 * CLOCK_MONOTONIC; `private` for words of this process only. */
static int futex_wait(void *word, uint32_t val, int private, uint32_t bits, double deadline) {
  struct timespec ts;
  long r;
  if (!isinf(deadline) && par_now() >= deadline) return PAR_TIMEOUT;
  ts = par_timespec(deadline);
  par_wait_sleep_begin();
  r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | (private ? FUTEX_PRIVATE_FLAG : 0),
              val, isinf(deadline) ? NULL : &ts, NULL, bits);
  par_wait_sleep_end();
  return r == -1 && errno == ETIMEDOUT ? PAR_TIMEOUT : PAR_OK;
}

static void futex_wake(void *word, int private, int n, uint32_t bits) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_BITSET | (private ? FUTEX_PRIVATE_FLAG : 0), n,
          NULL, NULL, bits);
}

int par_futex_wait(_Atomic uint32_t *word, uint32_t val, uint32_t bits, double deadline) {
  return futex_wait(word, val, 0, bits, deadline);
}

void par_futex_wake(_Atomic uint32_t *word, int n, uint32_t bits) {
  futex_wake(word, 0, n, bits);
}
#endif

#if defined(__linux__) && !defined(PAR_NO_FUTEX)
int par_park_wait(_Atomic int *word, int expected, double deadline) {
  return futex_wait(word, (uint32_t)expected, 1, FUTEX_BITSET_MATCH_ANY, deadline);
}

void par_park_wake(_Atomic int *word, int all) {
  futex_wake(word, 1, all ? INT_MAX : 1, FUTEX_BITSET_MATCH_ANY);
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
