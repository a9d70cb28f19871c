#include "codec/dumpscan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Values of Lua 5.4's lopcodes.h / lobject.h that the dump format fixes. */
#define OP_LOADK 3
#define OP_LOADKX 4
#define OP_LOADNIL 8
#define OP_GETUPVAL 9
#define OP_GETTABUP 11
#define OP_GETTABLE 12
#define OP_GETFIELD 14
#define OP_CALL 68
#define OP_TAILCALL 69
#define OP_TFORCALL 76
#define OP_VARARG 80
#define OP_EXTRAARG 82
#define VNIL 0
#define VFALSE 1
#define VTRUE 17
#define VNUMINT 3
#define VNUMFLT 19
#define VSHRSTR 4
#define VLNGSTR 20
#define MAX_DEPTH 200

typedef struct reader {
  const unsigned char *p, *end;
  int bad;
} reader;

typedef struct str { const char *s; size_t len; } str;

static int byte_(reader *r) {
  if (r->p >= r->end) { r->bad = 1; return 0; }
  return *r->p++;
}

static void skip(reader *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) { r->bad = 1; r->p = r->end; }
  else r->p += n;
}

static size_t size_(reader *r) {
  size_t x = 0;
  int b;
  do {
    b = byte_(r);
    if (x > (SIZE_MAX >> 7)) { r->bad = 1; return 0; }
    x = (x << 7) | (size_t)(b & 0x7f);
  } while (!r->bad && (b & 0x80) == 0);
  return x;
}

static str string_(reader *r) {
  str s = { NULL, 0 };
  size_t n = size_(r);
  if (n == 0 || r->bad) return s;
  n--;
  s.s = (const char *)r->p;
  s.len = n;
  skip(r, n);
  return s;
}

static int add_name(dumpscan_names *out, str s) {
  int i;
  char *copy;
  for (i = 0; i < out->n; i++)
    if (strlen(out->names[i]) == s.len && memcmp(out->names[i], s.s, s.len) == 0) return 0;
  if (memchr(s.s, 0, s.len)) return 0;
  if (out->n == out->cap) {
    int cap = out->cap ? out->cap * 2 : 8;
    char **p = realloc(out->names, (size_t)cap * sizeof *p);
    if (!p) return -1;
    out->names = p;
    out->cap = cap;
  }
  copy = malloc(s.len + 1);
  if (!copy) return -1;
  memcpy(copy, s.s, s.len);
  copy[s.len] = 0;
  out->names[out->n++] = copy;
  return 0;
}

/*
 * The globals a function's code reads: a table read on the _ENV upvalue
 * with a constant key. A short-string key at a constant index up to 255 is
 * one GETTABUP; a long name (over 40 bytes) or a later constant loads _ENV
 * into a register (GETUPVAL) and the key into another (LOADK, LOADKX) for
 * a GETTABLE. What each register holds is followed through the code; any
 * other write to a register forgets it (at worst a name is missed, never
 * invented: the compiler emits those reads next to each other).
 */
static int scan_code(const unsigned char *code, size_t ncode, const str *k, size_t nk,
                     size_t env, dumpscan_names *out) {
  int kreg[256];           /* register -> constant index it holds, or -1 */
  unsigned char envreg[256];
  size_t i;
  int r, rc = 0;
  for (r = 0; r < 256; r++) { kreg[r] = -1; envreg[r] = 0; }
  for (i = 0; rc == 0 && i < ncode; i++) {
    uint32_t ins;
    unsigned op, a, b, c;
    size_t key = (size_t)-1;
    memcpy(&ins, code + 4 * i, 4);
    op = ins & 0x7f;
    a = (ins >> 7) & 0xff;
    b = (ins >> 16) & 0xff;
    c = (ins >> 24) & 0xff;
    switch (op) {
      case OP_GETTABUP: if (b == env) key = c; break;
      case OP_GETTABLE: if (envreg[b] && kreg[c] >= 0) key = (size_t)kreg[c]; break;
      case OP_GETFIELD: if (envreg[b]) key = c; break;
      default: break;
    }
    if (key < nk && k[key].s) rc = add_name(out, k[key]);
    switch (op) {
      case OP_GETUPVAL: kreg[a] = -1; envreg[a] = b == env; break;
      case OP_LOADK: kreg[a] = (int)(ins >> 15); envreg[a] = 0; break;
      case OP_LOADKX:
        kreg[a] = -1;
        envreg[a] = 0;
        if (i + 1 < ncode) {
          uint32_t x;
          memcpy(&x, code + 4 * (i + 1), 4);
          if ((x & 0x7f) == OP_EXTRAARG) kreg[a] = (int)(x >> 7);
        }
        break;
      case OP_LOADNIL: case OP_CALL: case OP_TAILCALL: case OP_TFORCALL: case OP_VARARG:
        for (r = (int)a; r < 256; r++) { kreg[r] = -1; envreg[r] = 0; }
        break;
      default: kreg[a] = -1; envreg[a] = 0; break;
    }
  }
  return rc;
}

/*
 * Scans one function and its nested ones. Which upvalue is _ENV: the one
 * named so; in a stripped dump (no names anywhere, and no source for the
 * main function), upvalue 0 of the main function (load() puts the globals
 * there) and, in a nested function, the upvalue that captures its
 * parent's _ENV upvalue.
 */
static int function_(reader *r, dumpscan_names *out, int depth, int stripped, size_t parent_env) {
  const unsigned char *code, *upvals;
  size_t ncode, nk, nup, i, n, env = (size_t)-1;
  str *k = NULL, source;
  int rc = 0;
  if (depth > MAX_DEPTH) return -1;
  source = string_(r);
  if (depth == 0) stripped = source.s == NULL;
  size_(r); size_(r);               /* linedefined, lastlinedefined */
  skip(r, 3);                       /* numparams, is_vararg, maxstacksize */
  ncode = size_(r);
  if (r->bad || ncode > (size_t)(r->end - r->p) / 4) return -1;
  code = r->p;
  skip(r, ncode * 4);
  nk = size_(r);
  if (r->bad || nk > (size_t)(r->end - r->p)) return -1;
  k = calloc(nk ? nk : 1, sizeof *k);
  if (!k) return -1;
  for (i = 0; i < nk && !r->bad; i++) {
    switch (byte_(r)) {
      case VNIL: case VFALSE: case VTRUE: break;
      case VNUMINT: case VNUMFLT: skip(r, 8); break;
      case VSHRSTR: case VLNGSTR: k[i] = string_(r); break;
      default: r->bad = 1;
    }
  }
  nup = size_(r);
  upvals = r->p;
  skip(r, nup * 3);
  if (stripped && !r->bad) {
    if (depth == 0) env = nup > 0 ? 0 : (size_t)-1;
    else
      for (i = 0; i < nup; i++)
        if (upvals[3 * i] == 0 && upvals[3 * i + 1] == parent_env) { env = i; break; }
  }
  n = size_(r);                     /* nested functions */
  for (i = 0; i < n && !r->bad && rc == 0; i++) rc = function_(r, out, depth + 1, stripped, env);
  n = size_(r); skip(r, n);         /* lineinfo */
  n = size_(r);                     /* abslineinfo */
  for (i = 0; i < n && !r->bad; i++) { size_(r); size_(r); }
  n = size_(r);                     /* locvars */
  for (i = 0; i < n && !r->bad; i++) { string_(r); size_(r); size_(r); }
  n = size_(r);                     /* upvalue names */
  for (i = 0; i < n && !r->bad; i++) {
    str s = string_(r);
    if (s.len == 4 && memcmp(s.s, "_ENV", 4) == 0) env = i;
  }
  if (r->bad) rc = -1;
  if (rc == 0 && env != (size_t)-1) rc = scan_code(code, ncode, k, nk, env, out);
  free(k);
  return rc;
}

/* Checks the header; returns the offset of the main function or 0. */
static size_t header_(const char *dump, size_t len) {
  static const unsigned char header[] = {
    0x1b, 'L', 'u', 'a', 0x54, 0, 0x19, 0x93, '\r', '\n', 0x1a, '\n', 4, 8, 8
  };
  int64_t luac_int;
  double luac_num;
  if (len < sizeof header + 17 || memcmp(dump, header, sizeof header) != 0) return 0;
  memcpy(&luac_int, dump + sizeof header, 8);
  memcpy(&luac_num, dump + sizeof header + 8, 8);
  if (luac_int != 0x5678 || luac_num != 370.5) return 0;
  return sizeof header + 17;     /* + the main closure's sizeupvalues byte */
}

int dumpscan_globals(const char *dump, size_t len, dumpscan_names *out) {
  reader r;
  size_t start = header_(dump, len);
  memset(out, 0, sizeof *out);
  if (!start) return -1;
  r.p = (const unsigned char *)dump + start;
  r.end = (const unsigned char *)dump + len;
  r.bad = 0;
  if (function_(&r, out, 0, 0, (size_t)-1) != 0) {
    dumpscan_free(out);
    return -1;
  }
  return 0;
}

void dumpscan_free(dumpscan_names *names) {
  int i;
  for (i = 0; i < names->n; i++) free(names->names[i]);
  free(names->names);
  memset(names, 0, sizeof *names);
}

int dumpscan_layout_of(const char *dump, size_t len, dumpscan_layout *out) {
  reader r;
  size_t start = header_(dump, len), n, i;
  const unsigned char *base = (const unsigned char *)dump;
  dumpscan_names ignored;
  memset(out, 0, sizeof *out);
  memset(&ignored, 0, sizeof ignored);
  if (!start) return -1;
  r.p = base + start;
  r.end = base + len;
  r.bad = 0;
  out->func_start = start;
  string_(&r);
  size_(&r); size_(&r);
  skip(&r, 3);
  n = size_(&r);
  if (r.bad || n > (size_t)(r.end - r.p) / 4) return -1;
  skip(&r, n * 4);
  n = size_(&r);
  for (i = 0; i < n && !r.bad; i++) {
    switch (byte_(&r)) {
      case VNIL: case VFALSE: case VTRUE: break;
      case VNUMINT: case VNUMFLT: skip(&r, 8); break;
      case VSHRSTR: case VLNGSTR: string_(&r); break;
      default: r.bad = 1;
    }
  }
  out->nupvals = size_(&r);
  out->upvals_at = (size_t)(r.p - base);
  skip(&r, out->nupvals * 3);
  out->nprotos = size_(&r);
  out->protos_at = (size_t)(r.p - base);
  for (i = 0; i < out->nprotos && !r.bad; i++)
    if (function_(&r, &ignored, 1, 0, (size_t)-1) != 0) r.bad = 1;
  dumpscan_free(&ignored);
  out->protos_end = (size_t)(r.p - base);
  return r.bad ? -1 : 0;
}
