#!/usr/bin/env python3
"""Python counterpart of the Lua primes benchmark: the tutorial's example as is.

is_prime over 1 .. limit (default 100000): sequentially, and with one
ProcessPoolExecutor.submit per number collected with as_completed (the tutorial's
find_primes_parallel, executor start-up included as in the tutorial); prints seconds
and the number of primes found.

Output: name<TAB>value<TAB>unit lines.
"""
import argparse
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def is_prime(n):
    """Check if a number is prime (computationally intensive)"""
    if n <= 1:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False
    for i in range(3, int(n**0.5) + 1, 2):
        if n % i == 0:
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=100000)
    ap.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    a = ap.parse_args()
    numbers = list(range(1, a.limit + 1))

    start = time.perf_counter()
    sequential = [n for n in numbers if is_prime(n)]
    print(f"primes_sequential\t{time.perf_counter() - start:.3f}\ts", flush=True)

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as executor:
        future_to_num = {executor.submit(is_prime, n): n for n in numbers}
        primes = []
        for future in as_completed(future_to_num):
            if future.result():
                primes.append(future_to_num[future])
    print(f"primes_as_completed\t{time.perf_counter() - start:.3f}\ts", flush=True)

    assert sorted(primes) == sequential
    print(f"primes_count\t{len(sequential)}\tprimes", flush=True)


if __name__ == "__main__":
    main()
