/*
 * The message format: what encode.c writes and decode.c reads (doc/wire.md
 * says the same at more length, with examples).
 *
 * Numbers are native: lua_Integer and lua_Number as 8 bytes in the host's
 * byte order, and the u64/u32 counts of a table header likewise; a message
 * is read only where it was written (src/wire/ adds a fingerprint for
 * other processes).
 *
 * A size is a variable-length unsigned integer, most significant 7-bit
 * group first; the last byte of a size is the one with bit 0x80 set
 * (0 is 0x80, 127 is 0xff, 128 is 0x01 0x80).
 *
 * message  = kind:byte  count:size  value * count
 *   kind   = MSG_SCALARS (no table, function or userdata at the top level:
 *            the receiver needs no back-reference table nor globals)
 *          | MSG_STRUCTURED
 *
 * value    = tag:byte payload, per the table below.
 *
 * Back-references: tables and functions that are not "simple" (see T_FUNC)
 * are numbered 1, 2, 3... in the order their tag is met, on both sides, the
 * number taken before their contents; T_REF n is that value again (shared
 * sub-tables, cycles, recursive closures). Modules take no number.
 *
 * refs[]: the message carries an array of process-local references beside
 * its bytes (function prototypes, shared objects); T_FUNC and T_OBJ name a
 * slot of it. Each segment of a streamed message has its own refs[].
 *
 * Segments: a call with a long argument goes as several messages whose
 * bytes are one stream. The first also carries the queue the others
 * arrive on (par_msg.rest); a segment ends only between two items of a
 * top-level table's open run (or before its T_RUN_END), never inside a
 * value. The sender closes the queue after the last segment: closed
 * before the message's end, it means the sender failed.
 */
#ifndef PAR_CODEC_WIRE_H
#define PAR_CODEC_WIRE_H

#include <stdint.h>

/* The first byte of a message. */
enum { MSG_SCALARS = 0x51, MSG_STRUCTURED = 0x52 };

enum {
  T_NIL = 0,      /* nothing */
  T_FALSE = 1,    /* nothing */
  T_TRUE = 2,     /* nothing */
  T_INT = 3,      /* lua_Integer, 8 bytes native */
  T_FLOAT = 4,    /* lua_Number (double), 8 bytes native */
  T_STR = 5,      /* len:size, then len bytes */
  T_TABLE = 6,    /* narr:u64 nhash:u32 (native), then the run: narr values
                     for keys 1..narr; then key value pairs up to T_END
                     (no metatable) or T_META value (the metatable; the
                     table ends). nhash is a
                     size hint only. With NARR_OPEN set in narr, the run has
                     no count: values until T_RUN_END (the low bits are a
                     size hint), and a segment may end before any item of
                     it or before its T_RUN_END. */
  T_REF = 7,      /* n:size, 1-based: the n-th numbered table or function */
  T_MODULE = 8,   /* len:size name: package.loaded[name], else require(name) */
  T_CFUNC = 9,    /* len:size "module\0field": package.loaded[module][field],
                     a C function (module "_G": a global of the standard
                     library) */
  T_FUNC = 10,    /* slot:size (refs[slot] is the prototype), nup:size,
                     simple:byte (1: the closure needs no upvalues of its
                     own, 0: it does). Not simple: nup upvalues, each a
                     value, T_ENV or T_JOIN. Then the globals its code
                     reads: pairs of g:size (1-based index into the
                     prototype's list of global names) and value, ended by
                     a size 0. Numbered (T_REF) unless simple with no
                     globals. */
  T_OBJ = 11,     /* slot:size: refs[slot] is a shared object */
  T_ENV = 12,     /* an upvalue only: the receiver's globals table */
  T_JOIN = 13,    /* an upvalue only: f:size u:size, the same upvalue as
                     upvalue u of numbered function f (already decoded) */
  T_META = 14,    /* ends a table: a metatable value follows */
  T_END = 15,     /* ends a table: no metatable */
  T_RUN_END = 16  /* ends an open run (NARR_OPEN) */
};

/* In a table header's narr: the run has no count (a streamed argument, whose
 * header leaves before the run is over). */
#define NARR_OPEN ((uint64_t)1 << 63)

#endif
