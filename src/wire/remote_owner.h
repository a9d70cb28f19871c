/*
 * The owner's side of wire/remote.h, internal to its three files:
 * remote_exports.c (the export table: which objects, which ids),
 * remote_methods.c (a request served on its core object, and undone when
 * its requester is gone) and remote_serve.c (the owner: requests in,
 * helper threads for the ones that block, replies out). See remote.h for
 * the threads and what `mu` guards. Objects are released, messages freed
 * and requests undone only after `mu` is let go: freeing may run
 * destructors.
 */
#ifndef PAR_WIRE_REMOTE_OWNER_H
#define PAR_WIRE_REMOTE_OWNER_H

#include <pthread.h>
#include <stdatomic.h>
#include "core/dict.h"
#include "wire/remote_parts.h"

typedef struct rreq rreq;
struct rreq {
  rreq *next;                 /* in the pending list or the outbox */
  par_remote_owner *own;
  uint32_t rid;
  int method, kind;
  par_object *obj;            /* one reference */
  double deadline;            /* absolute; INFINITY: none */
  int64_t arg;
  par_remote_part *in;
  size_t nin;
  size_t done;                /* push_many: items that went in */
  /* outcome */
  int status;
  int64_t value;
  par_remote_part *out;
  size_t nout, cap;
  char err[256];
  _Atomic int cancelled;      /* the requester asked to stop */
  int gone;                   /* the requester is gone: undo (mu) */
};

typedef struct held {
  uint64_t token;
  par_dict *d;                /* one reference */
  par_dict_entry *e;
} held;

struct par_remote_owner {
  pthread_mutex_t mu;
  pthread_cond_t idle;
  uint64_t self;
  par_object **exp;           /* exported objects, id = index + 1; NULL: released */
  uint64_t *sent;             /* how many handles of each went out, less those released */
  size_t nexp, capexp;
  rreq *pending;              /* with helpers */
  rreq *outbox, *outbox_tail; /* finished, reply not yet flattened */
  int helpers;
  int wake[2];                /* the outbox is not empty: [0] readable */
  int woken;                  /* a byte is in wake[] (mu): one write per
                                 burst, and no read() when none is there */
  held *held;                 /* dict keys being updated by the other end */
  size_t nheld, capheld;
  uint64_t next_token;
  size_t max_reply;           /* par_remote_owner_limit; 0: none */
};

/* remote_exports.c */
/* o's kind (PR_KIND_*), or -1 for an object that does not travel this way. */
int ro_kind_of(const par_object *o);
/* Exports o for a reply's 'H' part: 0, or -1 with e filled. */
int ro_export_part(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e);
/* Counts exported objects (par_remote_exports_live): +1 or -1 each. */
void ro_count_exports(long n);

/* remote_methods.c */
/* One try of r, waiting until deadline at most (0: not at all): a PAR_*
 * status, or PR_FAILED with r->err filled. */
int ro_attempt(rreq *r, double deadline);
/* PR_CREATE: a new object of kind r->arg made here, its handle(s) in r->out. */
int ro_create(rreq *r);
/* Whether method may wait (then a helper thread retries it). */
int ro_may_block(int method);
/* PR_FAILED, with text as r's error. */
int ro_fail(rreq *r, const char *text);
void ro_request_free(rreq *r);
/* The requester is gone: what r took is given back, r freed. Without mu. */
void ro_undo(rreq *r);
/* What r took is given back (r stays). Without mu. */
void ro_give_back(rreq *r);

#endif
