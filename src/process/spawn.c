#define _GNU_SOURCE
#include "process/spawn.h"
#include "process/ledger.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

pid_t proc_spawn(const char *exe, int *fd, const int give[PROC_GIVE_FDS]) {
  int sv[2], child = -1, copy[PROC_GIVE_FDS], err, i;
  pid_t pid = -1;
  char ppid[32];
  char *argv[4];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  /* Above every descriptor the child gets, so that no dup2 in the child
   * overwrites a source not yet copied (and dup2 clears close-on-exec). */
  child = fcntl(sv[1], F_DUPFD_CLOEXEC, PROC_CHANNEL_FD + PROC_GIVE_FDS + 1);
  close(sv[1]);
  if (child < 0) { err = errno; close(sv[0]); errno = err; return -1; }
  for (i = 0; i < PROC_GIVE_FDS; i++) copy[i] = -1;
  for (i = 0; i < PROC_GIVE_FDS; i++) {
    if (give[i] >= 0 &&
        (copy[i] = fcntl(give[i], F_DUPFD_CLOEXEC, PROC_CHANNEL_FD + PROC_GIVE_FDS + 1)) < 0) {
      err = errno;
      close(sv[0]);
      close(child);
      while (i-- > 0) if (copy[i] >= 0) close(copy[i]);
      errno = err;
      return -1;
    }
  }
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  argv[0] = (char *)exe;
  argv[1] = (char *)PROC_WORKER_ARG;
  argv[2] = ppid;
  argv[3] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child, PROC_CHANNEL_FD);
  for (i = 0; i < PROC_GIVE_FDS; i++)
    if (copy[i] >= 0) posix_spawn_file_actions_adddup2(&fa, copy[i], PROC_CHANNEL_FD + 1 + i);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_init(&at);
  /* This thread blocks every signal (a pool's worker thread): the child
   * starts with none blocked and every disposition at its default. */
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  err = posix_spawn(&pid, exe, &fa, &at, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(child);
  for (i = 0; i < PROC_GIVE_FDS; i++) if (copy[i] >= 0) close(copy[i]);
  if (err != 0) { close(sv[0]); errno = err; return -1; }
  *fd = sv[0];
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
