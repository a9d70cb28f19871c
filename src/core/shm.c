/* The shared-memory arena: see shm.h. */
#define _GNU_SOURCE
#include "shm.h"
#include "clock.h"
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK ((size_t)1 << 20)
#define CHUNK_HDR 64
#define MIN_CLASS 6                  /* 64 bytes */
#define MAX_CLASS 18                 /* 256 KiB: above, a chunk of its own */
#define NCLASS (MAX_CLASS - MIN_CLASS + 1)
#define CHUNK_MAGIC 0x5041524348554e4bull   /* "PARCHUNK" */
#define OFFSET_BITS 40

typedef struct chunk_hdr {
  uint64_t magic, serial, size;
} chunk_hdr;

typedef struct chunk {
  struct chunk *next;
  unsigned char *base;
  size_t size;
  pid_t pid;           /* creator */
  int fd;              /* own chunks: open for other processes; foreign: its number there */
  int here;            /* foreign: our descriptor of it, kept open so that other processes
                          can map it through us once its creator is gone (-1: none) */
  uint64_t serial;
  long maps;           /* foreign chunks: par_shm_map calls not yet unmapped */
  int big;             /* own chunk of one block */
} chunk;

/* A freed class block (in the block's own memory: nobody else uses it). */
typedef struct free_blk {
  struct free_blk *next;
  par_shm_loc loc;
} free_blk;

typedef struct entry {
  struct entry *next;
  par_shm_loc loc;
  par_object *obj;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static chunk *own, *foreign;
static chunk *current;               /* the class chunk blocks are cut from */
static size_t used;                  /* bytes of current cut so far */
static free_blk *freelist[NCLASS];
static uint64_t next_serial = 1;
static entry **table;
static size_t nbuckets, nentries;
_Atomic pid_t par_shm_pid_cache;
static _Atomic unsigned long drops;  /* wrappers of other processes' blocks gone */

/* A fork's child (without exec) is another process: its own pid. */
static void reset_pid(void) { atomic_store(&par_shm_pid_cache, getpid()); }

__attribute__((constructor)) static void init_pid(void) {
  reset_pid();
  pthread_atfork(NULL, NULL, reset_pid);
}

/* When the library is unloaded (lua_close of the last state that loaded
 * it), nothing can use the arena any more: give its chunks and tables
 * back, unless an object is still registered (leaked by a host). */
__attribute__((destructor)) static void fini(void) {
  pthread_mutex_lock(&mu);
  if (nentries == 0) {
    while (own) {
      chunk *c = own;
      own = c->next;
      munmap(c->base, c->size);
      close(c->fd);
      free(c);
    }
    current = NULL;
    memset(freelist, 0, sizeof freelist);
    free(table);
    table = NULL;
    nbuckets = 0;
  }
  pthread_mutex_unlock(&mu);
}

/* ------------------------------------------------------------- chunks */

static int new_memfd(void) {
  int fd = memfd_create("parallel-shm", MFD_CLOEXEC);
  if (fd < 0 && errno == EMFILE) {
    /* Every big array holds a descriptor: use the hard limit before failing. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      fd = memfd_create("parallel-shm", MFD_CLOEXEC);
    }
  }
  return fd;
}

/* A new own chunk of size bytes (mu held). */
static chunk *chunk_new(size_t size, int big) {
  chunk *c = malloc(sizeof *c);
  chunk_hdr *h;
  if (!c) return NULL;
  c->fd = new_memfd();
  if (c->fd < 0) { free(c); return NULL; }
  if (ftruncate(c->fd, (off_t)size) != 0) goto fail;
  c->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, c->fd, 0);
  if (c->base == MAP_FAILED) goto fail;
  c->size = size;
  c->pid = par_shm_self();
  c->serial = next_serial++;
  c->maps = 0;
  c->big = big;
  c->here = -1;
  h = (chunk_hdr *)c->base;
  h->magic = CHUNK_MAGIC;
  h->serial = c->serial;
  h->size = size;
  c->next = own;
  own = c;
  return c;
fail:
  close(c->fd);
  free(c);
  return NULL;
}

static void chunk_unlink(chunk **list, chunk *c) {
  chunk **pp;
  for (pp = list; *pp; pp = &(*pp)->next)
    if (*pp == c) { *pp = c->next; return; }
}

static void make_loc(par_shm_loc *loc, const chunk *c, size_t offset) {
  loc->owner = (uint64_t)(uint32_t)c->pid | (uint64_t)(uint32_t)c->fd << 32;
  loc->id = c->serial << OFFSET_BITS | (uint64_t)offset;
}

static int loc_fd(const par_shm_loc *l) { return (int)(l->owner >> 32); }
static uint64_t loc_serial(const par_shm_loc *l) { return l->id >> OFFSET_BITS; }
static size_t loc_offset(const par_shm_loc *l) { return (size_t)(l->id & (((uint64_t)1 << OFFSET_BITS) - 1)); }

static int class_of(size_t size) {
  int k = MIN_CLASS;
  while (((size_t)1 << k) < size) k++;
  return k;
}

void *par_shm_alloc(size_t size, par_shm_loc *loc) {
  void *blk = NULL;
  int k = class_of(size ? size : 1);
  pthread_mutex_lock(&mu);
  if (k > MAX_CLASS) {
    size_t total = CHUNK_HDR + size;
    chunk *c;
    if (size > SIZE_MAX - CHUNK_HDR - 4095) goto out;
    total = (total + 4095) & ~(size_t)4095;
    c = chunk_new(total, 1);
    if (c) {
      blk = c->base + CHUNK_HDR;    /* fresh pages are zero */
      make_loc(loc, c, CHUNK_HDR);
    }
  } else if (freelist[k - MIN_CLASS]) {
    free_blk *f = freelist[k - MIN_CLASS];
    freelist[k - MIN_CLASS] = f->next;
    *loc = f->loc;
    blk = f;
    memset(blk, 0, (size_t)1 << k);
  } else {
    size_t bsize = (size_t)1 << k, at;
    if (!current || ((used + bsize - 1) & ~(bsize - 1)) + bsize > current->size) {
      chunk *c = chunk_new(CHUNK, 0);
      if (!c) goto out;
      current = c;
      used = CHUNK_HDR;
    }
    at = (used + bsize - 1) & ~(bsize - 1);  /* aligned to its size: never across a line it shares */
    used = at + bsize;
    blk = current->base + at;               /* never used: zero */
    make_loc(loc, current, at);
  }
out:
  pthread_mutex_unlock(&mu);
  return blk;
}

static chunk *own_chunk(const par_shm_loc *loc) {
  chunk *c;
  for (c = own; c; c = c->next)
    if (c->serial == loc_serial(loc)) return c;
  return NULL;
}

void par_shm_free(void *blk, size_t size, const par_shm_loc *loc) {
  chunk *c;
  if (!blk) return;
  pthread_mutex_lock(&mu);
  c = own_chunk(loc);
  if (c && c->big) {
    chunk_unlink(&own, c);
    munmap(c->base, c->size);
    close(c->fd);
    free(c);
  } else if (c) {
    int k = class_of(size ? size : 1);
    free_blk *f = (free_blk *)blk;
    f->loc = *loc;
    f->next = freelist[k - MIN_CLASS];
    freelist[k - MIN_CLASS] = f;
  }
  pthread_mutex_unlock(&mu);
}

/* ----------------------------------------------------------- registry */

static size_t hash(const par_shm_loc *l) {
  uint64_t x = l->owner * 0x9E3779B97F4A7C15ull ^ l->id * 0xC2B2AE3D27D4EB4Full;
  return (size_t)(x ^ x >> 29);
}

static int same(const par_shm_loc *a, const par_shm_loc *b) {
  return a->owner == b->owner && a->id == b->id;
}

static void grow(void) {
  size_t n = nbuckets ? nbuckets * 2 : 256, i;
  entry **t = calloc(n, sizeof *t);
  if (!t) return;
  for (i = 0; i < nbuckets; i++) {
    entry *e = table[i];
    while (e) {
      entry *next = e->next;
      size_t b = hash(&e->loc) & (n - 1);
      e->next = t[b];
      t[b] = e;
      e = next;
    }
  }
  free(table);
  table = t;
  nbuckets = n;
}

void par_shm_register(const par_shm_loc *loc, par_object *o) {
  entry *e = malloc(sizeof *e);
  pthread_mutex_lock(&mu);
  if (nentries >= nbuckets) grow();
  if (e && nbuckets) {
    size_t b = hash(loc) & (nbuckets - 1);
    e->loc = *loc;
    e->obj = o;
    e->next = table[b];
    table[b] = e;
    nentries++;
    e = NULL;
  }
  pthread_mutex_unlock(&mu);
  free(e);   /* out of memory: the object cannot be found again, nothing worse */
}

void par_shm_unregister(const par_shm_loc *loc, par_object *o) {
  entry **pp, *gone = NULL;
  pthread_mutex_lock(&mu);
  if (nbuckets)
    for (pp = &table[hash(loc) & (nbuckets - 1)]; *pp; pp = &(*pp)->next)
      if ((*pp)->obj == o && same(&(*pp)->loc, loc)) {
        gone = *pp;
        *pp = gone->next;
        nentries--;
        break;
      }
  pthread_mutex_unlock(&mu);
  free(gone);
}

par_object *par_shm_lookup(const par_shm_loc *loc) {
  par_object *found = NULL;
  entry *e;
  pthread_mutex_lock(&mu);
  if (nbuckets)
    for (e = table[hash(loc) & (nbuckets - 1)]; e; e = e->next) {
      long n;
      if (!same(&e->loc, loc)) continue;
      /* Retain unless its last reference is gone (its destroy is coming). */
      n = atomic_load(&e->obj->refs);
      while (n > 0 && !atomic_compare_exchange_weak(&e->obj->refs, &n, n + 1)) {}
      if (n > 0) { found = e->obj; break; }
    }
  pthread_mutex_unlock(&mu);
  return found;
}

/* ------------------------------------------------- other processes' */

void *par_shm_map(const par_shm_loc *loc, size_t *avail, char *err, size_t errsize) {
  pid_t pid = par_shm_loc_pid(loc);
  int fd = loc_fd(loc);
  uint64_t serial = loc_serial(loc);
  size_t off = loc_offset(loc);
  chunk *c;
  void *blk = NULL;
  if (pid == par_shm_self()) {
    /* ours, and not registered: its object is gone */
    snprintf(err, errsize, "the shared object is gone (its last reference was dropped)");
    return NULL;
  }
  pthread_mutex_lock(&mu);
  for (c = foreign; c; c = c->next)
    if (c->pid == pid && c->fd == fd && c->serial == serial) break;
  if (!c) {
    char path[64];
    struct stat st;
    int f;
    const chunk_hdr *h;
    snprintf(path, sizeof path, "/proc/%ld/fd/%d", (long)pid, fd);
    f = open(path, O_RDWR | O_CLOEXEC);
    if (f < 0) {
      snprintf(err, errsize, "cannot map the shared memory of process %ld (%s: %s)", (long)pid,
               path, strerror(errno));
      goto out;
    }
    if (fstat(f, &st) != 0 || st.st_size < (off_t)CHUNK_HDR) {
      close(f);
      snprintf(err, errsize, "the shared object's memory is gone (process %ld)", (long)pid);
      goto out;
    }
    c = malloc(sizeof *c);
    if (!c) { close(f); snprintf(err, errsize, "not enough memory"); goto out; }
    c->size = (size_t)st.st_size;
    c->base = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, f, 0);
    c->here = f;
    if (c->base == MAP_FAILED) {
      snprintf(err, errsize, "cannot map the shared memory of process %ld (%s)", (long)pid,
               strerror(errno));
      close(f);
      free(c);
      c = NULL;
      goto out;
    }
    h = (const chunk_hdr *)c->base;
    if (h->magic != CHUNK_MAGIC || h->serial != serial || h->size != c->size) {
      /* the descriptor number was reused: that chunk is gone */
      munmap(c->base, c->size);
      close(c->here);
      free(c);
      c = NULL;
      snprintf(err, errsize, "the shared object's memory is gone (process %ld)", (long)pid);
      goto out;
    }
    c->pid = pid;
    c->fd = fd;
    c->serial = serial;
    c->maps = 0;
    c->next = foreign;
    foreign = c;
  }
  if (off < CHUNK_HDR || off % 64 || off + PAR_SHM_HDR > c->size) {
    snprintf(err, errsize, "a malformed shared object handle");
    if (c->maps == 0) { chunk_unlink(&foreign, c); munmap(c->base, c->size); close(c->here); free(c); }
    goto out;
  }
  c->maps++;
  blk = c->base + off;
  *avail = c->size - off;
out:
  pthread_mutex_unlock(&mu);
  return blk;
}

void par_shm_unmap(const par_shm_loc *loc) {
  chunk *c;
  pthread_mutex_lock(&mu);
  for (c = foreign; c; c = c->next)
    if (c->pid == par_shm_loc_pid(loc) && c->fd == loc_fd(loc) && c->serial == loc_serial(loc)) {
      if (--c->maps == 0) {
        chunk_unlink(&foreign, c);
        munmap(c->base, c->size);
        close(c->here);
        free(c);
      }
      break;
    }
  pthread_mutex_unlock(&mu);
}

int par_shm_loc_relay(const par_shm_loc *loc, pid_t dest, par_shm_loc *out) {
  pid_t pid = par_shm_loc_pid(loc);
  chunk *c;
  int r = 0;
  if (pid == par_shm_self() || pid == dest) return 0;
  pthread_mutex_lock(&mu);
  for (c = foreign; c; c = c->next)
    if (c->pid == pid && c->fd == loc_fd(loc) && c->serial == loc_serial(loc)) break;
  if (c && c->here >= 0) {
    out->owner = (uint64_t)(uint32_t)par_shm_self() | (uint64_t)(uint32_t)c->here << 32;
    out->id = loc->id;
    r = 1;
  }
  pthread_mutex_unlock(&mu);
  return r;
}

void par_shm_loc_local(par_shm_loc *loc) {
  chunk *c;
  if (par_shm_loc_pid(loc) != par_shm_self()) return;
  pthread_mutex_lock(&mu);
  for (c = foreign; c; c = c->next)
    if (c->here == loc_fd(loc) && c->serial == loc_serial(loc)) {
      make_loc(loc, c, loc_offset(loc));
      break;
    }
  pthread_mutex_unlock(&mu);
}

unsigned long par_shm_drops(void) { return atomic_load_explicit(&drops, memory_order_relaxed); }

void par_shm_counts(size_t *nown, size_t *nmapped) {
  chunk *c;
  size_t a = 0, b = 0;
  pthread_mutex_lock(&mu);
  for (c = own; c; c = c->next) a++;
  for (c = foreign; c; c = c->next) b++;
  pthread_mutex_unlock(&mu);
  *nown = a;
  *nmapped = b;
}

/* ------------------------------------------------------------- blocks */

void *par_shm_block_new(par_shm_block *b, size_t state, uint32_t kind, par_object *o) {
  if (state > SIZE_MAX - PAR_SHM_HDR) return NULL;
  b->size = PAR_SHM_HDR + state;
  b->foreign = 0;
  b->hdr = (par_shm_hdr *)par_shm_alloc(b->size, &b->loc);
  if (!b->hdr) return NULL;
  b->hdr->magic = PAR_SHM_MAGIC;
  b->hdr->kind = kind;
  par_shm_register(&b->loc, o);
  return (unsigned char *)b->hdr + PAR_SHM_HDR;
}

void *par_shm_block_import(par_shm_block *b, const par_shm_loc *loc, uint32_t kind, size_t state,
                           par_object *o, char *err, size_t errsize) {
  size_t avail = 0;
  par_shm_hdr *h = (par_shm_hdr *)par_shm_map(loc, &avail, err, errsize);
  if (!h) return NULL;
  if (h->magic != PAR_SHM_MAGIC || h->kind != kind || state > avail - PAR_SHM_HDR) {
    par_shm_unmap(loc);
    snprintf(err, errsize, "a malformed shared object handle");
    return NULL;
  }
  b->loc = *loc;
  b->hdr = h;
  b->size = avail;
  b->foreign = 1;
  par_shm_register(loc, o);
  return (unsigned char *)h + PAR_SHM_HDR;
}

void par_shm_block_drop(par_shm_block *b, par_object *o) {
  if (!b->hdr) return;
  par_shm_unregister(&b->loc, o);
  if (b->foreign) {
    par_shm_unmap(&b->loc);
    atomic_fetch_add_explicit(&drops, 1, memory_order_relaxed);
  }
  else par_shm_free(b->hdr, b->size, &b->loc);
  b->hdr = NULL;
}
