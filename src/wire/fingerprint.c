/*
 * The fingerprint two ends compare before anything else: bytecode dumps
 * and the codec's native 8-byte numbers are only readable by a process
 * with the same Lua version, sizes and byte order (and the same format of
 * the codec and of this layer, which the versions stand for).
 */
#include "wire/wire.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "parallel.h"

static char fingerprint[160];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_fingerprint(void) {
  const uint16_t probe = 1;
  unsigned char first;
  memcpy(&first, &probe, 1);
  snprintf(fingerprint, sizeof fingerprint,
           "Lua %s.%s; int %zu, size_t %zu, integer %zu, number %zu; %s; parallel %s; wire %d",
           LUA_VERSION_MAJOR, LUA_VERSION_MINOR, sizeof(int), sizeof(size_t),
           sizeof(lua_Integer), sizeof(lua_Number), first ? "little-endian" : "big-endian",
           PARALLEL_VERSION, PAR_WIRE_VERSION);
}

const char *par_wire_fingerprint(void) {
  pthread_once(&once, make_fingerprint);
  return fingerprint;
}

int par_wire_hello(par_buf *out) {
  const char *f = par_wire_fingerprint();
  size_t n = strlen(f);
  if (!par_buf_reserve(out, 1 + n)) return -1;
  out->data[out->len] = PAR_WIRE_K_HELLO;
  memcpy(out->data + out->len + 1, f, n);
  out->len += 1 + n;
  return 0;
}

int par_wire_check_hello(const void *bytes, size_t len, par_wire_err *e) {
  const unsigned char *s = bytes;
  const char *mine = par_wire_fingerprint();
  char theirs[120];
  size_t i, n;
  if (len == 0 || s[0] != PAR_WIRE_K_HELLO) {
    if (e) snprintf(e->msg, sizeof e->msg,
                    "cannot talk to the other process: it sent no valid hello (this process has %s)", mine);
    return -1;
  }
  if (len - 1 == strlen(mine) && memcmp(s + 1, mine, len - 1) == 0) return 0;
  /* Their text as printable characters only, cut to fit. */
  n = len - 1 < sizeof theirs - 4 ? len - 1 : sizeof theirs - 4;
  for (i = 0; i < n; i++) theirs[i] = (s[1 + i] >= 32 && s[1 + i] < 127) ? (char)s[1 + i] : '?';
  if (n < len - 1) { memcpy(theirs + n, "...", 3); n += 3; }
  theirs[n] = 0;
  if (e) snprintf(e->msg, sizeof e->msg, "cannot talk to the other process: it has %s, this process has %s",
                  theirs, mine);
  return -1;
}
