#!/usr/bin/env python3
"""Python counterpart of the Lua big-table benchmark.

Sending a list of 1,000,000 numbers (floats) to a worker process: the time of
ProcessPoolExecutor(1).submit(len, data).result() (pickling, the pipe, unpickling;
the result is one integer), median of several runs, in milliseconds.

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    data = [i * 0.5 for i in range(a.size)]
    with ProcessPoolExecutor(max_workers=1) as ex:
        ex.submit(len, [0]).result()  # start the worker
        samples = []
        for _ in range(a.repeat):
            start = time.perf_counter()
            n = ex.submit(len, data).result()
            samples.append(time.perf_counter() - start)
            assert n == a.size
    print(f"big_table_send\t{statistics.median(samples) * 1e3:.2f}\tms", flush=True)


if __name__ == "__main__":
    main()
