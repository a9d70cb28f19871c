/*
 * Shared dictionary: parallel.dict. Keys are byte strings (the binding's
 * canonical encoding of a Lua key), values are messages.
 *
 * Threads: any. d->mu guards the hash table, the insertion-order list and
 * every entry field. An update of one key marks its entry busy (with the
 * updating thread's id) while the binding runs Lua code without holding
 * mu; writers and other updaters of that key wait on d->cv until it is
 * released, readers do not wait and see the old value.
 * Ownership: the dict owns its entries and their messages. get and items
 * hand out copies (the caller frees them); set and end_update hand back the
 * replaced message so that the caller frees it after mu is released
 * (freeing releases objects, which may run destructors).
 */
#ifndef PAR_DICT_H
#define PAR_DICT_H

#include <stddef.h>
#include <stdint.h>
#include "object.h"
#include "msg.h"

typedef struct par_dict par_dict;
typedef struct par_dict_entry par_dict_entry;

extern const par_type par_dict_type;   /* "parallel.dict" */

typedef struct par_dict_item {
  unsigned char *key;
  size_t klen;
  par_msg *value;     /* NULL when only keys were asked for */
} par_dict_item;

par_dict *par_dict_new(void);
/* 1 and a copy of the value in *out if present, 0 if absent, -1 on out of
 * memory. */
int par_dict_get(par_dict *d, const void *key, size_t klen, par_msg **out);
/* Stores v (NULL deletes); *old receives the replaced message. Waits while
 * another thread updates the key: PAR_OK, PAR_TIMEOUT, PAR_ERROR (this
 * thread is updating the key), PAR_NOMEM. v is taken over only on PAR_OK. */
int par_dict_set(par_dict *d, const void *key, size_t klen, par_msg *v,
                 par_msg **old, double deadline);
/* Marks the key busy for this thread (waiting for another updater) and
 * gives a copy of its value (NULL if absent). Same statuses as set. */
int par_dict_begin_update(par_dict *d, const void *key, size_t klen,
                          par_dict_entry **e, par_msg **current, double deadline);
/* Ends an update: stores v if commit (NULL deletes) and returns the
 * replaced message in *old; always releases the key. */
void par_dict_end_update(par_dict *d, par_dict_entry *e, int commit, par_msg *v,
                         par_msg **old);
/* The same two on behalf of `who` instead of the calling thread (a
 * request from another process: wire/remote.c names its requester). who
 * must differ from every thread's id: make it odd. */
int par_dict_set_as(par_dict *d, const void *key, size_t klen, par_msg *v,
                    par_msg **old, double deadline, uintptr_t who);
int par_dict_begin_update_as(par_dict *d, const void *key, size_t klen, par_dict_entry **out,
                             par_msg **current, double deadline, uintptr_t who);
size_t par_dict_count(par_dict *d);
/* Snapshot in insertion order; values copied if with_values. NULL with
 * *n == 0 when empty; -1 on out of memory, else 0. */
int par_dict_items(par_dict *d, int with_values, par_dict_item **items, size_t *n);
void par_dict_items_free(par_dict_item *items, size_t n);

#endif
