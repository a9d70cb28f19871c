/*
 * The one waiting policy of the core: before a thread sleeps on a condition
 * variable (an idle pool worker, a future's waiter, a queue's pusher or
 * popper, a lock's acquirer), should it spin, and for how long?
 *
 * Spinning is a bet that the thread we wait for is running on another CPU
 * and will make our predicate true within less time than a sleep and a
 * wake-up cost (a futex wait, a signal, a reschedule: 5-70 us on virtual
 * machines). Won, it turns a handoff into a few cache misses; lost, it burns
 * a CPU, and on a busy machine the CPU it burns is the one the thread we
 * wait for needed. So a waiter spins only while it can pay:
 *
 *  - never when spinning is off: PARALLEL_SPIN=0 in the environment (read
 *    once), built with -DPAR_NO_SPIN, or par_wait_set_spin(0) (the bench
 *    compares both ways in one process). PARALLEL_SPIN=<n> caps a spin at
 *    n microseconds instead of the default;
 *  - not when this process has more runnable threads than CPUs it may use
 *    (sched_getaffinity, and a cgroup v2 cpu.max quota): our threads count
 *    as runnable unless they sleep in a core wait (par_cond_wait_until
 *    and par_park_wait bracket every sleep), so a pool with more busy
 *    workers than CPUs sleeps at once;
 *  - not when the machine is busy: the runnable count of /proc/loadavg,
 *    sampled at most every 10 ms by whichever waiter finds the sample old,
 *    smoothed, more than half a CPU above the number of online CPUs (the
 *    spinner and the process it waits for are two of them: without that
 *    slack a kernel thread's blip stopped a process pool's round trip
 *    spinning, 15 -> 5 us once allowed). Other processes' work
 *    counts: the figure that made this policy (issue 12) was a round trip
 *    of 14-179 us while builds ran beside it, against 25 us blocking only;
 *    locks too: a spinner keeps two threads contending for the lock's
 *    cache line, while a sleeper lets the holder run on with it (measured:
 *    a 2 us lock spin under load made the lock counter 2-2.4 x slower);
 *  - not after spins of this kind have mostly failed of late: each kind of
 *    waiter keeps a moving average of how long its successful spins took
 *    and of how often its spins failed (each new spin weighs 1/8). It spins
 *    up to four times that average (and at least 2 us) while fewer than
 *    half failed; past that it sleeps at once but probes one wait in 32 (a
 *    spin to the cap) so a change of pattern (short tasks again) is
 *    noticed. The first version halved a limit on each failure and never
 *    raised it past twice the last success, so a few outliers in a row (a
 *    garbage collection between two submits) turned spinning off for a
 *    submit -> get loop that had every reason to spin;
 *  - never longer than a wake-up costs: the limit never exceeds the cap
 *    (20 us by default, PARALLEL_SPIN to change it), nor the deadline.
 *
 * Under load nothing spins, so the policy's round trip is the blocking one
 * (their ratio is 1 plus noise). What blocking costs there, counted with
 * perf stat and /proc/<pid>/task/<tid>/sched (bench/sched_counts.lua; two
 * busy loops on 2 CPUs, Linux 6.18): a round trip makes 3.55 futex calls,
 * 2 context switches and 1.8 wake-ups, no migration; 0-2% of the workers
 * woken find the task already taken. That is the floor of a handoff in
 * which both sides sleep, and most of its time is the kernel's: 6.4 us of
 * CPU on the waiter's side and 4.9 on the worker's, for an 11-12 us median.
 * What else was tried there, A/B in the same minutes, and left out:
 *
 *  - the waiter yielding (sched_yield, up to 4 times) instead of sleeping
 *    while its task runs, or was just woken, on its own CPU. The worker
 *    then finds a runnable waiter and wakes no one: median 11.4 -> 7.4 us,
 *    CPU per round trip 6.4 -> 4.5 us (waiter) and 4.9 -> 3.7 (worker);
 *    but p99 28 us -> 1.6 ms and the mean 30 -> 59 us (16 runs each). A
 *    thread that yielded is runnable, not woken: when the task ends it
 *    cannot preempt the other process the yield let in, and waits out that
 *    process's time slice, in about 2% of round trips. A sleeper is woken,
 *    and a woken thread preempts. The same holds for an idle worker that
 *    yields once before parking (a submit then wakes no one): submit-all
 *    wake-ups 0.045 -> 0.007 per task, round-trip mean 18.5 -> 34.7 us;
 *  - shorter time slices for the workers (sched_setattr's sched_runtime,
 *    100 or 300 us, so that a woken worker preempts its submitter at once):
 *    an 8 -> 9 us median in one set of runs, none (11.8 us in all) in the
 *    next: not robust;
 *  - for a burst of submits (no get since the last), waking a worker that
 *    parked on another CPU than the submitter's: wake-ups per task 0.055 ->
 *    0.08. Under load the kernel had put both workers on the submitter's
 *    CPU (waking affine, no idle CPU to spread to), so there was none.
 *
 * Threads: any. State: per-kind limits and process counters are C11 atomics
 * updated with relaxed races on purpose (the policy is a heuristic; a lost
 * update only costs a spin or a sleep). No mutex, nothing to free.
 */
#ifndef PAR_WAIT_H
#define PAR_WAIT_H

typedef enum {
  PAR_WAIT_POOL,     /* an idle worker waiting for a task */
  PAR_WAIT_FUTURE,   /* a waiter on a future's outcome */
  PAR_WAIT_QUEUE,    /* a push on a full queue, a pop on an empty one */
  PAR_WAIT_LOCK,     /* acquiring a held lock */
  PAR_WAIT_PROCESS,  /* a task's outcome from a worker process's ring: longer
                        than a thread's (a process on the other CPU writes it),
                        so its own average, not the futures' */
  PAR_WAIT_KINDS
} par_wait_kind;

/* Nonzero when the caller's wait is over (a quick, lock-free check). */
typedef int (*par_ready_fn)(void *ud);

/* Spins while the policy says it pays and ready(ud) is false, never past
 * the absolute deadline. 1: ready() became true; 0: sleep now. */
int par_spin(par_wait_kind kind, par_ready_fn ready, void *ud, double deadline);

/* A thread of ours (a worker) starts or ends: counted as runnable. */
void par_wait_thread_begin(void);
void par_wait_thread_end(void);
/* Around a blocking sleep (par_cond_wait_until and par_park_wait do it). */
void par_wait_sleep_begin(void);
void par_wait_sleep_end(void);

/* Turns spinning off (0) or back on (as configured) for the process. */
void par_wait_set_spin(int on);

/* What the policy sees now, for parallel.waiting(). limit_us has
 * PAR_WAIT_KINDS entries (0: that kind sleeps at once). */
typedef struct par_wait_info {
  int enabled;              /* spinning allowed at all (PARALLEL_SPIN) */
  double cap_us;            /* the longest spin */
  int cpus;                 /* CPUs this process may use */
  int runnable;             /* our threads not sleeping in a core wait */
  double machine_runnable;  /* smoothed /proc/loadavg runnable count, -1 unknown */
  int online;               /* online CPUs */
  double limit_us[PAR_WAIT_KINDS];
  unsigned long spins[PAR_WAIT_KINDS];   /* spins begun since the start */
} par_wait_info;
void par_wait_get_info(par_wait_info *info);

#endif
