/* The waiting policy: see wait.h for the reasoning. */
#define _GNU_SOURCE
#include "wait.h"
#include "clock.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CAP_NS 20000     /* ~ one futex wake-up on a virtual machine */
#define MIN_SPIN_NS 2000         /* the shortest limit of a kind that spins */
#define PROBE_EVERY 32
#define FAIL_ONE 256             /* fail_rate of a kind whose spins all fail */
#define SAMPLE_NS 10000000LL     /* /proc/loadavg at most every 10 ms */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static long cap_ns;              /* 0: spinning off (PARALLEL_SPIN, one CPU) */
static _Atomic int spin_on = 1;  /* par_wait_set_spin */
static int cpus = 1, online = 1;
static _Atomic int loadavg_fd = -1;   /* closed when the library is unloaded (fini) */

/* The host thread counts as one; workers add themselves. */
static _Atomic int threads = 1, sleepers = 0;

static _Atomic long long sample_at = 0;       /* ns, par_now() scale */
static _Atomic int machine_x16 = -16;         /* smoothed runnable * 16; < 0 unknown */

typedef struct {
  _Alignas(64) _Atomic long avg_ns;     /* successful spins' length, moving average */
  _Atomic int fail_rate;                 /* spins that failed, moving average, of FAIL_ONE */
  _Atomic unsigned probes;
  _Alignas(64) _Atomic unsigned long spins;   /* spins begun (parallel.waiting) */
} kind_state;
static kind_state kinds[PAR_WAIT_KINDS];

/* CPUs allowed by a cgroup quota ("max" or "<quota> <period>"), or 0. */
static int quota_cpus(void) {
  char path[512], line[256], *p;
  FILE *f = fopen("/proc/self/cgroup", "re");
  long long quota = 0, period = 0;
  int n = 0;
  path[0] = 0;
  if (f) {
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "0::", 3) == 0) {
        if ((p = strchr(line, '\n')) != NULL) *p = 0;
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", line + 3);
        break;
      }
    fclose(f);
  }
  f = path[0] ? fopen(path, "re") : NULL;
  if (!f) f = fopen("/sys/fs/cgroup/cpu.max", "re");
  if (f) {
    if (fscanf(f, "%lld %lld", &quota, &period) != 2) quota = 0;
    fclose(f);
  } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "re")) != NULL) {  /* v1 */
    if (fscanf(f, "%lld", &quota) != 1) quota = 0;
    fclose(f);
    if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "re")) != NULL) {
      if (fscanf(f, "%lld", &period) != 1) period = 0;
      fclose(f);
    }
  }
  if (quota > 0 && period > 0) n = (int)((quota + period - 1) / period);
  return n;
}

static void init(void) {
  const char *env = getenv("PARALLEL_SPIN");
  cpu_set_t set;
  long n;
  int i, q;
  cap_ns = DEFAULT_CAP_NS;
  if (env && *env) {
    char *end;
    double us = strtod(env, &end);
    if (end != env && us >= 0 && us < 1e6) cap_ns = (long)(us * 1000);
  }
#ifdef PAR_NO_SPIN
  cap_ns = 0;
#endif
  n = sysconf(_SC_NPROCESSORS_ONLN);
  online = n > 0 ? (int)n : 1;
  cpus = online;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) cpus = CPU_COUNT(&set);
  q = quota_cpus();
  if (q > 0 && q < cpus) cpus = q;
  /* one CPU: whoever we wait for needs the one we would spin on */
  if (cpus < 2) cap_ns = 0;
  loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  for (i = 0; i < PAR_WAIT_KINDS; i++) {
    atomic_init(&kinds[i].avg_ns, cap_ns / 4);
    atomic_init(&kinds[i].fail_rate, 0);
  }
}

/* When the library is unloaded (lua_close of the last state that loaded
 * it), its descriptor goes too: a host that opens and closes states kept
 * one more /proc/loadavg open per cycle. */
__attribute__((destructor)) static void fini(void) {
  int fd = atomic_exchange(&loadavg_fd, -1);
  if (fd >= 0) close(fd);
}

/* Refreshes the machine's smoothed runnable count when the sample is old. */
static void sample_machine(long long now_ns) {
  long long at = atomic_load_explicit(&sample_at, memory_order_relaxed);
  char buf[128], *slash;
  ssize_t len;
  int running, old, fd = atomic_load_explicit(&loadavg_fd, memory_order_relaxed);
  if (now_ns - at < SAMPLE_NS || fd < 0) return;
  if (!atomic_compare_exchange_strong(&sample_at, &at, now_ns)) return;   /* another waiter does it */
  len = pread(fd, buf, sizeof buf - 1, 0);
  if (len <= 0) return;
  buf[len] = 0;
  /* "0.52 0.58 0.59 3/467 12345": the fourth field is runnable/total */
  slash = strchr(buf, '/');
  if (!slash) return;
  while (slash > buf && slash[-1] >= '0' && slash[-1] <= '9') slash--;
  running = atoi(slash);
  old = atomic_load_explicit(&machine_x16, memory_order_relaxed);
  atomic_store_explicit(&machine_x16, old < 0 ? running * 16 : old + (running * 16 - old) / 4,
                        memory_order_relaxed);
}

/* Whether a spin now could pay: a CPU free for the thread we wait for. */
static int cpus_free(double now) {
  int runnable = atomic_load_explicit(&threads, memory_order_relaxed) -
                 atomic_load_explicit(&sleepers, memory_order_relaxed);
  int m;
  if (runnable > cpus) return 0;
  sample_machine((long long)(now * 1e9));
  m = atomic_load_explicit(&machine_x16, memory_order_relaxed);
  /* half a CPU of slack: the spinner and the thread it waits for are two
   * of the runnable, and a kernel thread's blip in the sample must not
   * stop two processes that hand work back and forth on two CPUs */
  return m < 0 || m <= online * 16 + 8;
}

/* A kind's spin limit now: 0 while most of its spins fail. */
static long limit_of(kind_state *k) {
  long limit = 4 * atomic_load_explicit(&k->avg_ns, memory_order_relaxed);
  if (atomic_load_explicit(&k->fail_rate, memory_order_relaxed) >= FAIL_ONE / 2) return 0;
  if (limit < MIN_SPIN_NS) limit = MIN_SPIN_NS;
  return limit < cap_ns ? limit : cap_ns;
}

/* One spin's outcome into the kind's averages (relaxed races: a lost
 * update only shifts a heuristic). */
static void count_spin(kind_state *k, int ok, long took_ns) {
  int f = atomic_load_explicit(&k->fail_rate, memory_order_relaxed);
  if (ok) {
    long avg = atomic_load_explicit(&k->avg_ns, memory_order_relaxed);
    atomic_store_explicit(&k->avg_ns, avg + (took_ns - avg) / 8, memory_order_relaxed);
    atomic_store_explicit(&k->fail_rate, f - f / 8, memory_order_relaxed);
  } else {
    atomic_store_explicit(&k->fail_rate, f + (FAIL_ONE - f + 7) / 8, memory_order_relaxed);
  }
}

int par_spin(par_wait_kind kind, par_ready_fn ready, void *ud, double deadline) {
  kind_state *k = &kinds[kind];
  long limit;
  double start, stop, now;
  int i;
  pthread_once(&once, init);
  if (cap_ns == 0 || !atomic_load_explicit(&spin_on, memory_order_relaxed)) return 0;
  limit = limit_of(k);
  if (limit == 0) {
    if (atomic_fetch_add_explicit(&k->probes, 1, memory_order_relaxed) % PROBE_EVERY) return 0;
    limit = cap_ns;
  }
  start = now = par_now();
  if (!cpus_free(start)) return 0;
  atomic_fetch_add_explicit(&k->spins, 1, memory_order_relaxed);
  stop = start + (double)limit * 1e-9;
  if (deadline < stop) stop = deadline;
  for (;;) {
    for (i = 0; i < 32; i++) {
      if (ready(ud)) {
        count_spin(k, 1, (long)((par_now() - start) * 1e9));
        return 1;
      }
      par_cpu_relax();
    }
    now = par_now();
    if (now >= stop) break;
  }
  /* A spin cut short by the caller's deadline says nothing of the pattern. */
  if (stop < deadline) count_spin(k, 0, 0);
  return 0;
}

void par_wait_thread_begin(void) { atomic_fetch_add_explicit(&threads, 1, memory_order_relaxed); }
void par_wait_thread_end(void) { atomic_fetch_sub_explicit(&threads, 1, memory_order_relaxed); }
void par_wait_sleep_begin(void) { atomic_fetch_add_explicit(&sleepers, 1, memory_order_relaxed); }
void par_wait_sleep_end(void) { atomic_fetch_sub_explicit(&sleepers, 1, memory_order_relaxed); }

void par_wait_set_spin(int on) {
  pthread_once(&once, init);
  atomic_store(&spin_on, on != 0);
}

void par_wait_get_info(par_wait_info *info) {
  int i, m;
  pthread_once(&once, init);
  sample_machine((long long)(par_now() * 1e9));
  info->enabled = cap_ns > 0 && atomic_load(&spin_on);
  info->cap_us = (double)cap_ns / 1000;
  info->cpus = cpus;
  info->online = online;
  info->runnable = atomic_load(&threads) - atomic_load(&sleepers);
  m = atomic_load(&machine_x16);
  info->machine_runnable = m < 0 ? -1 : m / 16.0;
  for (i = 0; i < PAR_WAIT_KINDS; i++) {
    long l = limit_of(&kinds[i]);
    info->limit_us[i] = info->enabled ? (double)l / 1000 : 0;
    info->spins[i] = atomic_load(&kinds[i].spins);
  }
}
