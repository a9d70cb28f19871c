/*
 * A worker process's channel: frames between the parent and one worker
 * through two rings in shared memory (the worker's ledger mapping,
 * ledger.h), with the socket kept for what a ring cannot carry, no Lua.
 *
 * Why: a frame over the socket costs a sendmsg, a poll and a read on top
 * of the wake-up, and a waiter can only spin on it with poll(2) calls. In a
 * ring a frame costs two memcpy's, and a waiter that spins looks at one
 * word; a sleeping peer is woken through its eventfd, the only system call
 * of a hop (none when the peer spins).
 *
 * Order. Each direction is one sequence of frames. A frame that fits
 * (PROC_RING_FRAME bytes or less) goes into the ring; a larger one goes
 * over the socket (par_wire_chan: never blocks) and leaves a marker in the
 * ring, so the reader takes it from the socket when it reaches the marker.
 * A frame the ring has no room for now waits in this side's pending list
 * (in order, never blocking): proc_chan_io moves it in as room appears.
 *
 * Death. A record is published (the ring's tail moves) only once written,
 * so a peer that dies mid-write leaves nothing half-written; the reader
 * takes every published frame before it reports the socket closed, so
 * frames that came first count, then the death. Lengths are checked
 * against what was published: a corrupt ring is a broken channel.
 *
 * Sleeping. A side about to sleep says so (proc_chan_sleep: it wants data,
 * and room if it has frames pending), then looks once more; a side that
 * publishes or frees room and sees the peer asleep for it writes the
 * peer's eventfd. Both use sequentially consistent operations, so one of
 * the two sees the other. When only the ring can end its wait (it is
 * empty, so no socket frame is on its way; nothing of this side's waits
 * for the socket), proc_chan_wait sleeps on the asleep word itself, a
 * futex shared by both processes, and the peer wakes it with FUTEX_WAKE:
 * one system call each side instead of a write, a poll and a read. Such
 * a sleeper does not watch the socket, so closing a channel
 * (proc_chan_free) marks it closed in the mapping and wakes the peer,
 * which then polls and finds the socket closed. A peer that dies does
 * not: a worker dies with its parent (spawn.h), and the parent never
 * sleeps on the word (its I/O thread polls, for the socket and its other
 * descriptors).
 *
 * Threads: each end is used by one thread (the parent's I/O thread, the
 * worker's one thread), except that proc_chan_fd/proc_chan_ready may be
 * read by that thread's spin. Ownership: the channel owns the socket, not
 * the mapping nor the eventfds.
 */
#ifndef PAR_PROC_PCHAN_H
#define PAR_PROC_PCHAN_H

#include <stdatomic.h>
#include <stddef.h>

#include "process/ledger.h"
#include "wire/wire.h"

/* The worker's eventfds: the one it is woken with, the parent's. */
#define PROC_BELL_FD 5
#define PROC_PARENT_BELL_FD 6

typedef struct proc_chan proc_chan;

/* side: PROC_PARENT or PROC_WORKER; sock: the socket (owned from here);
 * bell_in: this side's eventfd (read to clear it), bell_out: the peer's. */
proc_chan *proc_chan_new(proc_ledger *shared, int side, int sock, int bell_in, int bell_out);
void proc_chan_free(proc_chan *c);
int proc_chan_fd(proc_chan *c);

/* As par_wire_chan_send: queues head+body as one frame, never blocks. */
int proc_chan_send(proc_chan *c, const void *head, size_t hlen, const void *body, size_t blen,
                   par_wire_err *e);
/* Bytes not yet in the ring or written to the socket. */
size_t proc_chan_backlog(proc_chan *c);

/* The next frame, valid until the next call of next, peek, io or wait:
 * 1, 0 when none is complete, -1 (e filled) once the channel is closed or
 * broken and every frame before that was taken. */
int proc_chan_next(proc_chan *c, const unsigned char **frame, size_t *len, par_wire_err *e);
int proc_chan_peek(proc_chan *c, const unsigned char **frame, size_t *len);

/* A frame (or a marker) waits to be read: a spin's test, no system call. */
int proc_chan_ready(void *c);
/* The next frame is one coming over the socket that has not all come:
 * only the socket can end a wait for it, a spin on the ring cannot. */
int proc_chan_on_socket(proc_chan *c);

/* For a poll loop of the caller's: the socket's events; before the poll,
 * proc_chan_sleep says whether to sleep (0: something is there already,
 * poll without waiting) and marks this side asleep, waiting for room for
 * its pending frames and, if data, for a frame; proc_chan_wake
 * after it (drains this side's eventfd if bell). proc_chan_io then reads
 * the socket (if the poll saw revents there) and moves pending frames into
 * the ring: 0, or -1 (e filled) when the socket failed or closed. */
short proc_chan_events(proc_chan *c);
int proc_chan_sleep(proc_chan *c, int data);
/* An idle wait of the reader, while another thread may send on this
 * channel (the parent's I/O thread, parked, while a submitter sends):
 * gives back the room of the frame taken last and marks this side asleep
 * for a frame, touching only the reading side's state; the peer's next
 * frame then writes this side's eventfd. proc_chan_wake ends it. */
void proc_chan_idle(proc_chan *c);
void proc_chan_wake(proc_chan *c, int bell);

/* A reader on another thread while the reader proper is idle (the
 * parent's I/O thread parked, a thread waiting for a task's outcome takes
 * it from the ring itself): quiet, first, so that the peer's frames ring
 * no bell (the parked thread would wake for them); then doze sleeps on
 * this side's asleep word (a futex) until a frame is published, the
 * deadline, or nudge: 0, or -1 once the peer closed its end. nudge (any
 * thread) ends a doze at once and any that begins before it looks at
 * *stop. The socket is not watched: whoever watches it nudges. */
void proc_chan_quiet(proc_chan *c);
int proc_chan_doze(proc_chan *c, double deadline, _Atomic int *stop);
void proc_chan_nudge(proc_chan *c);
int proc_chan_io(proc_chan *c, short revents, par_wire_err *e);

/* poll on the socket and this side's eventfd up to timeout_ms (-1: until
 * something happened), then io: 0, or -1 as proc_chan_io. data: a frame
 * to read ends the wait (a writer waiting for its backlog says 0). */
int proc_chan_wait(proc_chan *c, int data, int timeout_ms, par_wire_err *e);

#endif
