/* The shared-memory arena (core/shm.h) and the objects in it, across a
 * fork: another process maps a block by its name, atomics and futexes work
 * between the two, and a lock whose holder died is recovered. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/clock.h"
#include "core/sharedarray.h"
#include "core/shm.h"
#include "core/sync.h"

static int count_own(void) {
  size_t own, mapped;
  par_shm_counts(&own, &mapped);
  return (int)own;
}

static void arena(void) {
  static const size_t sizes[] = {1, 64, 65, 200, 4096, 100000, 262144, 300000, 5000000};
  void *blk[9];
  par_shm_loc loc[9];
  int i, before;
  par_object dummy;
  char err[256];
  size_t avail;
  for (i = 0; i < 9; i++) {
    blk[i] = par_shm_alloc(sizes[i], &loc[i]);
    CHECK(blk[i] != NULL);
    CHECK(((uintptr_t)blk[i] & 63) == 0);
    CHECK_EQ(((unsigned char *)blk[i])[sizes[i] - 1], 0);
    memset(blk[i], 0xAB, sizes[i]);
  }
  before = count_own();
  par_shm_free(blk[8], sizes[8], &loc[8]);           /* its own chunk: gone */
  CHECK_EQ(count_own(), before - 1);
  par_shm_free(blk[3], sizes[3], &loc[3]);
  blk[3] = par_shm_alloc(sizes[3], &loc[3]);         /* the same class again: zeroed */
  for (i = 0; i < (int)sizes[3]; i++) CHECK_EQ(((unsigned char *)blk[3])[i], 0);
  /* the registry is weak */
  par_object_init(&dummy, &par_lock_type);
  par_shm_register(&loc[0], &dummy);
  CHECK(par_shm_lookup(&loc[0]) == &dummy);
  CHECK_EQ(atomic_load(&dummy.refs), 2);
  atomic_store(&dummy.refs, 0);                      /* dying: not found any more */
  CHECK(par_shm_lookup(&loc[0]) == NULL);
  par_shm_unregister(&loc[0], &dummy);
  /* a name of ours that nothing stands for: gone, not mapped again */
  CHECK(par_shm_map(&loc[1], &avail, err, sizeof err) == NULL);
  CHECK(strstr(err, "gone") != NULL);
  for (i = 0; i < 8; i++) par_shm_free(blk[i], sizes[i], &loc[i]);
}

/* In a child forked before the objects were made: it gets their names
 * through a pipe and maps them, as a worker process does. */
static int child(int fd, int die) {
  par_shm_loc locs[3], *al = &locs[0], *ll = &locs[1], *el = &locs[2];
  char err[256];
  par_array *a;
  par_lock *l;
  par_event *e;
  par_scalar one, r;
  int i;
  if (read(fd, locs, sizeof locs) != (ssize_t)sizeof locs) return 9;
  a = par_array_import(&par_array_type, al, err, sizeof err);
  l = (par_lock *)par_sync_import(&par_lock_type, ll, err, sizeof err);
  e = (par_event *)par_sync_import(&par_event_type, el, err, sizeof err);
  if (!a || !l || !e) return 10;
  if (!die && (!a->blk.foreign || !l->blk.foreign)) return 14;   /* the second child was forked after */
  if (par_shm_self() != getpid()) return 11;
  one.i = 1;
  for (i = 0; i < 100000; i++) par_array_add(a, 0, one, &r);
  if (par_lock_acquire(l, par_deadline(10)) != PAR_OK) return 12;
  if (die) kill(getpid(), SIGKILL);
  par_lock_release(l);
  if (par_event_wait(e, par_deadline(10)) != PAR_OK) return 13;
  par_object_release(&a->hdr);
  par_object_release(&l->hdr);
  par_object_release(&e->hdr);
  return 0;
}

/* Forks a child that will import a, l and e, then sends it their names. */
static pid_t start_child(par_array *a, par_lock *l, par_event *e, int die, int fds[2]) {
  par_shm_loc locs[3];
  pid_t pid = fork();
  if (pid == 0) { close(fds[1]); _exit(child(fds[0], die)); }
  locs[0] = *par_array_loc(a);
  locs[1] = l->blk.loc;
  locs[2] = e->blk.loc;
  CHECK_EQ(write(fds[1], locs, sizeof locs), sizeof locs);
  return pid;
}

static void across_fork(void) {
  par_array *a;
  par_lock *l;
  par_event *e;
  par_scalar one, r;
  pid_t pid;
  int status, i, fds[2];
  char err[256];
  one.i = 1;
  CHECK_EQ(pipe(fds), 0);
  pid = fork();    /* before the objects exist: it knows nothing of them */
  if (pid == 0) { close(fds[1]); _exit(child(fds[0], 0)); }
  a = par_array_new(&par_array_type, PAR_INT64, 4);
  l = par_lock_new();
  e = par_event_new();
  {
    par_shm_loc locs[3];
    locs[0] = *par_array_loc(a);
    locs[1] = l->blk.loc;
    locs[2] = e->blk.loc;
    CHECK_EQ(write(fds[1], locs, sizeof locs), sizeof locs);
  }
  for (i = 0; i < 100000; i++) par_array_add(a, 0, one, &r);
  par_event_set(e);
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
  CHECK_EQ(par_array_get(a, 0).i, 200000);
  CHECK_EQ(par_lock_locked(l), 0);
  /* the holder dies: recovered once the pid is known dead */
  pid = start_child(a, l, e, 1, fds);
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFSIGNALED(status));
  CHECK(par_lock_locked(l));
  CHECK_EQ(par_lock_acquire(l, par_deadline(0.01)), PAR_TIMEOUT);
  CHECK_EQ(par_lock_recover(&l->hdr, (uint32_t)pid), 1);
  CHECK_EQ(par_lock_recover(&l->hdr, (uint32_t)pid), 0);
  CHECK_EQ(par_lock_acquire(l, par_deadline(1)), PAR_OWNER_DIED);
  CHECK_EQ(par_lock_release(l), PAR_OK);
  CHECK_EQ(par_lock_acquire(l, par_deadline(1)), PAR_OK);
  CHECK_EQ(par_lock_release(l), PAR_OK);
  /* a handle that names the wrong kind of block fails cleanly */
  CHECK(par_sync_import(&par_event_type, &l->blk.loc, err, sizeof err) == NULL);
  par_object_release(&a->hdr);
  par_object_release(&l->hdr);
  par_object_release(&e->hdr);
}

int main(void) {
  arena();
  across_fork();
  DONE("shm");
}
