/*
 * Reads a Lua 5.4 binary chunk (the format of ldump.c) and lists the
 * global names its code reads: constant keys of GETTABUP on the upvalue
 * named _ENV, in the function and all nested functions. Pure C: no Lua
 * state is touched, so the codec can run it on any dump.
 */
#ifndef PAR_DUMPSCAN_H
#define PAR_DUMPSCAN_H

#include <stddef.h>

typedef struct dumpscan_names {
  char **names;     /* malloc'd, NUL-terminated, unique */
  int n, cap;
} dumpscan_names;

/* 0 on success; -1 when the header is not the format parsed here or the
 * chunk is malformed (the caller then captures nothing). */
int dumpscan_globals(const char *dump, size_t len, dumpscan_names *out);
void dumpscan_free(dumpscan_names *names);

/* Where the parts of a chunk's main function lie, as byte offsets. */
typedef struct dumpscan_layout {
  size_t func_start;      /* the main function (after header + sizeupvalues) */
  size_t upvals_at;       /* its upvalue descriptors: nupvals x (instack, idx, kind) */
  size_t nupvals;
  size_t protos_at;       /* its first nested function */
  size_t protos_end;      /* just past its last nested function */
  size_t nprotos;
} dumpscan_layout;

int dumpscan_layout_of(const char *dump, size_t len, dumpscan_layout *out);

#endif
