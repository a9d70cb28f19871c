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


def spin(d):
    t0 = time.perf_counter()
    while time.perf_counter() < t0 + d:
        pass
    return time.perf_counter() - t0


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
        # tasks of d seconds of wall time: throughput per worker as a share of 1/d
        w = int(os.environ.get("MPI_BENCH_WORKERS", "2"))
        for name, d, k in (("100us", 100e-6, 4000), ("1ms", 1e-3, 600)):
            best, busy = float("inf"), 0.0
            for _ in range(2):
                t0 = time.perf_counter()
                ran = sum(f.result() for f in [ex.submit(spin, d) for _ in range(k)])
                el = time.perf_counter() - t0
                if el < best:
                    best, busy = el, ran / (el * w) * 100
            out("task_" + name, k / best / w * d * 100, "% of 1/d")
            out("busy_" + name, busy, "%")
