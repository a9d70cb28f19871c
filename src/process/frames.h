/*
 * The process backend's conversation over one channel (wire/wire.h frames):
 * each frame is one byte saying what it is, a few fixed bytes, then a
 * flattened wire payload where there is one. Integers are native (both
 * ends checked the fingerprint first).
 *
 *   parent -> worker
 *     PF_HELLO  wire hello payload
 *     PF_CONFIG u64 memory_limit, u32 index, u32 #path, u32 #cpath, path,
 *               cpath, u8 has_init (a PF_INIT follows before any task)
 *     PF_INIT   the init call's payload. A spare worker (started ahead to
 *               replace one that dies) gets HELLO and CONFIG at once, so
 *               that its state is ready, and PF_INIT when it takes over:
 *               objects in init_args go only to the process that uses them
 *     PF_TASK   u8 kind, u32 task number (interrupts and the ledger name
 *               it; never 0), u8 ahead (1: sent while another task was in
 *               flight, not claimed yet: the worker says when it starts),
 *               payload (whole, or a stream's first segment)
 *     PF_MORE   payload: a later segment or the end of that stream
 *     (closing the channel: stop once idle)
 *     PF_REPLY  the reply to a request (wire/remote.h)
 *     PF_RELEASE as the worker's below, with n = 0: the arrays, locks...
 *               the worker made and sent that this side no longer uses
 *               (sent before a task, when there is any)
 *   worker -> parent
 *     PF_HELLO   wire hello payload
 *     PF_STARTED u32 task number: a task sent ahead started (not sent when
 *                the ledger said so before the previous task's PF_DONE)
 *     PF_SKIPPED u32 task number: a task sent ahead was cancelled first
 *     PF_REQUEST a running task calls a shared object the parent owns
 *                (wire/remote.h); the parent serves it without blocking its
 *                reading of this channel and answers with PF_REPLY
 *     PF_CANCEL  the task waiting for that request was interrupted
 *     PF_RELEASE u32 n, n × (u64 id, u64 handles): proxies of the parent's
 *                queues... collected here (par_remote_owner_release); u32
 *                m, m × (u64 owner, u64 id, u64 handles): its arrays,
 *                locks... no longer used here (par_shm_via_release). Sent
 *                before a task's PF_DONE when there is any
 *     PF_DONE    u8 state (PAR_DONE or PAR_FAILED), u32 task number, the
 *                results' payload
 *     PF_ERROR   u32 task number, text: the outcome could not be sent (a
 *                result that cannot leave the process); the task fails
 *
 * Several tasks are in flight per worker (process/ledger.h says which one
 * started); the worker runs them in the order sent, so a worker never
 * idles waiting for the parent. Only tasks whose arguments went whole are
 * sent ahead: a streamed task is sent when nothing else is in flight.
 */
#ifndef PAR_PROC_FRAMES_H
#define PAR_PROC_FRAMES_H

enum {
  PF_HELLO = 'H',
  PF_CONFIG = 'C',
  PF_INIT = 'I',
  PF_TASK = 'T',
  PF_MORE = 'M',
  PF_STARTED = 'S',
  PF_SKIPPED = 'K',
  PF_DONE = 'D',
  PF_ERROR = 'E',
  PF_REQUEST = 'Q',
  PF_REPLY = 'R',
  PF_CANCEL = 'X',
  PF_RELEASE = 'L'
};

#endif
