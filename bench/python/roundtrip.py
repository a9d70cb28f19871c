#!/usr/bin/env python3
"""Python counterpart of the Lua round-trip benchmark.

One submit -> result() round trip of f(x) = x + 1 at a time (nothing else in flight),
repeated; prints the median latency in microseconds for ThreadPoolExecutor,
ProcessPoolExecutor and multiprocessing.Pool (apply_async().get()) (2 workers, warmed
up before the clock).

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def f(x):
    return x + 1


def roundtrip_us(executor, n):
    for i in range(100):  # warm up
        executor.submit(f, i).result()
    samples = []
    for i in range(n):
        start = time.perf_counter()
        r = executor.submit(f, i).result()
        samples.append(time.perf_counter() - start)
        assert r == i + 1
    return statistics.median(samples) * 1e6


def roundtrip_pool_us(pool, n):
    for i in range(100):  # warm up
        pool.apply_async(f, (i,)).get()
    samples = []
    for i in range(n):
        start = time.perf_counter()
        r = pool.apply_async(f, (i,)).get()
        samples.append(time.perf_counter() - start)
        assert r == i + 1
    return statistics.median(samples) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads-only", action="store_true", help="skip ProcessPoolExecutor")
    a = ap.parse_args()
    with ThreadPoolExecutor(max_workers=a.workers) as ex:
        print(f"roundtrip_threadpool\t{roundtrip_us(ex, a.repeat):.2f}\tus", flush=True)
    if a.threads_only:
        return
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        print(f"roundtrip_processpool\t{roundtrip_us(ex, a.repeat):.2f}\tus", flush=True)
    with multiprocessing.Pool(processes=a.workers) as pool:
        print(f"roundtrip_multiprocessing\t{roundtrip_pool_us(pool, a.repeat):.2f}\tus", flush=True)


if __name__ == "__main__":
    main()
