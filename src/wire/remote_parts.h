/* Byte-level helpers of wire/remote.h's requests and replies (internal). */
#ifndef PAR_WIRE_REMOTE_PARTS_H
#define PAR_WIRE_REMOTE_PARTS_H

#include "wire/remote.h"

typedef struct rp_reader {
  const unsigned char *p, *end;
} rp_reader;

typedef int (*rp_export_fn)(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e);
typedef par_object *(*rp_import_fn)(void *ud, const par_wire_handle *h, par_wire_err *e);

int rp_put(par_buf *b, const void *p, size_t n);
int rp_put_u8(par_buf *b, unsigned v);
int rp_put_u32(par_buf *b, uint32_t v);
int rp_put_u64(par_buf *b, uint64_t v);
int rp_get(rp_reader *r, void *p, size_t n);
int rp_is_immediate(const par_msg *m);
/* 0, or -1 with e filled and b as it was. */
int rp_put_part(par_buf *b, par_wire_peer *peer, const par_remote_part *p,
                rp_export_fn export_fn, void *ud, par_wire_err *e);
int rp_get_part(rp_reader *r, par_wire_peer *peer, par_remote_part *p, rp_import_fn import_fn,
                void *ud, par_wire_err *e);
/* u32 count, then the parts: *out malloc'd (NULL when none). */
int rp_get_parts(rp_reader *r, par_wire_peer *peer, par_remote_part **out, size_t *nout,
                 rp_import_fn import_fn, void *ud, par_wire_err *e);

#endif
