#!/usr/bin/env python3
"""Python counterpart of the Lua map-overhead benchmark.

multiprocessing.Pool(2).map(f, range(200000)) with f(x) = x + 1 and the default
chunksize; prints the wall time per item in microseconds (the pool is started and
warmed up before the clock). Then ProcessPoolExecutor(2).map over --ppe-items items
(its default chunksize is 1: one task per item).

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor


def f(x):
    return x + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--ppe-items", type=int, default=20000)
    a = ap.parse_args()
    items = list(range(a.items))
    with multiprocessing.Pool(processes=a.workers) as pool:
        pool.map(f, range(100))  # warm up
        best = float("inf")
        for _ in range(a.repeat):
            start = time.perf_counter()
            results = pool.map(f, items)
            best = min(best, time.perf_counter() - start)
            assert results[-1] == a.items
    print(f"map_overhead_multiprocessing\t{best / a.items * 1e6:.3f}\tus/item", flush=True)
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        list(ex.map(f, range(100)))  # warm up
        start = time.perf_counter()
        results = list(ex.map(f, range(a.ppe_items)))
        assert results[-1] == a.ppe_items
        took = time.perf_counter() - start
    print(f"map_overhead_processpool\t{took / a.ppe_items * 1e6:.3f}\tus/item", flush=True)


if __name__ == "__main__":
    main()
