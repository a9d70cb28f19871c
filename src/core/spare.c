#include "spare.h"

#include <stdlib.h>

void *par_spare_take(par_spare *s, size_t n) {
  int i;
  if (n < PAR_SPARE_MIN) return NULL;
  for (i = 0; i < PAR_SPARE_SLOTS; i++) {
    if (s->block[i] && s->size[i] >= n && s->size[i] / 2 <= n) {
      void *p = s->block[i];
      s->block[i] = NULL;
      s->size[i] = 0;
      return p;
    }
  }
  return NULL;
}

void par_spare_give(par_spare *s, void *p, size_t n) {
  size_t total = 0;
  int i, slot = -1;
  if (!p) return;
  if (n < PAR_SPARE_MIN) { free(p); return; }
  for (i = 0; i < PAR_SPARE_SLOTS; i++) {
    total += s->size[i];
    if (!s->block[i] && slot < 0) slot = i;
  }
  if (slot < 0) {
    /* full: the older half goes (slot 0), the rest moves down */
    total -= s->size[0];
    free(s->block[0]);
    for (i = 1; i < PAR_SPARE_SLOTS; i++) {
      s->block[i - 1] = s->block[i];
      s->size[i - 1] = s->size[i];
    }
    slot = PAR_SPARE_SLOTS - 1;
    s->block[slot] = NULL;
    s->size[slot] = 0;
  }
  if (total + n > PAR_SPARE_TOTAL) { free(p); return; }
  s->block[slot] = p;
  s->size[slot] = n;
}

void par_spare_clear(par_spare *s) {
  int i;
  for (i = 0; i < PAR_SPARE_SLOTS; i++) {
    free(s->block[i]);
    s->block[i] = NULL;
    s->size[i] = 0;
  }
}
