/*
 * The shared-memory arena: where arrays, values and synchronization
 * objects keep their state, so that worker processes can map it too.
 *
 * Memory. Chunks are memfd files (memfd_create + mmap MAP_SHARED) owned by
 * the process that made them. A small block comes from a size class in a
 * 1 MiB chunk shared with other blocks; a block above PAR_SHM_BIG gets a
 * chunk of its own, closed and unmapped when the block is freed. Blocks
 * are zero-filled, 64-byte aligned, and start with a par_shm_hdr that the
 * creator writes once, before the object can reach another process.
 *
 * Names. A block is named by a par_shm_loc (what a wire handle carries):
 *   owner = creator's pid | memfd number << 32
 *   id    = chunk serial << 40 | offset of the block in the chunk
 * Another process maps the chunk through /proc/<pid>/fd/<n> the first time
 * it sees one of its blocks, checks the chunk's header (magic, serial: a
 * reused descriptor number is told apart), and unmaps it when its last
 * imported object goes. An importer keeps its descriptor of the chunk
 * open while mapped: relaying a block to a third process, it names the
 * block through itself (par_shm_loc_relay), so that a block a worker made
 * stays reachable by the others once that worker has exited (the memory
 * lives as long as some process maps it).
 *
 * Registry. A process-local map from loc to the par_object that stands
 * for the block here (the creator's object, or an importer's wrapper), so
 * that a handle coming back finds the same object. Entries are weak: the
 * object unregisters itself in its destroy; a lookup takes a reference only
 * if the count is not zero already.
 *
 * Threads: any; one process-wide mutex guards the chunk lists, the free
 * lists and the registry (never held while waiting).
 * Futexes: par_futex_wait/wake (park.h) on 32-bit words in shared memory
 * (not the private kind: they work between processes).
 */
#ifndef PAR_SHM_H
#define PAR_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "object.h"

typedef struct par_shm_loc {
  uint64_t owner, id;
} par_shm_loc;

/* What a block starts with; 64 bytes, the state follows. */
typedef struct par_shm_hdr {
  uint32_t magic;         /* PAR_SHM_MAGIC */
  uint32_t kind;          /* the object's kind (shmobj.h) */
  uint64_t a, b, c;       /* its parameters */
  par_shm_loc ref;        /* a block it depends on (a view's base, a condition's lock) */
  uint64_t pad;
} par_shm_hdr;

#define PAR_SHM_MAGIC 0x50534831u   /* "PSH1" */
#define PAR_SHM_HDR 64

/* A zero-filled block of size bytes (header included) and its name; NULL
 * on out of memory (or out of descriptors). */
void *par_shm_alloc(size_t size, par_shm_loc *loc);
/* size: as given to par_shm_alloc. */
void par_shm_free(void *blk, size_t size, const par_shm_loc *loc);

/* This process's pid (cached when the library loads and after a fork: a
 * lock's acquire marks it with it). */
extern _Atomic pid_t par_shm_pid_cache;
static inline pid_t par_shm_self(void) {
  return atomic_load_explicit(&par_shm_pid_cache, memory_order_relaxed);
}
static inline pid_t par_shm_loc_pid(const par_shm_loc *l) { return (pid_t)(l->owner & 0xffffffffu); }

void par_shm_register(const par_shm_loc *loc, par_object *o);
void par_shm_unregister(const par_shm_loc *loc, par_object *o);
/* The object registered for loc, with one more reference; NULL if none. */
par_object *par_shm_lookup(const par_shm_loc *loc);

/* Maps the block another process made (its chunk on first sight): the
 * block's address and in *avail the bytes from it to its chunk's end;
 * NULL with err filled ("the object's process is gone", ...). */
void *par_shm_map(const par_shm_loc *loc, size_t *avail, char *err, size_t errsize);
/* Relaying a block another process made to process dest: when dest is
 * not its creator and this process has its chunk mapped, *out names the
 * block through this process's descriptor of the chunk (1), so that dest
 * can map it even once the creator is gone; else 0 (send loc as it is). */
int par_shm_loc_relay(const par_shm_loc *loc, pid_t dest, par_shm_loc *out);
/* A name par_shm_loc_relay made here, coming back: turned into the
 * block's own name again (other names are left as they are). */
void par_shm_loc_local(par_shm_loc *loc);
/* Drops one par_shm_map of loc's chunk. */
void par_shm_unmap(const par_shm_loc *loc);

/* The kinds of blocks (par_shm_hdr.kind). */
enum {
  PAR_SHM_K_ARRAY = 1, PAR_SHM_K_VALUE, PAR_SHM_K_VIEW, PAR_SHM_K_LOCK, PAR_SHM_K_RLOCK,
  PAR_SHM_K_SEMAPHORE, PAR_SHM_K_CONDITION, PAR_SHM_K_EVENT, PAR_SHM_K_BARRIER
};

/* An object's block, as the object holds it. */
typedef struct par_shm_block {
  par_shm_loc loc;
  par_shm_hdr *hdr;       /* the block; its state follows at PAR_SHM_HDR */
  size_t size;            /* own: as allocated; foreign: bytes to its chunk's end */
  int foreign;            /* mapped from another process (an import) */
} par_shm_block;

/* A new block of `state` bytes after the header, kind set, registered for
 * o: the state's address, or NULL on out of memory. */
void *par_shm_block_new(par_shm_block *b, size_t state, uint32_t kind, par_object *o);
/* Maps the block loc names (made elsewhere), checks that it is of `kind`
 * and holds `state` bytes, and registers o for it: the state's address,
 * or NULL with err filled. */
void *par_shm_block_import(par_shm_block *b, const par_shm_loc *loc, uint32_t kind, size_t state,
                           par_object *o, char *err, size_t errsize);
/* From the object's destroy: unregisters it, frees or unmaps the block. */
void par_shm_block_drop(par_shm_block *b, par_object *o);

/* How many objects standing for other processes' blocks were dropped so
 * far (a cheap test of whether any import went since the last look). */
unsigned long par_shm_drops(void);

/* Counters for tests: chunks owned, chunks mapped from other processes. */
void par_shm_counts(size_t *own, size_t *mapped);

#endif
