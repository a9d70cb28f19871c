/* First stub of the wire layer (see wire.h); the implementation follows. */
#include "wire/wire.h"

#include <stdio.h>

static int not_yet(par_wire_err *e) {
  if (e) snprintf(e->msg, sizeof e->msg, "the wire layer is not implemented yet");
  return -1;
}

const char *par_wire_fingerprint(void) { return "wire stub"; }
int par_wire_hello(par_buf *out) { (void)out; return -1; }
int par_wire_check_hello(const void *b, size_t n, par_wire_err *e) { (void)b; (void)n; return not_yet(e); }
par_wire_peer *par_wire_peer_new(const par_wire_objects *o) { (void)o; return NULL; }
void par_wire_peer_reset(par_wire_peer *p) { (void)p; }
void par_wire_peer_free(par_wire_peer *p) { (void)p; }
void par_wire_peer_stats(par_wire_peer *p, par_wire_stats *o) { (void)p; (void)o; }
int par_wire_flatten(par_wire_peer *p, const par_msg *m, par_buf *out, uint32_t *s, par_wire_err *e) {
  (void)p; (void)m; (void)out; (void)s; return not_yet(e);
}
int par_wire_flatten_segment(par_wire_peer *p, uint32_t s, const par_msg *m, par_buf *out, par_wire_err *e) {
  (void)p; (void)m; (void)out; (void)s; return not_yet(e);
}
int par_wire_flatten_end(par_wire_peer *p, uint32_t s, par_buf *out, par_wire_err *e) {
  (void)p; (void)out; (void)s; return not_yet(e);
}
int par_wire_rebuild(par_wire_peer *p, const void *b, size_t n, par_msg **out, par_wire_err *e) {
  (void)p; (void)b; (void)n; *out = NULL; return not_yet(e);
}
int par_wire_kind(const void *b, size_t n) { return n ? *(const unsigned char *)b : -1; }
par_wire_chan *par_wire_chan_new(int fd, size_t m) { (void)fd; (void)m; return NULL; }
void par_wire_chan_free(par_wire_chan *c) { (void)c; }
int par_wire_chan_fd(par_wire_chan *c) { (void)c; return -1; }
int par_wire_chan_send(par_wire_chan *c, const void *h, size_t hl, const void *b, size_t bl, par_wire_err *e) {
  (void)c; (void)h; (void)hl; (void)b; (void)bl; return not_yet(e);
}
size_t par_wire_chan_backlog(par_wire_chan *c) { (void)c; return 0; }
short par_wire_chan_events(par_wire_chan *c) { (void)c; return 0; }
int par_wire_chan_io(par_wire_chan *c, short r, par_wire_err *e) { (void)c; (void)r; return not_yet(e); }
int par_wire_chan_wait(par_wire_chan *c, int t, par_wire_err *e) { (void)c; (void)t; return not_yet(e); }
int par_wire_chan_next(par_wire_chan *c, const unsigned char **f, size_t *n, par_wire_err *e) {
  (void)c; (void)f; (void)n; return not_yet(e);
}
