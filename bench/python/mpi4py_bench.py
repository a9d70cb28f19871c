# make bench-mpi: the same work as bench/mpi_bench.lua with mpi4py.futures,
# under `mpirun -n N python3 -m mpi4py.futures bench/python/mpi4py_bench.py`
# (rank 0 runs this; the others are its workers).
import os
import time
from mpi4py.futures import MPIPoolExecutor


def inc(x):
    return x + 1


def length(v):
    return len(v)


def best_of(n, fn):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def out(name, v, unit):
    print(f"{name}\t{v:.3f}\t{unit}", flush=True)


if __name__ == "__main__":
    with MPIPoolExecutor() as ex:
        list(ex.map(inc, range(4)))
        n = int(os.environ.get("MPI_BENCH_TASKS", "20000")) // 4
        t = best_of(3, lambda: [f.result() for f in [ex.submit(inc, i) for i in range(n)]])
        out("submit_all", t / n * 1e6, "us/task")
        r = 500
        t = best_of(3, lambda: [ex.submit(inc, i).result() for i in range(r)])
        out("roundtrip", t / r * 1e6, "us")
        m = 200000
        items = list(range(m))
        chunk = max(1, m // (4 * int(os.environ.get("MPI_BENCH_WORKERS", "2"))))
        t = best_of(3, lambda: list(ex.map(inc, items, chunksize=chunk)))
        out("map", t / m * 1e6, "us/item")
        big = [i * 0.5 for i in range(1000000)]
        t = best_of(3, lambda: ex.submit(length, big).result())
        out("big_table", t * 1e3, "ms")
