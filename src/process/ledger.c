/* Making and mapping a worker's ledger (ledger.h). */
#define _GNU_SOURCE
#include "process/ledger.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

proc_ledger *proc_ledger_new(int *fd) {
  void *p;
  int d = memfd_create("parallel-ledger", MFD_CLOEXEC);
  if (d < 0) return NULL;
  if (ftruncate(d, sizeof(proc_ledger)) != 0) { close(d); return NULL; }
  p = mmap(NULL, sizeof(proc_ledger), PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
  if (p == MAP_FAILED) { close(d); return NULL; }
  *fd = d;
  return (proc_ledger *)p;
}

proc_ledger *proc_ledger_map(int fd) {
  void *p = mmap(NULL, sizeof(proc_ledger), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? NULL : (proc_ledger *)p;
}

void proc_ledger_unmap(proc_ledger *l) {
  if (l) munmap(l, sizeof *l);
}
