/* The wire layer's channel without Lua: two ends that each send large
 * frames to the other at once (the pattern that deadlocked a prototype,
 * both socket buffers full) must both finish, in threads and across fork;
 * frames arrive whole and in order; a closed other end is an error, not a
 * hang or a SIGPIPE. An alarm fails a test that hangs. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "wire/wire.h"

#define FRAMES 24
#define FRAME_BYTES ((size_t)3 << 20)   /* far over a socket buffer */

static unsigned char pattern(int side, int frame, size_t i) {
  return (unsigned char)(side * 131 + frame * 31 + i * 7 + (i >> 12));
}

/* Sends FRAMES frames and receives as many, all at once; 0 when every
 * received byte is as expected. */
static int exchange(int fd, int side) {
  par_wire_chan *c = par_wire_chan_new(fd, 0);
  par_wire_err e;
  unsigned char *buf = malloc(FRAME_BYTES), head[2];
  int sent = 0, got = 0, bad = 0, closed = 0;
  size_t i;
  if (!c || !buf) return 1;
  while (got < FRAMES || par_wire_chan_backlog(c) > 0) {
    const unsigned char *f;
    size_t n;
    if (sent < FRAMES) {              /* never blocks: the backlog grows */
      head[0] = (unsigned char)side;
      head[1] = (unsigned char)sent;
      for (i = 0; i < FRAME_BYTES; i++) buf[i] = pattern(side, sent, i);
      if (par_wire_chan_send(c, head, 2, buf, FRAME_BYTES - (size_t)sent, &e) != 0) { bad = 1; break; }
      sent++;
      continue;
    }
    while (!bad && par_wire_chan_next(c, &f, &n, &e) == 1) {
      if (n != 2 + FRAME_BYTES - (size_t)got || f[0] != 1 - side || f[1] != got) bad = 1;
      for (i = 0; !bad && i < n - 2; i++)
        if (f[2 + i] != pattern(1 - side, got, i)) bad = 1;
      got++;
    }
    /* the other end may finish and close first: frames read before that
     * are still taken above, once more */
    if (closed) { bad = bad || got < FRAMES; break; }
    if (got < FRAMES || par_wire_chan_backlog(c) > 0)
      if (par_wire_chan_wait(c, 1000, &e) != 0) closed = 1;
  }
  free(buf);
  par_wire_chan_free(c);
  return bad || got != FRAMES;
}

typedef struct side_arg { int fd, side, result; } side_arg;

static void *run_side(void *p) {
  side_arg *a = p;
  a->result = exchange(a->fd, a->side);
  return NULL;
}

static void both_ways_threads(void) {
  int sv[2];
  pthread_t t;
  side_arg a, b;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  a.fd = sv[0]; a.side = 0;
  b.fd = sv[1]; b.side = 1;
  CHECK(pthread_create(&t, NULL, run_side, &b) == 0);
  run_side(&a);
  pthread_join(t, NULL);
  CHECK_EQ(a.result, 0);
  CHECK_EQ(b.result, 0);
}

static void both_ways_fork(void) {
  int sv[2], st;
  pid_t pid;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(sv[0]);
    _exit(exchange(sv[1], 1));
  }
  close(sv[1]);
  CHECK_EQ(exchange(sv[0], 0), 0);
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st));
  CHECK_EQ(WEXITSTATUS(st), 0);
}

/* Many small frames, a frame split across reads, an empty frame. */
static void small_frames(void) {
  int sv[2], i, got = 0;
  par_wire_chan *a, *b;
  par_wire_err e;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  a = par_wire_chan_new(sv[0], 0);
  b = par_wire_chan_new(sv[1], 0);
  CHECK(par_wire_chan_send(a, NULL, 0, NULL, 0, &e) == 0);
  for (i = 0; i < 10000; i++) CHECK(par_wire_chan_send(a, &i, sizeof i, "x", 1, &e) == 0);
  while (got < 10001) {
    const unsigned char *f;
    size_t n;
    int r = par_wire_chan_next(b, &f, &n, &e);
    CHECK(r >= 0);
    if (r == 0) { CHECK_EQ(par_wire_chan_wait(b, 1000, &e), 0); par_wire_chan_wait(a, 0, &e); continue; }
    if (got == 0) {
      CHECK_EQ(n, 0);
    } else {
      int v;
      CHECK_EQ(n, sizeof v + 1);
      memcpy(&v, f, sizeof v);
      CHECK_EQ(v, got - 1);
      CHECK_EQ(f[sizeof v], 'x');
    }
    got++;
  }
  par_wire_chan_free(a);
  par_wire_chan_free(b);
}

/* The other end gone: sends and reads fail with a sentence, no signal. */
static void closed_other_end(void) {
  int sv[2], pf[2], r;
  par_wire_chan *a, *p;
  par_wire_err e;
  const unsigned char *f;
  size_t n;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  a = par_wire_chan_new(sv[0], 0);
  close(sv[1]);
  CHECK(par_wire_chan_send(a, "abc", 3, NULL, 0, &e) == -1);
  CHECK(strstr(e.msg, "closed the connection") != NULL);
  r = par_wire_chan_wait(a, 1000, &e);
  CHECK_EQ(r, -1);
  CHECK_EQ(par_wire_chan_next(a, &f, &n, &e), -1);
  par_wire_chan_free(a);
  /* a pipe whose reader is closed: EPIPE, and the process lives on */
  CHECK(pipe(pf) == 0);
  close(pf[0]);
  p = par_wire_chan_new(pf[1], 0);
  CHECK(par_wire_chan_send(p, "abc", 3, NULL, 0, &e) == -1);
  CHECK(strstr(e.msg, "closed the connection") != NULL);
  par_wire_chan_free(p);
  /* a frame announced longer than the limit is refused by the reader */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  a = par_wire_chan_new(sv[0], 16);
  CHECK(write(sv[1], "\xff\xff\x00\x00", 4) == 4);
  par_wire_chan_wait(a, 1000, &e);
  CHECK_EQ(par_wire_chan_next(a, &f, &n, &e), -1);
  CHECK(strstr(e.msg, "over the limit") != NULL);
  CHECK(par_wire_chan_send(a, "0123456789", 10, "0123456789", 10, &e) == -1);
  CHECK(strstr(e.msg, "the limit is 16") != NULL);
  /* closed in the middle of a frame */
  CHECK(write(sv[1], "", 0) == 0);
  close(sv[1]);
  par_wire_chan_free(a);
}

int main(void) {
  alarm(120);                     /* a deadlock fails the test instead of hanging it */
  small_frames();
  both_ways_threads();
  both_ways_fork();
  closed_other_end();
  DONE("wire channel");
}
