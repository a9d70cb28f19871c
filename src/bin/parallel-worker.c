/* parallel-worker: the program a process pool starts for each worker
 * (include/parallel.h, parallel_worker_main). Not meant to be run by hand. */
#include <stdio.h>

#include "parallel.h"

int main(int argc, char **argv) {
  int status = parallel_worker_main(argc, argv);
  if (status < 0) {
    fprintf(stderr, "%s: a worker of parallel's process pools; not meant to be run by hand\n",
            argv[0]);
    return 2;
  }
  return status;
}
