#!/usr/bin/env python3
"""Python counterpart of the Lua CPU-bound benchmark.

The tutorial's cpu_intensive_task (sum of i ** 2 for i < n) over 40 items,
n_i = 1e6 + (i - 1) * 4e6 / 39 rounded (i = 1 .. 40, so n goes from 1,000,000 to
5,000,000: the same items as the Lua benchmark), on a multiprocessing.Pool of 2
processes; prints the wall time in seconds (pool started before the clock).
With --sequential, also the time of the plain loop (slow: about 40 x 3e6 iterations).

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import multiprocessing
import time


def cpu_intensive_task(n):
    """CPU intensive task for performance testing"""
    result = 0
    for i in range(n):
        result += i ** 2
    return result


def items(count=40, lo=1_000_000, hi=5_000_000):
    # "rounded" = half up, as math.floor(x + 0.5) in Lua (not Python's banker's round)
    return [int(lo + (i - 1) * (hi - lo) / (count - 1) + 0.5) for i in range(1, count + 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--sequential", action="store_true")
    a = ap.parse_args()
    numbers = items(a.count)
    with multiprocessing.Pool(processes=a.workers) as pool:
        pool.map(cpu_intensive_task, [1] * a.workers)  # warm up
        start = time.perf_counter()
        par = pool.map(cpu_intensive_task, numbers)
        t_par = time.perf_counter() - start
    print(f"cpu_bound\t{t_par:.3f}\ts", flush=True)
    if a.sequential:
        start = time.perf_counter()
        seq = [cpu_intensive_task(n) for n in numbers]
        t_seq = time.perf_counter() - start
        assert seq == par
        print(f"cpu_bound_sequential\t{t_seq:.3f}\ts", flush=True)


if __name__ == "__main__":
    main()
