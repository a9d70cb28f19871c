/*
 * The process backend, parent side: tasks in flight. A task is sent to
 * the worker process (the pool's own, or one taken ahead), followed on the
 * ledger until it starts, recalled, given back to the pool's queue when it
 * waits behind a long one, or its worker killed past its deadline; the
 * failures this side makes are encoded here too.
 *
 * Tasks in flight. run gets one task claimed by the pool and sends it;
 * while tasks run it takes more from the pool's queue (par_pool_take_ahead)
 * and sends them ahead, up to PROC_SLOTS and as many as fit in AHEAD_BUDGET
 * seconds of recent task time, so that the worker finds its next task
 * waiting. A task sent ahead stays pending (cancellable) until the
 * worker's ledger (process/ledger.h) says it started; the recall of a
 * cancel races the worker's start on one word of shared memory. When the
 * worker dies, the ledger says which task it was running (that one fails)
 * and which never started (those go back to the head of the pool's queue).
 * run returns once nothing is in flight.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "codec/codec.h"
#include "core/clock.h"
#include "core/future.h"
#include "core/pool.h"
#include "core/queue.h"
#include "process/frames.h"
#include "process/ledger.h"
#include "process/pchan.h"
#include "wire/shmvia.h"
#include "wire/wire.h"
#include "lua/l_process_impl.h"

/* Seconds of recent task time a worker may have waiting ahead of it: short
 * tasks go several at a time, long ones one at a time (a task sent ahead
 * cannot move to a worker that turns idle). */
#define AHEAD_BUDGET 0.002

/* How long a task may run with others waiting behind it on its worker
 * while another worker idles: then they go back to the pool's queue. */
#define STEAL_AFTER (2 * AHEAD_BUDGET)

/* ------------------------------------------------------------ failures */

typedef struct failure { const char *text; par_msg *m; } failure;

static int encode_failure(lua_State *L) {
  failure *fl = (failure *)lua_touserdata(L, 1);
  lua_pushstring(L, fl->text);
  lua_pushliteral(L, "");
  lua_pushnil(L);
  fl->m = codec_encode(L, 2, 3, "error", 1);
  return 0;
}

/* Fails f with the error message text (no traceback: none exists here). */
void l_process_fail(proc_ctx *c, par_future *f, const char *text) {
  failure fl = { text, NULL };
  if (c->L) {
    int top = lua_gettop(c->L);
    lua_pushcfunction(c->L, encode_failure);
    lua_pushlightuserdata(c->L, &fl);
    if (lua_pcall(c->L, 1, 0, 0) != LUA_OK) fl.m = NULL;
    lua_settop(c->L, top);
  }
  par_future_finish(f, PAR_FAILED, fl.m);
}

/* ------------------------------------------------------------- flights */

flight *l_process_flight_of(proc_ctx *c, uint32_t seq) {
  flight *x = &c->fl[seq % PROC_SLOTS];
  return x->f && x->seq == seq ? x : NULL;
}

void l_process_set_flight(proc_ctx *c, flight *x, par_future *f) {
  pthread_mutex_lock(&c->pid_mu);
  x->f = f;
  pthread_mutex_unlock(&c->pid_mu);
}

/* Done with x: its future finished, was cancelled or went back. */
void l_process_resolve(proc_ctx *c, flight *x, int release) {
  par_future *f = x->f;
  l_process_set_flight(c, x, NULL);
  c->nflight--;
  if (x->claimed) par_msg_free(par_future_take_task(f));
  else if (atomic_load(&f->state) != PAR_PENDING) par_future_drop_task(f);   /* cancelled */
  if (release && x->taken) par_object_release(&f->hdr);
}

/* A cancel of a task sent ahead (any thread, the future's mutex held). */
static int recall_flight(par_recall *r) {
  flight *x = (flight *)r;
  return proc_slot_move(x->c->ledger, x->seq, SLOT_QUEUED, SLOT_CANCELLED);
}

/* When x started, on par_now's clock (the ledger's, once the worker set it). */
static double start_of(proc_ctx *c, flight *x) {
  int64_t ns = atomic_load(&proc_slot_of(c->ledger, x->seq)->start_ns);
  return ns > 0 && proc_slot_state(c->ledger, x->seq) != SLOT_QUEUED ? (double)ns * 1e-9 : x->start;
}

/* The worker started x: the pool learns it runs (kill and interrupt now
 * reach it). A cancel can no longer win: the ledger refuses its recall. */
void l_process_mark_started(proc_ctx *c, flight *x) {
  x->start = start_of(c, x);
  if (x->claimed) return;
  par_future_claim(x->f);
  par_future_hold(x->f, NULL);
  x->claimed = 1;
  /* The pool's current task first (an interrupt for the one before is
   * spent from here on), then the number the interrupt handler sends: an
   * interrupt of the new task that came in between reached the worker
   * with the old number, which it ignores, so it goes again. */
  par_pool_now_running(x->f);
  atomic_store(&c->running_seq, (int)x->seq);
  if (atomic_load(c->interrupted)) l_process_interrupt(c);
}

/* Kills the worker for x if x still runs there (pid_mu held): 1 if so.
 * The ledger decides against the worker finishing x at the same moment,
 * so the kill never reaches the task after it. */
int l_process_kill_flight(proc_ctx *c, flight *x, int why) {
  if (c->pid <= 0) return 0;
  if (!proc_slot_move(c->ledger, x->seq, SLOT_STARTED, SLOT_KILLED) &&
      !proc_slot_move(c->ledger, x->seq, SLOT_QUEUED, SLOT_KILLED))
    return 0;
  x->why_killed = why;
  kill(c->pid, SIGKILL);
  return 1;
}

/* Lets the worker free what it made and sent here that nobody here uses
 * any more (with a task: the worker reads it before the task). 0, or -1
 * when the channel failed. */
static int send_releases(proc_ctx *c, par_wire_err *e) {
  uint32_t none = 0, n;
  size_t at;
  int r;
  if (!c->shm) return 0;
  l_process_start_frame(c, PF_RELEASE);
  l_process_put(&c->out, &none, 4);
  at = c->out.len;
  l_process_put(&c->out, &none, 4);
  if (c->out.len != at + 4) return 0;
  r = par_shm_via_releases(c->shm, &c->out);
  if (r <= 0) return 0;
  n = (uint32_t)r;
  memcpy(c->out.data + at, &n, 4);
  return l_process_send_out(c, e);
}

/* Sends x's task, with the rest of its segments if it went in segments:
 * 0; 1 when the task cannot leave this process (e says why; the worker
 * is fine); -1 when the channel failed (the worker is gone). */
static int send_task(proc_ctx *c, flight *x, par_wire_err *e) {
  par_future *f = x->f;
  unsigned char kind = (unsigned char)f->kind;
  unsigned char announce = !x->claimed || f->timeout > 0;   /* say when it starts */
  uint32_t stream = 0;
  par_msg *task = f->task;
  int rc = 0;
  if (send_releases(c, e) != 0) return -1;
  l_process_start_frame(c, PF_TASK);
  l_process_put(&c->out, &kind, 1);
  l_process_put(&c->out, &x->seq, 4);
  l_process_put(&c->out, &announce, 1);
  if (c->cfg->w.memory_limit && !task->rest && task->len > c->cfg->w.memory_limit) {
    /* Decoded, it could not fit the worker's state; and past memory_limit
     * + PROCESS_OVERHEAD the process could not even buffer the frame.
     * (Before flattening, which marks what it sends as sent.) */
    snprintf(e->msg, sizeof e->msg, "not enough memory: the task's arguments take %zu bytes, "
             "more than memory_limit (%zu)", task->len, c->cfg->w.memory_limit);
    return 1;
  }
  if (par_wire_flatten(c->peer, task, &c->out, &stream, e) != 0) return 1;
  if (l_process_send_out(c, e) != 0) return -1;
  if (task->rest) {
    par_queue *q = (par_queue *)task->rest;
    x->streamed = 1;           /* its segments are spent: it cannot go again */
    for (;;) {
      par_msg *seg = NULL;
      int st = par_queue_pop(q, &seg, par_now() + 3600);
      if (st == PAR_TIMEOUT) continue;
      l_process_start_frame(c, PF_MORE);
      if (st != PAR_OK) {
        if (par_wire_flatten_end(c->peer, stream, &c->out, e) != 0 ||
            l_process_send_out(c, e) != 0)
          rc = -1;
        break;
      }
      rc = par_wire_flatten_segment(c->peer, stream, seg, &c->out, e);
      par_msg_free(seg);
      if (rc != 0 || l_process_send_out(c, e) != 0) { rc = -1; break; }
      if (proc_chan_wait(c->chan, 1, 0, e) != 0) { rc = -1; break; }
    }
  }
  return rc;
}

/* Sends f as the next task; claimed: the pool's task (run's), else one
 * taken ahead. -1 when the channel failed (f stays in flight: the death
 * of the worker decides), else 0. */
int l_process_dispatch(proc_ctx *c, par_future *f, int claimed) {
  uint32_t seq = c->seq % 0x7fffffffu + 1;
  flight *x = &c->fl[seq % PROC_SLOTS];
  proc_slot *sl = proc_slot_of(c->ledger, seq);
  par_wire_err e;
  int rc;
  atomic_store(&sl->start_ns, 0);
  atomic_store(&sl->asked, 0);
  atomic_store(&sl->word, proc_slot_word(seq, SLOT_QUEUED));
  x->r.recall = recall_flight;
  x->c = c;
  x->seq = seq;
  x->claimed = claimed;
  x->taken = !claimed;
  x->streamed = 0;
  x->why_killed = KILL_NONE;
  x->start = par_now();
  if (!claimed && !par_future_hold(f, &x->r)) {   /* cancelled on the way */
    par_object_release(&f->hdr);
    return 0;
  }
  c->seq = seq;
  if (claimed) {
    /* An interrupt of f that came before this named the task before it
     * (which the worker ignores), so it goes again with f's number. */
    atomic_store(&c->running_seq, (int)seq);
    if (atomic_load(c->interrupted)) l_process_interrupt(c);
  }
  l_process_set_flight(c, x, f);
  c->nflight++;
  c->sent++;
  rc = send_task(c, x, &e);
  if (rc == 1) {
    /* It cannot leave this process: it fails, as it would anywhere. */
    atomic_store(&sl->word, 0);
    c->sent--;
    if (!claimed) {
      int mine = par_future_hold(f, NULL) && par_future_claim(f);
      if (mine) par_pool_count_started();
      x->claimed = mine;
      if (!mine) { l_process_resolve(c, x, 1); return 0; }
    }
    l_process_fail(c, f, e.msg);
    l_process_resolve(c, x, 1);
    return 0;
  }
  return rc < 0 ? -1 : 0;
}

/* The task the worker runs now, as far as the ledger says, or NULL. */
static flight *running_flight(proc_ctx *c) {
  int i;
  for (i = 0; i < PROC_SLOTS; i++) {
    flight *x = &c->fl[i];
    if (x->f && x->claimed && proc_slot_state(c->ledger, x->seq) == SLOT_STARTED) return x;
  }
  return NULL;
}

/* Tasks sent ahead wait behind one that runs long while another worker
 * idles: they go back to the head of the pool's queue (the ledger keeps
 * this worker from starting them). Returns when to look again (0: no
 * need). */
double l_process_rebalance(proc_ctx *c) {
  par_future *back[PROC_SLOTS];
  flight *run = running_flight(c);
  size_t n = 0;
  double now = par_now(), since;
  uint32_t s = c->seq;
  int i, waiting = 0;
  for (i = 0; i < PROC_SLOTS; i++) waiting |= c->fl[i].f && !c->fl[i].claimed;
  if (!waiting) return 0;
  /* the pool's task may not have started yet (the worker does not say
   * when it starts one that nothing waits behind): look again soon */
  if (!run) return now + STEAL_AFTER;
  since = now - start_of(c, run);
  if (since < STEAL_AFTER) return now + STEAL_AFTER - since;
  if (!par_pool_others_idle()) return now + fmin(0.02, fmax(STEAL_AFTER, since));
  for (i = PROC_SLOTS - 1; i >= 0; i--) {       /* oldest first */
    uint32_t seq = (uint32_t)(((int64_t)s - i + 0x7fffffff - 1) % 0x7fffffff + 1);
    flight *x = l_process_flight_of(c, seq);
    if (!x || x->claimed || !par_future_take_back(x->f)) continue;
    back[n++] = x->f;
    x->taken = 0;                               /* the reference goes with it */
    c->sent--;
    l_process_resolve(c, x, 1);
  }
  par_pool_give_back(back, n);
  return 0;
}

/* Not f->task: a cancel may free it meanwhile (it is not held yet). */
static int ahead_ok(par_future *f) {
  return atomic_load(&f->state) == PAR_PENDING && !f->segmented;
}

/* Sends tasks ahead while the worker may take more. -1 when the channel
 * failed. */
int l_process_fill(proc_ctx *c) {
  long max = c->cfg->w.max_tasks;
  int ahead = c->cfg->ahead;
  flight *run = running_flight(c);
  if (ahead < 0)
    ahead = c->avg < 0 ? 0 : (int)fmin(PROC_SLOTS - 1, AHEAD_BUDGET / fmax(c->avg, 1e-9));
  /* nothing queues behind a task that already runs long */
  if (run && par_now() - start_of(c, run) >= STEAL_AFTER) return 0;
  while (c->chan && !par_pool_aborting() && !par_pool_cancelling()) {
    int depth = 1 + ahead;
    uint32_t seq = c->seq % 0x7fffffffu + 1;
    par_future *f;
    if (c->nflight >= depth || (max && c->sent >= max) || c->fl[seq % PROC_SLOTS].f) break;
    if (!(f = par_pool_take_ahead(ahead_ok))) break;
    if (l_process_dispatch(c, f, 0) != 0) return -1;
  }
  return 0;
}

/* A shutdown that interrupts: the worker's init too (task 0 there), which
 * the interrupt of the task sent to it does not reach; a worker past its
 * init ignores it. */
void l_process_interrupt_init(proc_ctx *c) {
  union sigval v;
  v.sival_int = 0;
  pthread_mutex_lock(&c->pid_mu);
  if (c->pid > 0) {
    atomic_store(&c->ledger->stop, 1);   /* read by the handler and by begin_run */
    sigqueue(c->pid, SIGURG, v);
  }
  pthread_mutex_unlock(&c->pid_mu);
}

/* Looks at the ledger: tasks that started (the worker said so before the
 * outcome of the one before), tasks sent ahead that a cancel recalled. */
void l_process_sweep(proc_ctx *c) {
  uint32_t s = c->seq;
  int i, cancelling = par_pool_cancelling();
  if (c->abort_at == 0 && par_pool_aborting()) {
    /* once: a SIGURG that merges into one still pending (the task's) or
     * comes before the process has its handler is not lost, as the worker
     * also reads the ledger's stop word in its handler and whenever its
     * init or a task begins */
    c->abort_at = par_now();
    l_process_interrupt_init(c);
  }
  /* oldest first: the worker starts them in that order */
  for (i = PROC_SLOTS - 1; i >= 0; i--) {
    uint32_t seq = (uint32_t)(((int64_t)s - i + 0x7fffffff - 1) % 0x7fffffff + 1);
    flight *x = l_process_flight_of(c, seq);
    int st;
    if (x && x->claimed && cancelling && !c->abort_at && !x->why_killed &&
        c->ntasks == 0 && !atomic_load(&c->ledger->ready) &&
        proc_slot_move(c->ledger, seq, SLOT_QUEUED, SLOT_CANCELLED)) {
      /* The pool's task, which its process (starting, or in an init that
       * may never end) has not started: a shutdown that cancels what has
       * not started must not wait for it. Claimed, so it fails (the
       * worker skips it). Not at a terminate(), which interrupts the init
       * (the task then fails with it) and kills a process that ignores it.
       * Not for a process that ran tasks or says it is past its init
       * (ledger.h: ready; a spare runs its init after the take-over): a
       * submit hands a task to such a parked worker, whose future says
       * running at once, and it starts it within a wake-up. */
      l_process_fail(c, x->f, "cancelled: the pool shut down (cancel = true) before the task started; "
           "its worker process was still starting or running the pool's init");
      c->sent--;
      l_process_resolve(c, x, 1);
      continue;
    }
    if (!x || x->claimed) continue;
    if (cancelling) par_future_cancel(x->f);
    st = proc_slot_state(c->ledger, seq);
    if (st == SLOT_STARTED || st == SLOT_FINISHED || st == SLOT_KILLED) {
      l_process_mark_started(c, x);
    } else if (st == SLOT_CANCELLED) {
      par_future_hold(x->f, NULL);   /* waits for the cancel to finish */
      c->sent--;
      l_process_resolve(c, x, 1);
    }
  }
}

/* Kills the worker for a task past its deadline (task_timeout from its
 * start; a shutdown's interrupt ignored for SHUTDOWN_GRACE); returns the
 * next deadline, 0 for none. */
double l_process_expire(proc_ctx *c) {
  double next = 0, now = par_now();
  int i;
  for (i = 0; i < PROC_SLOTS; i++) {
    flight *x = &c->fl[i];
    double d = 0;
    int why = KILL_NONE;
    if (!x->f || !x->claimed || x->why_killed) continue;
    if (x->f->timeout > 0) {
      int st = proc_slot_state(c->ledger, x->seq);
      if (st == SLOT_STARTED) {
        d = start_of(c, x) + x->f->timeout;
        why = KILL_TIMEOUT;
      } else if (st == SLOT_QUEUED) {
        /* The pool's task, not started: the process is still starting or
         * in its init (nothing else runs before it there). A stopped
         * process, an init that blocks, must not hold it for ever: the
         * same timeout, from when the task was sent. */
        d = x->start + x->f->timeout;
        why = KILL_NOT_STARTED;
      }
    }
    if (c->abort_at > 0 && (d == 0 || c->abort_at + SHUTDOWN_GRACE < d)) {
      d = c->abort_at + SHUTDOWN_GRACE;
      why = KILL_SHUTDOWN;
    }
    if (d == 0) continue;
    if (d <= now) {
      pthread_mutex_lock(&c->pid_mu);
      l_process_kill_flight(c, x, why);
      pthread_mutex_unlock(&c->pid_mu);
    } else if (next == 0 || d < next) {
      next = d;
    }
  }
  return next;
}

