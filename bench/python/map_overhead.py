#!/usr/bin/env python3
"""Python counterpart of the Lua map-overhead benchmark.

multiprocessing.Pool(2).map(f, range(200000)) with f(x) = x + 1 and the default
chunksize; prints the wall time per item in microseconds (the pool is started and
warmed up before the clock).

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import multiprocessing
import time


def f(x):
    return x + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
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


if __name__ == "__main__":
    main()
