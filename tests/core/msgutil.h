/* Messages carrying one long integer, built without the codec. */
#ifndef PAR_TEST_MSGUTIL_H
#define PAR_TEST_MSGUTIL_H
#include <string.h>
#include "core/msg.h"

static par_msg *msg_of(long v) {
  par_buf b;
  par_msg *m;
  par_buf_init(&b);
  if (!par_buf_reserve(&b, sizeof v)) return NULL;
  memcpy(b.data, &v, sizeof v);
  b.len = sizeof v;
  m = par_buf_finish(&b);
  par_buf_free(&b);
  return m;
}

static long msg_value(const par_msg *m) {
  long v;
  memcpy(&v, m->data, sizeof v);
  return v;
}
#endif
