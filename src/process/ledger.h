/*
 * A worker process's ledger: which of the tasks sent to it has started,
 * in a small shared mapping (memfd) that the parent and that one worker
 * both see, no Lua.
 *
 * The parent keeps up to PROC_SLOTS tasks in flight per worker (one runs,
 * the next ones wait in the worker's ring, pchan.h), so that the worker never
 * idles waiting for the parent. Task number seq uses slot seq %
 * PROC_SLOTS, whose word holds (seq << 8 | state): the number makes a
 * stale compare-and-swap fail, so a slot is reused without ABA.
 *
 *   QUEUED -> STARTED    the worker, before it runs the task (start_ns
 *                        first: task_timeout counts from there)
 *   QUEUED -> CANCELLED  the parent: a cancel of a task sent ahead; the
 *                        worker skips it
 *   STARTED -> FINISHED  the worker, before it sends the outcome
 *   STARTED -> KILLED    the parent, before it kills the worker for this
 *                        task (kill, task_timeout): the worker, finding its
 *                        FINISHED refused, sends nothing and waits to die,
 *                        so a kill never hits the task after
 *
 * Every transition is one compare-and-swap on one word, so a peer that
 * dies at any point leaves a ledger the survivor can read: when a worker
 * dies, a STARTED or KILLED task is the one it was running and fails; a
 * QUEUED one never started and runs elsewhere.
 */
#ifndef PAR_PROC_LEDGER_H
#define PAR_PROC_LEDGER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The descriptor the ledger has in the worker. */
#define PROC_LEDGER_FD 4

/* Tasks in flight per worker at most (a power of two). */
#define PROC_SLOTS 8

enum {
  SLOT_FREE = 0,
  SLOT_QUEUED,
  SLOT_STARTED,
  SLOT_FINISHED,
  SLOT_CANCELLED,
  SLOT_KILLED
};

typedef struct proc_slot {
  _Atomic uint64_t word;
  _Atomic int64_t start_ns;      /* CLOCK_MONOTONIC, set before STARTED */
  /* seq once the parent asked this task to stop (interrupt), set before
   * the SIGURG that says so: a SIGURG can merge into another one pending
   * (signals do not queue) or reach a process still starting, before its
   * handler, so the worker looks here too when the task begins. */
  _Atomic uint32_t asked;
  char pad[44];
} proc_slot;

/* The rings of the worker's channel (pchan.h): bytes in flight are
 * [head, tail), both counting from the start of this worker process. */
#define PROC_RING_SIZE ((size_t)1 << 16)
/* Frames up to this size go through a ring; larger ones over the socket. */
#define PROC_RING_FRAME (PROC_RING_SIZE / 4)

typedef struct proc_ring {
  _Atomic uint64_t tail;         /* the writer's: published up to here */
  char pad0[56];
  _Atomic uint64_t head;         /* the reader's: taken up to here */
  char pad1[56];
  unsigned char data[PROC_RING_SIZE];
} proc_ring;

/* The two ends: an index into asleep[] and ring[] (each writes its own). */
enum { PROC_PARENT = 0, PROC_WORKER = 1 };

typedef struct proc_ledger {
  proc_slot slot[PROC_SLOTS];
  _Atomic uint32_t asleep[2];    /* what that side sleeps until (pchan.c); a futex word */
  _Atomic uint32_t closed[2];    /* that side closed its end (pchan.c) */
  char pad[48];
  proc_ring ring[2];             /* ring[side]: the frames side sends */
  /* 1: the pool shuts down and interrupts (init and every task). Set
   * before the SIGURG that says so: two SIGURGs close together merge into
   * the first, whose number may be a task's, so the worker's handler also
   * looks here. */
  _Atomic uint32_t stop;
  /* 1 once the worker is past the pool's init (or has none): a task the
   * parent hands it starts within a wake-up, so a shutdown that cancels
   * does not take it for one stuck behind a starting process. */
  _Atomic uint32_t ready;
} proc_ledger;

static inline proc_slot *proc_slot_of(proc_ledger *l, uint32_t seq) {
  return &l->slot[seq % PROC_SLOTS];
}

static inline uint64_t proc_slot_word(uint32_t seq, int state) {
  return (uint64_t)seq << 8 | (uint64_t)state;
}

/* The state of task seq in its slot (SLOT_FREE: the slot holds another). */
static inline int proc_slot_state(proc_ledger *l, uint32_t seq) {
  uint64_t w = atomic_load(&proc_slot_of(l, seq)->word);
  return (uint32_t)(w >> 8) == seq ? (int)(w & 0xff) : SLOT_FREE;
}

/* Moves task seq from one state to another: 1 if it was in `from`. */
static inline int proc_slot_move(proc_ledger *l, uint32_t seq, int from, int to) {
  uint64_t expected = proc_slot_word(seq, from);
  return atomic_compare_exchange_strong(&proc_slot_of(l, seq)->word, &expected,
                                        proc_slot_word(seq, to));
}

/* A new ledger: its descriptor (close-on-exec) into *fd, or NULL. */
proc_ledger *proc_ledger_new(int *fd);
/* Maps the ledger a worker inherited; NULL if there is none. */
proc_ledger *proc_ledger_map(int fd);
void proc_ledger_unmap(proc_ledger *l);

#endif
