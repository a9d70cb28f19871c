/*
 * Monotonic time and deadline-based waiting. Deadlines are absolute
 * monotonic seconds (par_now() scale); PAR_FOREVER waits without limit.
 * Every condition variable in the core is created with par_cond_init so
 * that timed waits use CLOCK_MONOTONIC and ignore wall-clock jumps.
 */
#ifndef PAR_CLOCK_H
#define PAR_CLOCK_H

#include <pthread.h>
#include <math.h>

#define PAR_FOREVER INFINITY

double par_now(void);
double par_cpu_time(void);                  /* process CPU seconds */
double par_deadline(double timeout);        /* timeout < 0 or NaN/inf: forever */
struct timespec par_timespec(double t);     /* a deadline as a timespec (capped) */
int par_cond_init(pthread_cond_t *cv);
/* Waits until signalled or the deadline: PAR_OK or PAR_TIMEOUT. */
int par_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double deadline);
void par_sleep_until(double deadline);
void par_cpu_relax(void);

#endif
