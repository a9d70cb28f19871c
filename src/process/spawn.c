#define _GNU_SOURCE
#include "process/spawn.h"
#include "process/ledger.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static atomic_int self_worker;

void proc_set_self_worker(void) { atomic_store(&self_worker, 1); }

static int executable(const char *path) { return access(path, X_OK) == 0; }

int proc_worker_path(char *buf, size_t size) {
  const char *env = getenv("PARALLEL_WORKER");
  Dl_info info;
  char dir[PATH_MAX];
  const char *slash;
  size_t n;
  if (env && *env) {
    snprintf(buf, size, "%s", env);
    if (executable(buf)) return 1;
    snprintf(buf, size, "PARALLEL_WORKER=%s is not an executable file", env);
    return 0;
  }
  if (atomic_load(&self_worker)) {
    ssize_t r = readlink("/proc/self/exe", buf, size - 1);
    if (r > 0) { buf[r] = '\0'; return 1; }
  }
  /* The file this code came from: core.so, or a program linking it. */
  if (dladdr((void *)proc_worker_path, &info) && info.dli_fname && strstr(info.dli_fname, ".so")) {
    snprintf(dir, sizeof dir, "%s", info.dli_fname);
  } else {
    ssize_t r = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (r <= 0) r = 0;
    dir[r] = '\0';
  }
  slash = strrchr(dir, '/');
  n = slash ? (size_t)(slash - dir) : 0;
  snprintf(buf, size, "%.*s/parallel-worker", (int)n, slash ? dir : ".");
  if (executable(buf)) return 1;
  {
    char tried[PATH_MAX];
    snprintf(tried, sizeof tried, "%s", buf);
    snprintf(buf, size, "no worker executable at %s: install parallel-worker beside core.so, "
             "set PARALLEL_WORKER, or call parallel_worker_main in the host's main", tried);
  }
  return 0;
}

/* A spawn prepared (descriptors copied where the child wants them) and
 * run by posix_spawn, on the calling thread or on its own. */
struct proc_spawning {
  proc_spawner *owner;       /* the thread that runs it (proc_spawn_begin) */
  int done;                  /* run (owner's mutex) */
  int child, copy[PROC_GIVE_FDS];
  char exe[PATH_MAX], ppid[32];
  pid_t pid;
  int err;
};

static void close_copies(proc_spawning *s) {
  int i;
  if (s->child >= 0) close(s->child);
  for (i = 0; i < PROC_GIVE_FDS; i++) if (s->copy[i] >= 0) close(s->copy[i]);
}

/* The socketpair and the copies of what the child gets: 0, or -1 with
 * errno set (nothing left open). */
static int prepare(proc_spawning *s, const char *exe, int *fd, const int give[PROC_GIVE_FDS]) {
  int sv[2], err, i;
  s->child = -1;
  for (i = 0; i < PROC_GIVE_FDS; i++) s->copy[i] = -1;
  snprintf(s->exe, sizeof s->exe, "%s", exe);
  snprintf(s->ppid, sizeof s->ppid, "%ld", (long)getpid());
  s->pid = -1;
  s->err = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  /* Above every descriptor the child gets, so that no dup2 in the child
   * overwrites a source not yet copied (and dup2 clears close-on-exec). */
  s->child = fcntl(sv[1], F_DUPFD_CLOEXEC, PROC_CHANNEL_FD + PROC_GIVE_FDS + 1);
  close(sv[1]);
  if (s->child < 0) { err = errno; close(sv[0]); errno = err; return -1; }
  for (i = 0; i < PROC_GIVE_FDS; i++) {
    if (give[i] >= 0 &&
        (s->copy[i] = fcntl(give[i], F_DUPFD_CLOEXEC, PROC_CHANNEL_FD + PROC_GIVE_FDS + 1)) < 0) {
      err = errno;
      close(sv[0]);
      close_copies(s);
      errno = err;
      return -1;
    }
  }
  *fd = sv[0];
  return 0;
}

/* posix_spawn; the copies are closed after it. */
static void *run(void *ud) {
  proc_spawning *s = (proc_spawning *)ud;
  char *argv[4];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  int i;
  argv[0] = s->exe;
  argv[1] = (char *)PROC_WORKER_ARG;
  argv[2] = s->ppid;
  argv[3] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, s->child, PROC_CHANNEL_FD);
  for (i = 0; i < PROC_GIVE_FDS; i++)
    if (s->copy[i] >= 0) posix_spawn_file_actions_adddup2(&fa, s->copy[i], PROC_CHANNEL_FD + 1 + i);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_init(&at);
  /* This thread blocks every signal (a pool's worker thread): the child
   * starts with none blocked and every disposition at its default. */
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  s->err = posix_spawn(&s->pid, s->exe, &fa, &at, argv, environ);
  if (s->err != 0) s->pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close_copies(s);
  return NULL;
}

pid_t proc_spawn(const char *exe, int *fd, const int give[PROC_GIVE_FDS]) {
  proc_spawning s;
  if (prepare(&s, exe, fd, give) != 0) return -1;
  run(&s);
  if (s.err != 0) { close(*fd); *fd = -1; errno = s.err; return -1; }
  return s.pid;
}

/* The thread that runs the spawns begun: one per owner, alive as long as
 * the processes it starts (PR_SET_PDEATHSIG kills a worker when the
 * thread that started it ends, not only its process). */
struct proc_spawner {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  proc_spawning *job;         /* to run; NULL once taken */
  int quit;
};

static void *serve(void *ud) {
  proc_spawner *sp = (proc_spawner *)ud;
  pthread_mutex_lock(&sp->mu);
  for (;;) {
    proc_spawning *s;
    while (!sp->job && !sp->quit) pthread_cond_wait(&sp->cv, &sp->mu);
    if (!sp->job) break;
    s = sp->job;
    sp->job = NULL;
    pthread_mutex_unlock(&sp->mu);
    run(s);
    pthread_mutex_lock(&sp->mu);
    s->done = 1;
    pthread_cond_broadcast(&sp->cv);
  }
  pthread_mutex_unlock(&sp->mu);
  return NULL;
}

proc_spawner *proc_spawner_new(void) {
  proc_spawner *sp = calloc(1, sizeof *sp);
  sigset_t all, old;
  int err;
  if (!sp) return NULL;
  pthread_mutex_init(&sp->mu, NULL);
  pthread_cond_init(&sp->cv, NULL);
  /* The thread blocks every signal whatever the caller's mask (a signal
   * handler of this process must not run there). */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  err = pthread_create(&sp->thread, NULL, serve, sp);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    pthread_cond_destroy(&sp->cv);
    pthread_mutex_destroy(&sp->mu);
    free(sp);
    errno = err;
    return NULL;
  }
  return sp;
}

void proc_spawner_free(proc_spawner *sp) {
  if (!sp) return;
  pthread_mutex_lock(&sp->mu);
  sp->quit = 1;
  pthread_cond_broadcast(&sp->cv);
  pthread_mutex_unlock(&sp->mu);
  pthread_join(sp->thread, NULL);
  pthread_cond_destroy(&sp->cv);
  pthread_mutex_destroy(&sp->mu);
  free(sp);
}

proc_spawning *proc_spawn_begin(proc_spawner *sp, const char *exe, int *fd,
                                const int give[PROC_GIVE_FDS]) {
  proc_spawning *s = malloc(sizeof *s);
  int err;
  if (!s) return NULL;
  if (prepare(s, exe, fd, give) != 0) { err = errno; free(s); errno = err; return NULL; }
  s->owner = sp;
  s->done = 0;
  pthread_mutex_lock(&sp->mu);
  while (sp->job) pthread_cond_wait(&sp->cv, &sp->mu);   /* one at a time */
  sp->job = s;
  pthread_cond_broadcast(&sp->cv);
  pthread_mutex_unlock(&sp->mu);
  return s;
}

pid_t proc_spawn_end(proc_spawning *s) {
  proc_spawner *sp = s->owner;
  pid_t pid;
  int err;
  pthread_mutex_lock(&sp->mu);
  while (!s->done) pthread_cond_wait(&sp->cv, &sp->mu);
  pthread_mutex_unlock(&sp->mu);
  pid = s->pid;
  err = s->err;
  free(s);
  if (pid < 0) errno = err;
  return pid;
}

void proc_describe(int status, char *why, size_t size) {
  if (!why) return;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char *name = sigdescr_np(sig);
    snprintf(why, size, "signal %d, %s", sig, name ? name : "unknown signal");
  } else if (WIFEXITED(status)) {
    snprintf(why, size, "exit status %d", WEXITSTATUS(status));
  } else {
    snprintf(why, size, "wait status %d", status);
  }
}

int proc_reap(pid_t pid, double grace, char *why, size_t size) {
  int status = 0;
  /* A process whose channel closed is usually exiting already: look again
   * after 20 us, then back off to 1 ms naps. */
  long nap_ns = 20000, left_ns = (long)(grace * 1e9);
  pid_t r;
  if (pid <= 0) { if (why) snprintf(why, size, "no process"); return 0; }
  while ((r = waitpid(pid, &status, WNOHANG)) == 0 && left_ns > 0) {
    struct timespec nap = { 0, nap_ns < left_ns ? nap_ns : left_ns };
    nanosleep(&nap, NULL);
    left_ns -= nap.tv_nsec;
    if (nap_ns < 1000000) nap_ns *= 2;
  }
  if (r == 0) {
    kill(pid, SIGKILL);
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
  }
  if (r < 0) { if (why) snprintf(why, size, "lost (%s)", strerror(errno)); return 0; }
  proc_describe(status, why, size);
  return status;
}
