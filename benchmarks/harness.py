"""Running calls under a clock: one thread or many released together by a barrier."""

from __future__ import annotations

import statistics
import threading
from array import array
from collections.abc import Callable, Iterable
from time import perf_counter_ns
from typing import Any, TypeVar

__all__ = ["calibrate_timer", "run_threads", "timed_calls", "untimed_calls"]

T = TypeVar("T")
A = TypeVar("A")


def timed_calls(fn: Callable[[A], object], args: Iterable[A]) -> array[int]:
    """Call ``fn`` on each argument; the nanoseconds each call took.

    One clock read per call: the end of one call is the start of the next, so the
    loop's own cost is in every figure; ``calibrate_timer`` measures it.
    """
    latencies: array[int] = array("q")
    append = latencies.append
    now = perf_counter_ns
    start = now()
    for arg in args:
        fn(arg)
        end = now()
        append(end - start)
        start = end
    return latencies


def untimed_calls(fn: Callable[[A], object], args: Iterable[A]) -> None:
    """Call ``fn`` on each argument with no clock in the loop, for throughput."""
    for arg in args:
        fn(arg)


def calibrate_timer(calls: int = 100_000) -> int:
    """Nanoseconds ``timed_calls`` adds to each call: its loop and clock around a no-op."""
    noop = abs  # a C function: the cheapest call there is
    args = range(calls)
    return min(int(statistics.median(timed_calls(noop, args))) for _ in range(3))


def run_threads(n: int, work: Callable[[int], T]) -> tuple[int, list[T]]:
    """``work(i)`` for i in 0..n-1 on n threads released together by a barrier.

    Returns the wall time in nanoseconds from the first thread's start to the last
    one's end, and each thread's result. One thread runs in the caller's thread.
    """
    if n == 1:
        start = perf_counter_ns()
        result = work(0)
        return perf_counter_ns() - start, [result]
    barrier = threading.Barrier(n)
    starts = [0] * n
    ends = [0] * n
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def main(i: int) -> None:
        try:
            barrier.wait()
            starts[i] = perf_counter_ns()
            results[i] = work(i)
            ends[i] = perf_counter_ns()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()  # the others must not wait for a thread that died

    threads = [threading.Thread(target=main, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return max(ends) - min(starts), results
