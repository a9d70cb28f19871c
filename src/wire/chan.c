/*
 * A framed byte stream over one file descriptor that never blocks in a
 * send (wire.h, "Channels"). A frame is a 4-byte little-endian length and
 * that many bytes.
 *
 * Why: two processes that each block writing a large frame to the other
 * deadlock as soon as both socket buffers are full. Here the fd is
 * non-blocking; what a write cannot take now waits in the backlog, and the
 * same loop that writes the backlog keeps reading incoming frames into the
 * receive buffer, so the other side's write always completes.
 *
 * Threads: c->mu guards everything below; it is never held across poll(2)
 * and no call blocks while holding it (every read and write is
 * non-blocking). Ownership: the channel owns its fd and both buffers.
 */
#define _GNU_SOURCE
#include "wire/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)64 << 10)   /* free space kept for one read */

struct par_wire_chan {
  pthread_mutex_t mu;
  int fd;
  int is_socket;          /* send(MSG_NOSIGNAL); else writev with SIGPIPE blocked */
  size_t max_frame;
  unsigned char *out;     /* backlog: bytes [out_off, out_len) wait to be written */
  size_t out_off, out_len, out_cap;
  unsigned char *in;      /* received: [in_off, in_len) not yet taken by next */
  size_t in_off, in_len, in_cap;
  int broken;             /* writing failed: nothing more goes out */
  int eof;                /* reading ended (closed by the other end, or failed) */
  char why[160];          /* what broke it */
};

int par_wire_fail(par_wire_err *e, const char *fmt, ...) {
  if (e) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

par_wire_chan *par_wire_chan_new(int fd, size_t max_frame) {
  par_wire_chan *c;
  int type, flags;
  socklen_t tl = sizeof type;
  if (fd < 0) return NULL;
  c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (pthread_mutex_init(&c->mu, NULL) != 0) { free(c); return NULL; }
  c->fd = fd;
  c->max_frame = max_frame && max_frame < PAR_WIRE_MAX_FRAME ? max_frame : PAR_WIRE_MAX_FRAME;
  c->is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0;
  flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  return c;
}

void par_wire_chan_free(par_wire_chan *c) {
  if (!c) return;
  close(c->fd);
  free(c->out);
  free(c->in);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

int par_wire_chan_fd(par_wire_chan *c) { return c->fd; }

static void broke(par_wire_chan *c, int err) {
  if (c->broken) return;
  c->broken = 1;
  if (err == EPIPE || err == ECONNRESET)
    snprintf(c->why, sizeof c->why, "the other process closed the connection");
  else
    snprintf(c->why, sizeof c->why, "the connection to the other process failed (%s)", strerror(err));
}

/* A pipe's write to a closed reader raises SIGPIPE: block it for this
 * thread around the write, and take a SIGPIPE the write left pending. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int n) {
  sigset_t pipe_only, old, pending;
  ssize_t r;
  int was_pending, err;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  r = writev(fd, iov, n);
  err = errno;
  if (r < 0 && err == EPIPE && !was_pending) {
    struct timespec zero = { 0, 0 };
    while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR) {}
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return r;
}

/* Writes what the fd takes now: bytes written (0 when it takes none), or
 * -1 once the channel is broken. */
static ssize_t write_now(par_wire_chan *c, struct iovec *iov, int n) {
  for (;;) {
    ssize_t r;
    if (c->is_socket) {
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_iov = iov;
      mh.msg_iovlen = (size_t)n;
      r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      r = writev_nosigpipe(c->fd, iov, n);
    }
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    broke(c, errno);
    return -1;
  }
}

static void flush_backlog(par_wire_chan *c) {
  while (!c->broken && c->out_off < c->out_len) {
    struct iovec v;
    ssize_t r;
    v.iov_base = c->out + c->out_off;
    v.iov_len = c->out_len - c->out_off;
    r = write_now(c, &v, 1);
    if (r <= 0) break;
    c->out_off += (size_t)r;
  }
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

/* Appends the unwritten rest of iov (skip bytes already written). */
static int backlog_add(par_wire_chan *c, const struct iovec *iov, int n, size_t skip) {
  size_t total = 0, need;
  int i;
  for (i = 0; i < n; i++) total += iov[i].iov_len;
  total -= skip;
  if (c->out_off > 0 && c->out_off >= c->out_len / 2) {      /* move the backlog down */
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  need = c->out_len + total;
  if (need > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    unsigned char *p;
    while (cap < need) cap *= 2;
    p = realloc(c->out, cap);
    if (!p) return -1;
    c->out = p;
    c->out_cap = cap;
  }
  for (i = 0; i < n; i++) {
    size_t len = iov[i].iov_len, from = 0;
    if (skip >= len) { skip -= len; continue; }
    from = skip;
    skip = 0;
    memcpy(c->out + c->out_len, (const unsigned char *)iov[i].iov_base + from, len - from);
    c->out_len += len - from;
  }
  return 0;
}

int par_wire_chan_send(par_wire_chan *c, const void *head, size_t hlen, const void *body,
                       size_t blen, par_wire_err *e) {
  unsigned char len4[4];
  struct iovec iov[3];
  size_t total = hlen + blen, done = 0;
  int i, rc = 0;
  if (total > c->max_frame || total < hlen)
    return par_wire_fail(e, "cannot send a frame of %zu bytes to another process (the limit is %zu)", total,
                c->max_frame);
  for (i = 0; i < 4; i++) len4[i] = (unsigned char)(total >> (8 * i));
  iov[0].iov_base = len4; iov[0].iov_len = 4;
  iov[1].iov_base = (void *)head; iov[1].iov_len = hlen;
  iov[2].iov_base = (void *)body; iov[2].iov_len = blen;
  pthread_mutex_lock(&c->mu);
  if (c->broken) {
    rc = par_wire_fail(e, "%s", c->why);
  } else {
    if (c->out_off == c->out_len) {        /* nothing waits: straight out, as far as it goes */
      ssize_t r = write_now(c, iov, 3);
      if (r < 0) rc = par_wire_fail(e, "%s", c->why);
      else done = (size_t)r;
    }
    if (rc == 0 && done < 4 + total) {
      if (backlog_add(c, iov, 3, done) != 0) rc = par_wire_fail(e, "not enough memory");
      else flush_backlog(c);
    }
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

size_t par_wire_chan_backlog(par_wire_chan *c) {
  size_t n;
  pthread_mutex_lock(&c->mu);
  n = c->out_len - c->out_off;
  pthread_mutex_unlock(&c->mu);
  return n;
}

short par_wire_chan_events(par_wire_chan *c) {
  short ev = POLLIN;
  pthread_mutex_lock(&c->mu);
  if (c->out_off < c->out_len && !c->broken) ev |= POLLOUT;
  pthread_mutex_unlock(&c->mu);
  return ev;
}

/* Reads until the fd has nothing more. */
static void read_all(par_wire_chan *c) {
  while (!c->eof) {
    ssize_t r;
    if (c->in_off > 0) {                     /* taken frames are dropped here only */
      memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
      c->in_len -= c->in_off;
      c->in_off = 0;
    }
    if (c->in_cap - c->in_len < READ_CHUNK) {
      size_t cap = c->in_cap ? c->in_cap * 2 : 2 * READ_CHUNK;
      unsigned char *p = realloc(c->in, cap);
      if (!p) {
        /* Doubling failed (a process under RLIMIT_DATA). Returning to read
         * later would never make progress (the caller would wait forever
         * for a frame that cannot arrive): read into the room left, or
         * grow to just the frame being received, else the channel ends. */
        size_t need = 0;
        if (c->in_len >= 4) {
          const unsigned char *h = c->in;
          size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
          if (4 + n > c->in_len) need = 4 + n;
          else return;               /* a whole frame first: taking it makes room */
        } else {
          need = 4;
        }
        if (need <= c->in_cap) {
          p = c->in;                 /* room for the rest of this frame */
          cap = c->in_cap;
        } else if ((p = realloc(c->in, need)) != NULL) {
          cap = need;
        } else {
          c->eof = 1;
          snprintf(c->why, sizeof c->why,
                   "not enough memory to receive a message of %zu bytes from the other process", need);
          return;
        }
      }
      c->in = p;
      c->in_cap = cap;
    }
    r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (r > 0) {
      c->in_len += (size_t)r;
      /* less than asked for: a stream socket or pipe has nothing more now
       * (the next poll says when it has), so no read that would say EAGAIN */
      if (c->in_len < c->in_cap) return;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    c->eof = 1;
    if (r < 0 && !c->why[0])
      snprintf(c->why, sizeof c->why, "the connection to the other process failed (%s)", strerror(errno));
  }
}

static int io_locked(par_wire_chan *c, par_wire_err *e) {
  read_all(c);
  flush_backlog(c);
  if (c->broken) return par_wire_fail(e, "%s", c->why);
  if (c->eof) return par_wire_fail(e, "%s", c->why[0] ? c->why : "the other process closed the connection");
  return 0;
}

int par_wire_chan_io(par_wire_chan *c, short revents, par_wire_err *e) {
  int rc;
  (void)revents;          /* both directions are tried: neither can block */
  pthread_mutex_lock(&c->mu);
  rc = io_locked(c, e);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int par_wire_chan_wait(par_wire_chan *c, int timeout_ms, par_wire_err *e) {
  struct pollfd pf;
  int r;
  pf.fd = c->fd;
  pf.events = par_wire_chan_events(c);
  pf.revents = 0;
  r = poll(&pf, 1, timeout_ms);
  if (r < 0 && errno != EINTR) return par_wire_fail(e, "poll failed (%s)", strerror(errno));
  if (r <= 0) return 0;
  return par_wire_chan_io(c, pf.revents, e);
}

static int next_frame(par_wire_chan *c, const unsigned char **frame, size_t *len,
                      par_wire_err *e, int take);

int par_wire_chan_next(par_wire_chan *c, const unsigned char **frame, size_t *len,
                       par_wire_err *e) {
  return next_frame(c, frame, len, e, 1);
}

int par_wire_chan_peek(par_wire_chan *c, const unsigned char **frame, size_t *len) {
  return next_frame(c, frame, len, NULL, 0) == 1;
}

static int next_frame(par_wire_chan *c, const unsigned char **frame, size_t *len,
                      par_wire_err *e, int take) {
  int rc = 0;
  size_t avail;
  pthread_mutex_lock(&c->mu);
  avail = c->in_len - c->in_off;
  if (avail >= 4) {
    const unsigned char *p = c->in + c->in_off;
    size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    if (n > c->max_frame) {
      rc = par_wire_fail(e, "corrupt message from the other process (a frame of %zu bytes, over the limit of %zu)",
                n, c->max_frame);
    } else if (avail - 4 >= n) {
      *frame = p + 4;
      *len = n;
      if (take) c->in_off += 4 + n;
      rc = 1;
    }
  }
  if (rc == 0 && c->eof) {
    if (avail == 0) rc = par_wire_fail(e, "%s", c->why[0] ? c->why : "the other process closed the connection");
    else rc = par_wire_fail(e, "the other process closed the connection in the middle of a frame");
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}
