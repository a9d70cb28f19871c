"""The same measurements as shared_bench.lua with Python's multiprocessing.

Prints lines "name<TAB>value<TAB>unit". Standalone: python3 bench/shared_bench.py
"""
import multiprocessing as mp
import time


def report(name, value, unit):
    print("%s\t%.6g\t%s" % (name, value, unit), flush=True)


def producer(q, go, n, kind):
    go.wait()
    for i in range(1, n + 1):
        q.put(i if kind == "int" else
              [i, i + 1, i + 2, i + 3, i + 4, "a", "b", "c", True, 1.5])
    q.put(None)


def queue_rate(n, kind):
    q, go = mp.Queue(1024), mp.Event()
    p = mp.Process(target=producer, args=(q, go, n, kind))
    p.start()
    t0 = time.perf_counter()
    go.set()
    count = 0
    while q.get() is not None:
        count += 1
    t = time.perf_counter() - t0
    p.join()
    assert count == n
    return n / t


def add_locked(v, start, n):
    start.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def counter_ms(n):
    v, start = mp.Value("q", 0), mp.Barrier(3)
    ps = [mp.Process(target=add_locked, args=(v, start, n)) for _ in range(2)]
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    t = time.perf_counter() - t0
    assert v.value == 2 * n
    return t * 1000


def per_access(fn, n, r):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e9 / (n * r)


ROUNDS = 3  # best of, as on the Lua side


def main():
    report("queue_int_items_per_s", max(queue_rate(200000, "int") for _ in range(ROUNDS)), "items/s")
    report("queue_table10_items_per_s", max(queue_rate(20000, "table") for _ in range(ROUNDS)), "items/s")
    report("counter_lock_get_set_2x200000", min(counter_ms(200000) for _ in range(ROUNDS)), "ms")
    n, r = 1000, 200
    a, t = mp.Array("d", n, lock=False), [0.0] * n

    def read(seq):
        def go():
            x = None
            for _ in range(r):
                for i in range(n):
                    x = seq[i]
            return x
        return go

    def write(seq):
        def go():
            for _ in range(r):
                for i in range(n):
                    seq[i] = 1.5
        return go

    report("array_read_ns", per_access(read(a), n, r), "ns")
    report("array_write_ns", per_access(write(a), n, r), "ns")
    report("table_read_ns", per_access(read(t), n, r), "ns")
    report("table_write_ns", per_access(write(t), n, r), "ns")


if __name__ == "__main__":
    main()
