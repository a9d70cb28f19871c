/*
 * The process backend's conversation over one channel (wire/wire.h frames):
 * each frame is one byte saying what it is, a few fixed bytes, then a
 * flattened wire payload where there is one. Integers are native (both
 * ends checked the fingerprint first).
 *
 *   parent -> worker
 *     PF_HELLO  wire hello payload
 *     PF_CONFIG u64 memory_limit, u32 index, u32 #path, u32 #cpath, path,
 *               cpath, u8 has_init, then the init call's payload if any
 *     PF_TASK   u8 kind, u32 task number (interrupts name it; never 0),
 *               payload (whole, or a stream's first segment)
 *     PF_MORE   payload: a later segment or the end of that stream
 *     (closing the channel: stop once idle)
 *     PF_REPLY  the reply to a request (wire/remote.h)
 *   worker -> parent
 *     PF_HELLO  wire hello payload
 *     PF_REQUEST a running task calls a shared object the parent owns
 *               (wire/remote.h); the parent serves it without blocking its
 *               reading of this channel and answers with PF_REPLY
 *     PF_CANCEL the task waiting for that request was interrupted
 *     PF_DONE   u8 state (PAR_DONE or PAR_FAILED), the results' payload
 *     PF_ERROR  text: the outcome could not be sent (a result that cannot
 *               leave the process); the task fails with it
 *
 * One task is in flight per worker: a task is sent only after the
 * previous one's PF_DONE or PF_ERROR arrived, so a worker that dies takes
 * no queued task with it.
 */
#ifndef PAR_PROC_FRAMES_H
#define PAR_PROC_FRAMES_H

enum {
  PF_HELLO = 'H',
  PF_CONFIG = 'C',
  PF_TASK = 'T',
  PF_MORE = 'M',
  PF_DONE = 'D',
  PF_ERROR = 'E',
  PF_REQUEST = 'Q',
  PF_REPLY = 'R',
  PF_CANCEL = 'X'
};

#endif
