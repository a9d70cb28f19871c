/*
 * The communication thread: MPI start-up (thread level, fingerprints,
 * hosts), the polling loop with its idle policy, non-blocking sends, the
 * stop handshake. See comm.h for threads, locks and ownership.
 */
#define _GNU_SOURCE
#include "mpi/comm_impl.h"
#include "mpi/remote_mpi.h"

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"

int comm_grow(void **p, size_t *cap, size_t need, size_t elem) {
  size_t c = *cap ? *cap : 16;
  void *q;
  if (need <= *cap) return 1;
  while (c < need) c *= 2;
  q = realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

int comm_begin(comm_impl *im, const par_capi *api) {
  api->buf_reset(&im->out);
  if (!api->buf_reserve(&im->out, sizeof(mpi_head))) return -1;
  im->out.len = sizeof(mpi_head);
  return 0;
}

/* One MPI message holds at most INT_MAX bytes (its count is an int); a
 * test build can lower it (PARALLEL_MPI_TEST_MAX_MESSAGE). */
static size_t max_message = 0x7fffffff;

int comm_send(comm_impl *im, int dest, const mpi_head *h, par_wire_err *e) {
  send_req *s;
  if (im->out.len > max_message) {
    if (max_message == 0x7fffffff)
      snprintf(e->msg, sizeof e->msg, "message too large for MPI (%zu bytes, at most 2 GiB)", im->out.len);
    else
      snprintf(e->msg, sizeof e->msg, "message too large for MPI (%zu bytes, at most %zu)", im->out.len,
               max_message);
    return -1;
  }
  if (!comm_grow((void **)&im->sends, &im->capsends, im->nsends + 1, sizeof *im->sends)) {
    snprintf(e->msg, sizeof e->msg, "not enough memory");
    return -1;
  }
  memcpy(im->out.data, h, sizeof *h);
  s = &im->sends[im->nsends++];
  s->buf = im->out.data;
  MPI_Isend(s->buf, (int)im->out.len, MPI_BYTE, dest, 0, im->comm, &s->req);
  /* The buffer is the send's now: out starts afresh. */
  im->out.data = NULL;
  im->out.len = im->out.cap = 0;
  return 0;
}

/* Completes what sends it can; 1 if any did. */
static int test_sends(comm_impl *im) {
  size_t i = 0;
  int any = 0;
  while (i < im->nsends) {
    int done = 0;
    MPI_Test(&im->sends[i].req, &done, MPI_STATUS_IGNORE);
    if (done) {
      free(im->sends[i].buf);
      im->sends[i] = im->sends[--im->nsends];
      any = 1;
    } else {
      i++;
    }
  }
  return any;
}

/* Receives every message that has arrived; 1 if any did. */
static int poll_incoming(mpi_state *st, comm_impl *im) {
  int any = 0;
  for (;;) {
    int flag = 0, count = 0;
    MPI_Message msg;
    MPI_Status status;
    mpi_head h;
    MPI_Improbe(MPI_ANY_SOURCE, 0, im->comm, &flag, &msg, &status);
    if (!flag) return any;
    any = 1;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if ((size_t)count > im->rcap) {
      unsigned char *b = realloc(im->rbuf, (size_t)count);
      if (!b) {   /* cannot hold it: fail-stop, as MPI does on a lost rank */
        MPI_Abort(MPI_COMM_WORLD, 1);
        return any;
      }
      im->rbuf = b;
      im->rcap = (size_t)count;
    }
    MPI_Mrecv(im->rbuf, count, MPI_BYTE, &msg, &status);
    if ((size_t)count < sizeof h) continue;
    memcpy(&h, im->rbuf, sizeof h);
    if (rmpi_message(st, im, status.MPI_SOURCE, &h, im->rbuf + sizeof h, (size_t)count - sizeof h))
      continue;
    if (st->rank == 0)
      root_message(st, im, status.MPI_SOURCE, &h, im->rbuf + sizeof h, (size_t)count - sizeof h);
    else
      serve_message(st, im, &h, im->rbuf + sizeof h, (size_t)count - sizeof h);
  }
}

/* Rank 0: takes the commands posted by the main thread; 1 if any. */
static int take_commands(mpi_state *st, comm_impl *im) {
  mpi_cmd *c;
  pthread_mutex_lock(&st->mu);
  c = st->out_head;
  st->out_head = st->out_tail = NULL;
  pthread_mutex_unlock(&st->mu);
  if (!c) return 0;
  while (c) {
    mpi_cmd *next = c->next;
    root_command(st, im, c);
    c = next;
  }
  return 1;
}

static void deadline_ts(struct timespec *ts, double seconds) {
  long ns;
  clock_gettime(CLOCK_MONOTONIC, ts);
  ns = ts->tv_nsec + (long)(seconds * 1e9);
  ts->tv_sec += ns / 1000000000L;
  ts->tv_nsec = ns % 1000000000L;
}

static void root_idle(mpi_state *st, double seconds) {
  struct timespec ts;
  deadline_ts(&ts, seconds);
  pthread_mutex_lock(&st->mu);
  if (!st->out_head) {
    st->comm_sleeping = 1;
    pthread_cond_timedwait(&st->cv, &st->mu, &ts);
    st->comm_sleeping = 0;
  }
  pthread_mutex_unlock(&st->mu);
}

static void set_phase(mpi_state *st, int phase) {
  pthread_mutex_lock(&st->mu);
  st->phase = phase;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

/* A build that must differ from the others (the mixed-ranks test). */
#ifndef MPI_FP_EXTRA
#define MPI_FP_EXTRA ""
#endif

/* What every rank tells the others at start-up. */
typedef struct hello {
  char fingerprint[MPI_FP_MAX];
  char host[MPI_HOST_MAX];
  int32_t cores;
  int32_t spin_us, cap_us, stop_ms;
} hello;

static double env_number(const char *name, double def) {
  const char *v = getenv(name);
  char *end;
  double d;
  if (!v || !*v) return def;
  d = strtod(v, &end);
  return (*end == '\0' && d >= 0) ? d : def;
}

static void make_hello(mpi_state *st, hello *me) {
  struct utsname u;
  memset(me, 0, sizeof *me);
  if (uname(&u) != 0) strcpy(u.machine, "unknown");
  snprintf(me->fingerprint, sizeof me->fingerprint, "%s; %s; parallel.mpi %s%s",
           st->api->wire_fingerprint(), u.machine, MPI_MODULE_VERSION, MPI_FP_EXTRA);
  if (gethostname(me->host, sizeof me->host - 1) != 0) strcpy(me->host, "?");
  me->cores = st->api->cpu_count();
  me->spin_us = (int32_t)env_number("PARALLEL_MPI_SPIN_US", 1000);
  me->cap_us = (int32_t)env_number("PARALLEL_MPI_IDLE_US", 200);
  me->stop_ms = (int32_t)env_number("PARALLEL_MPI_STOP_MS", 10000);
}

/* Some MPI builds load their components with dlopen and need libmpi's
 * symbols global, which a Lua module loaded RTLD_LOCAL does not give
 * them; and this module must stay loaded while its thread runs, even
 * after lua_close unloads C modules. */
static void pin_libraries(void) {
  static const char *names[] = { "libmpi.so.40", "libmpi.so.12", "libmpich.so.12", NULL };
  Dl_info info;
  int i;
  for (i = 0; names[i]; i++) dlopen(names[i], RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (dladdr((void *)&pin_libraries, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Fail-stop needs a crashing rank to die at once. Open MPI installs a
 * SIGSEGV/SIGBUS handler that prints a backtrace with functions that are
 * not async-signal-safe; in a rank whose other threads hold locks it can
 * hang there, and the launcher then waits for a process that never ends
 * (seen once in make test-mpi under load). The default action ends it. */
static void restore_crash_signals(void) {
  static const int fatal[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL };
  size_t i;
  for (i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], SIG_DFL);
}

static int start_mpi(mpi_state *st, comm_impl *im) {
  int provided = 0, i, inited = 0;
  hello me, *all;
  MPI_Initialized(&inited);
  if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    snprintf(st->error, sizeof st->error, "MPI_Init_thread failed");
    return -1;
  }
  if (inited) MPI_Query_thread(&provided);
  restore_crash_signals();
#ifdef MPI_TEST_HOOKS
  if (getenv("PARALLEL_MPI_TEST_MAX_MESSAGE"))
    max_message = (size_t)strtoull(getenv("PARALLEL_MPI_TEST_MAX_MESSAGE"), NULL, 10);
#endif
  MPI_Comm_dup(MPI_COMM_WORLD, &im->comm);
  MPI_Comm_rank(im->comm, &st->rank);
  MPI_Comm_size(im->comm, &st->size);
  make_hello(st, &me);
  all = calloc((size_t)st->size, sizeof *all);
  st->hosts = calloc((size_t)st->size, sizeof *st->hosts);
  st->cores = calloc((size_t)st->size, sizeof *st->cores);
  im->peers = calloc((size_t)st->size, sizeof *im->peers);
  if (!all || !st->hosts || !st->cores || !im->peers) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Allgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, im->comm);
  for (i = 0; i < st->size; i++) {
    memcpy(st->hosts[i], all[i].host, MPI_HOST_MAX);
    st->hosts[i][MPI_HOST_MAX - 1] = '\0';
    st->cores[i] = all[i].cores;
  }
  /* Rank 0's idle policy holds for all. */
  st->spin = all[0].spin_us * 1e-6;
  st->idle_cap = all[0].cap_us * 1e-6;
  st->stop_timeout = all[0].stop_ms * 1e-3;
  for (i = 1; i < st->size; i++) {
    all[i].fingerprint[MPI_FP_MAX - 1] = '\0';
    if (strcmp(all[i].fingerprint, all[0].fingerprint) != 0) {
      snprintf(st->error, sizeof st->error,
               "cannot run mixed ranks: rank %d (%s) has %s, rank 0 (%s) has %s",
               i, all[i].host, all[i].fingerprint, all[0].host, all[0].fingerprint);
      free(all);
      return -1;
    }
  }
  free(all);
  if (provided < MPI_THREAD_FUNNELED) {
    snprintf(st->error, sizeof st->error,
             "the MPI library gives thread level %d; parallel.mpi needs MPI_THREAD_FUNNELED", provided);
    return -1;
  }
  return 0;
}

static par_wire_peer *new_peer(mpi_state *st, comm_impl *im, int rank);

static void *comm_main(void *arg) {
  mpi_state *st = (mpi_state *)arg;
  comm_impl *im = (comm_impl *)st->impl;
  const par_capi *api = st->api;
  double last, backoff = 0;
  int i;
  if (start_mpi(st, im) != 0) {
    MPI_Finalize();
    set_phase(st, PH_FAILED);
    return NULL;
  }
  im->remote = rmpi_new(st);
  for (i = 0; i < st->size; i++)
    if (i != st->rank && (st->rank == 0 || i == 0)) im->peers[i] = new_peer(st, im, i);
  im->free_slot = -1;
  set_phase(st, PH_RUNNING);
  last = api->now();
  for (;;) {
    int act = poll_incoming(st, im);
    if (st->rank == 0) {
      act |= take_commands(st, im);
      act |= root_dispatch(st, im);
    } else {
      act |= serve_collect(st, im);
    }
    act |= rmpi_pump(st, im);
    act |= test_sends(im);
    if (st->rank == 0 && im->stopping) {
      if (im->nstopped == st->size - 1 && im->nsends == 0) break;
      if (api->now() > im->stop_deadline) MPI_Abort(MPI_COMM_WORLD, 1);   /* a rank does not answer */
    } else if (st->rank != 0 && im->stop_seen && im->nsends == 0) {
      break;
    }
    if (act) {
      last = api->now();
      backoff = 0;
      continue;
    }
    if (api->now() - last < st->spin && (st->rank == 0 || !serve_all_busy(im))) {
      /* Spinning, but a thread that needs this core (a worker, on a
       * rank with more threads than cores) gets it. Not while every
       * worker of this rank has a task: sched_yield still takes a share
       * of a core from them (measured across the simulated hosts: 1 ms
       * tasks ran at 38-52% of their own rate per worker with the spin,
       * 62-92% without; README). */
      sched_yield();
      continue;
    }
    backoff = backoff == 0 ? 10e-6 : backoff * 2;
    if (backoff > st->idle_cap) backoff = st->idle_cap;
    if (st->rank == 0) root_idle(st, backoff); else serve_idle(st, im, backoff);
  }
  for (i = 0; i < st->size; i++)
    if (im->peers[i]) api->wire_peer_free(im->peers[i]);
  rmpi_free(st, im->remote);
  im->remote = NULL;
  api->buf_free(&im->out);
  free(im->rbuf);
  /* Every message of the job has arrived: from here the main thread waits
   * for MPI_Finalize a bounded time (wait_finalized). MPICH 4.0 over UCX
   * across hosts can hang in it: its finalize closes each endpoint with a
   * flush, then waits in a PMI barrier that does not progress the network;
   * a rank whose closes are done waits there while a peer's close still
   * needs its answer, and that peer spins in ucp_worker_progress for ever
   * (seen about once in ten make test-cluster runs under load; an
   * MPI_Barrier first does not prevent it). */
  pthread_mutex_lock(&st->mu);
  st->finalize_start = api->now();
  st->phase = PH_FINALIZING;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
  MPI_Comm_free(&im->comm);
#ifdef MPI_TEST_HOOKS
  {  /* spec/mpi/failstop.sh: a finalize that never returns on one rank */
    const char *r = getenv("PARALLEL_MPI_TEST_STALL_FINALIZE");
    if (r && atoi(r) == st->rank)
      for (;;) pause();
  }
#endif
  MPI_Finalize();
  set_phase(st, PH_STOPPED);
  return NULL;
}

/* Without remote_mpi (out of memory at the start), shared objects cannot
 * cross ranks: the wire layer refuses them at the send with these words. */
static int refuse_object(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  (void)ud; (void)h;
  snprintf(e->msg, sizeof e->msg, "cannot send %s to another rank", o->type->name);
  return -1;
}

static par_wire_peer *new_peer(mpi_state *st, comm_impl *im, int rank) {
  par_wire_objects objs;
  memset(&objs, 0, sizeof objs);
  objs.export_obj = refuse_object;
  if (im->remote) rmpi_hooks(im->remote, rank, &objs);
  return st->api->wire_peer_new(&objs);
}

int mpi_start(mpi_state *st, const par_capi *api) {
  pthread_condattr_t ca;
  sigset_t all, old;
  int rc;
  st->api = api;
  st->impl = calloc(1, sizeof(comm_impl));
  if (!st->impl) { snprintf(st->error, sizeof st->error, "not enough memory"); return -1; }
  api->buf_init(&((comm_impl *)st->impl)->out);
  pthread_mutex_init(&st->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&st->cv, &ca);
  pthread_condattr_destroy(&ca);
  st->phase = PH_STARTING;
  pin_libraries();
  /* The thread blocks every signal: Ctrl-C stays the main thread's. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&st->thread, NULL, comm_main, st);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(st->error, sizeof st->error, "cannot start the communication thread");
    return -1;
  }
  pthread_mutex_lock(&st->mu);
  while (st->phase == PH_STARTING) pthread_cond_wait(&st->cv, &st->mu);
  rc = st->phase == PH_RUNNING ? 0 : -1;
  pthread_mutex_unlock(&st->mu);
  if (rc != 0) pthread_join(st->thread, NULL);
  return rc;
}

void mpi_post(mpi_state *st, mpi_cmd *c) {
  c->next = NULL;
  pthread_mutex_lock(&st->mu);
  if (st->out_tail) st->out_tail->next = c; else st->out_head = c;
  st->out_tail = c;
  if (st->comm_sleeping) pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

/* Waits for the communication thread to end: without a bound until every
 * rank has stopped (rank 0's thread bounds the stop handshake itself),
 * then stop_timeout for MPI_Finalize. 0 once joined; -1 if MPI_Finalize
 * did not return in time: the thread is left in it and st->abandoned set. */
static int wait_finalized(mpi_state *st) {
  int done;
  pthread_mutex_lock(&st->mu);
  for (;;) {
    struct timespec ts;
    double left;
    if (st->phase == PH_STOPPED || st->phase == PH_FAILED) break;
    if (st->phase != PH_FINALIZING) { pthread_cond_wait(&st->cv, &st->mu); continue; }
    /* Rank 0 gives up first (serving ranks begin finalizing a little
     * before it), so that its exit with the script's status is what the
     * launcher reports: a serving rank that ended first without
     * MPI_Finalize would be reported as a bad termination instead. */
    left = st->finalize_start + st->stop_timeout + (st->rank == 0 ? 0 : 2.0) - st->api->now();
    if (left <= 0) break;
    deadline_ts(&ts, left);
    pthread_cond_timedwait(&st->cv, &st->mu, &ts);
  }
  done = st->phase != PH_FINALIZING;
  if (!done) st->abandoned = 1;
  pthread_mutex_unlock(&st->mu);
  if (done) {
    pthread_join(st->thread, NULL);
    return 0;
  }
  fprintf(stderr, "parallel.mpi: rank %d: MPI_Finalize has not returned %.3g s after every rank "
          "stopped (a known MPICH/UCX finalize hang across hosts); ending without it\n",
          st->rank, st->stop_timeout);
  return -1;
}

void mpi_stop(mpi_state *st) {
  mpi_cmd *c;
  int phase;
  pthread_mutex_lock(&st->mu);
  phase = st->phase;
  if (phase == PH_RUNNING) st->phase = PH_STOPPING;
  pthread_mutex_unlock(&st->mu);
  if (phase != PH_RUNNING) return;
  c = calloc(1, sizeof *c);
  if (!c) MPI_Abort(MPI_COMM_WORLD, 1);   /* cannot even say stop: end the job */
  c->kind = K_STOP;
  mpi_post(st, c);
  wait_finalized(st);
}

int mpi_wait_end(mpi_state *st) {
  return wait_finalized(st);
}

/* Encodes (text, "", nil) in a private state, as a worker's failure. */
static int encode_error(lua_State *L) {
  const par_capi *api = (const par_capi *)lua_touserdata(L, 1);
  par_msg **out = (par_msg **)lua_touserdata(L, 2);
  api->codec_open(L);
  lua_pushstring(L, (const char *)lua_touserdata(L, 3));
  lua_pushliteral(L, "");
  lua_pushnil(L);
  *out = api->encode(L, 4, 3, "error", 1);
  return 0;
}

par_msg *mpi_error_msg(const par_capi *api, const char *text) {
  par_msg *m = NULL;
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  lua_pushcfunction(L, encode_error);
  lua_pushlightuserdata(L, (void *)api);
  lua_pushlightuserdata(L, &m);
  lua_pushlightuserdata(L, (void *)text);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) m = NULL;
  lua_close(L);
  return m;
}
