#define _GNU_SOURCE
#include "clock.h"
#include "object.h"
#include "wait.h"

#include <errno.h>
#include <time.h>

double par_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double par_cpu_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double par_deadline(double timeout) {
  if (!(timeout >= 0) || isinf(timeout)) return PAR_FOREVER;
  return par_now() + timeout;
}

static pthread_condattr_t monotonic_attr;
static pthread_once_t monotonic_once = PTHREAD_ONCE_INIT;

static void make_monotonic_attr(void) {
  pthread_condattr_init(&monotonic_attr);
  pthread_condattr_setclock(&monotonic_attr, CLOCK_MONOTONIC);
}

int par_cond_init(pthread_cond_t *cv) {
  pthread_once(&monotonic_once, make_monotonic_attr);
  return pthread_cond_init(cv, &monotonic_attr);
}

struct timespec par_timespec(double t) {
  struct timespec ts;
  if (t > 1e15) t = 1e15;     /* ~30 million years: no time_t overflow */
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  return ts;
}

int par_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double deadline) {
  struct timespec ts;
  int r;
  par_wait_sleep_begin();
  if (isinf(deadline)) {
    pthread_cond_wait(cv, mu);
    r = PAR_OK;
  } else {
    ts = par_timespec(deadline);
    r = pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT ? PAR_TIMEOUT : PAR_OK;
  }
  par_wait_sleep_end();
  return r;
}

void par_sleep_until(double deadline) {
  struct timespec ts = par_timespec(deadline);
  par_wait_sleep_begin();
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
  par_wait_sleep_end();
}

void par_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
