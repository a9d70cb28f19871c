#!/usr/bin/env python3
"""Python counterpart of the Lua submit-overhead benchmark.

20000 submits of f(x) = x + 1 to an executor of 2 workers, then a get (result()) of
each; prints the wall time per task in microseconds, for ThreadPoolExecutor,
ProcessPoolExecutor and multiprocessing.Pool (apply_async, then get). The pools are
started and warmed up before the clock.

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def f(x):
    return x + 1


def per_task_us(executor, n):
    # warm up: start every worker
    for fut in [executor.submit(f, i) for i in range(100)]:
        fut.result()
    start = time.perf_counter()
    futures = [executor.submit(f, i) for i in range(n)]
    for i, fut in enumerate(futures):
        assert fut.result() == i + 1
    return (time.perf_counter() - start) / n * 1e6


def per_task_pool_us(pool, n):
    for r in [pool.apply_async(f, (i,)) for i in range(100)]:
        r.get()
    start = time.perf_counter()
    results = [pool.apply_async(f, (i,)) for i in range(n)]
    for i, r in enumerate(results):
        assert r.get() == i + 1
    return (time.perf_counter() - start) / n * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    with ThreadPoolExecutor(max_workers=a.workers) as ex:
        print(f"submit_overhead_threadpool\t{per_task_us(ex, a.tasks):.2f}\tus/task", flush=True)
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        print(f"submit_overhead_processpool\t{per_task_us(ex, a.tasks):.2f}\tus/task", flush=True)
    with multiprocessing.Pool(processes=a.workers) as pool:
        print(f"submit_overhead_multiprocessing\t{per_task_pool_us(pool, a.tasks):.2f}\tus/task",
              flush=True)


if __name__ == "__main__":
    main()
