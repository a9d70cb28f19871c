/*
 * The byte format of requests and replies (wire/remote.h): fixed fields
 * and parts. Shared by the owner's and the client's side. Threads: none of
 * its own; the peer locks itself.
 */
#include "wire/remote_parts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void par_remote_parts_free(par_remote_part *parts, size_t n) {
  size_t i;
  if (!parts) return;
  for (i = 0; i < n; i++) {
    par_msg_free(parts[i].m);
    free(parts[i].bytes);
    if (parts[i].obj) par_object_release(parts[i].obj);
  }
  free(parts);
}

int rp_put(par_buf *b, const void *p, size_t n) {
  if (!par_buf_reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int rp_put_u32(par_buf *b, uint32_t v) { return rp_put(b, &v, 4); }
int rp_put_u64(par_buf *b, uint64_t v) { return rp_put(b, &v, 8); }
int rp_put_u8(par_buf *b, unsigned v) { unsigned char c = (unsigned char)v; return rp_put(b, &c, 1); }

int rp_get(rp_reader *r, void *p, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  memcpy(p, r->p, n);
  r->p += n;
  return 0;
}

int rp_is_immediate(const par_msg *m) { return ((uintptr_t)m & 3u) != 0; }

int rp_put_part(par_buf *b, par_wire_peer *peer, const par_remote_part *p,
                rp_export_fn export_fn, void *ud, par_wire_err *e) {
  size_t mark = b->len;
  switch (p->tag) {
    case 'M':
      if (rp_is_immediate(p->m)) {
        if (rp_put_u8(b, 'I') || rp_put_u64(b, (uint64_t)(uintptr_t)p->m)) goto nomem;
        return 0;
      } else {
        size_t at;
        if (rp_put_u8(b, 'M') || rp_put_u32(b, 0)) goto nomem;
        at = b->len;
        if (par_wire_flatten(peer, p->m, b, NULL, e) != 0) { b->len = mark; return -1; }
        {
          uint32_t n = (uint32_t)(b->len - at);
          memcpy(b->data + at - 4, &n, 4);
        }
        return 0;
      }
    case 'B':
      if (rp_put_u8(b, 'B') || rp_put_u32(b, (uint32_t)p->len) || rp_put(b, p->bytes, p->len))
        goto nomem;
      return 0;
    case 'H': {
      par_wire_handle h;
      size_t n;
      memset(&h, 0, sizeof h);
      if (!export_fn || export_fn(ud, p->obj, &h, e) != 0) {
        if (!export_fn) snprintf(e->msg, sizeof e->msg, "cannot send %s", p->obj->type->name);
        b->len = mark;
        return -1;
      }
      n = strlen(h.type);
      if (rp_put_u8(b, 'H') || rp_put_u32(b, (uint32_t)n) || rp_put(b, h.type, n) ||
          rp_put_u64(b, h.id))
        goto nomem;
      return 0;
    }
    default:
      if (rp_put_u8(b, 'N')) goto nomem;
      return 0;
  }
nomem:
  b->len = mark;
  snprintf(e->msg, sizeof e->msg, "not enough memory");
  return -1;
}

int rp_get_part(rp_reader *r, par_wire_peer *peer, par_remote_part *p, rp_import_fn import_fn,
                void *ud, par_wire_err *e) {
  unsigned char tag;
  uint32_t n;
  memset(p, 0, sizeof *p);
  if (rp_get(r, &tag, 1)) goto bad;
  switch (tag) {
    case 'I': {
      uint64_t v;
      if (rp_get(r, &v, 8) || (v & 3u) == 0) goto bad;
      p->tag = 'M';
      p->m = (par_msg *)(uintptr_t)v;
      return 0;
    }
    case 'M': {
      par_msg *m = NULL;
      if (rp_get(r, &n, 4) || (size_t)(r->end - r->p) < n) goto bad;
      if (par_wire_rebuild(peer, r->p, n, &m, e) != PAR_WIRE_MESSAGE) {
        par_msg_free(m);
        if (!e->msg[0]) snprintf(e->msg, sizeof e->msg, "a malformed request or reply");
        return -1;
      }
      r->p += n;
      p->tag = 'M';
      p->m = m;
      return 0;
    }
    case 'B':
      if (rp_get(r, &n, 4) || (size_t)(r->end - r->p) < n) goto bad;
      p->bytes = malloc(n ? n : 1);
      if (!p->bytes) { snprintf(e->msg, sizeof e->msg, "not enough memory"); return -1; }
      memcpy(p->bytes, r->p, n);
      p->len = n;
      r->p += n;
      p->tag = 'B';
      return 0;
    case 'H': {
      char type[64];
      par_wire_handle h;
      if (rp_get(r, &n, 4) || n >= sizeof type || (size_t)(r->end - r->p) < n) goto bad;
      memcpy(type, r->p, n);
      type[n] = 0;
      r->p += n;
      h.type = type;
      h.owner = 0;
      if (rp_get(r, &h.id, 8)) goto bad;
      if (!import_fn || !(p->obj = import_fn(ud, &h, e))) {
        if (!import_fn) snprintf(e->msg, sizeof e->msg, "cannot receive %s", type);
        return -1;
      }
      p->tag = 'H';
      return 0;
    }
    case 'N':
      p->tag = 'N';
      return 0;
    default:
      break;
  }
bad:
  snprintf(e->msg, sizeof e->msg, "a malformed request or reply");
  return -1;
}

int rp_get_parts(rp_reader *r, par_wire_peer *peer, par_remote_part **out, size_t *nout,
                 rp_import_fn import_fn, void *ud, par_wire_err *e) {
  uint32_t n;
  size_t i;
  par_remote_part *parts;
  *out = NULL;
  *nout = 0;
  if (rp_get(r, &n, 4) || n > (size_t)(r->end - r->p)) {
    snprintf(e->msg, sizeof e->msg, "a malformed request or reply");
    return -1;
  }
  if (n == 0) return 0;
  parts = calloc(n, sizeof *parts);
  if (!parts) { snprintf(e->msg, sizeof e->msg, "not enough memory"); return -1; }
  for (i = 0; i < n; i++) {
    if (rp_get_part(r, peer, &parts[i], import_fn, ud, e) != 0) {
      par_remote_parts_free(parts, i);
      return -1;
    }
  }
  *out = parts;
  *nout = n;
  return 0;
}
