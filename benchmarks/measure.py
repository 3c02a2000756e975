"""Measuring: calls under a clock, on a ``ThreadPoolExecutor`` or as coroutines; the
histories that find stale reads; the bytes a cached row costs.

A read is stale if it returned a version older than the newest write to that row
that had *completed* before the read *began*. Every write to a row comes from one
thread or coroutine (rows are owned), so a row's versions rise in the order its
writes complete, and "newest completed" is well defined without a global order.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import dataclasses
import gc
import statistics
import threading
import tracemalloc
from array import array
from collections.abc import Awaitable, Callable, Iterable, Sequence
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .config import Env

__all__ = [
    "History",
    "Memory",
    "Recorder",
    "calibrate_timer",
    "count_stale",
    "memory",
    "run_coroutines",
    "run_mixed",
    "run_mixed_async",
    "run_threads",
    "timed_calls",
    "timed_calls_async",
    "untimed_calls",
]

T = TypeVar("T")
A = TypeVar("A")


# --- clocks ---------------------------------------------------------------------------


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


async def timed_calls_async(fn: Callable[[A], Awaitable[object]], args: Iterable[A]) -> array[int]:
    """``timed_calls`` for a coroutine function: each call awaited in turn."""
    latencies: array[int] = array("q")
    append = latencies.append
    now = perf_counter_ns
    start = now()
    for arg in args:
        await fn(arg)
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


# --- threads and coroutines -----------------------------------------------------------


def run_threads(n: int, work: Callable[[int], T]) -> tuple[int, list[T]]:
    """``work(i)`` for i in 0..n-1 on a ``ThreadPoolExecutor(max_workers=n)``.

    The workers are released together by a barrier, so the executor's start-up is not
    timed. Returns the wall time in nanoseconds from the first worker's start to the
    last one's end, and each worker's result. One worker runs in the caller's thread.
    """
    if n == 1:
        start = perf_counter_ns()
        result = work(0)
        return perf_counter_ns() - start, [result]
    barrier = threading.Barrier(n)
    starts = [0] * n
    ends = [0] * n

    def main(i: int) -> T:
        barrier.wait()
        starts[i] = perf_counter_ns()
        result = work(i)
        ends[i] = perf_counter_ns()
        return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="bench") as pool:
        futures = [pool.submit(main, i) for i in range(n)]
    results = [future.result() for future in futures]  # the first error, if any
    return max(ends) - min(starts), results


async def run_coroutines(n: int, work: Callable[[int], Awaitable[T]]) -> tuple[int, list[T]]:
    """``work(i)`` for i in 0..n-1 as n coroutines on the running loop, started together.

    One coroutine is awaited in place (no Task); n of them are Tasks created before any
    runs, so they all start in the same turn of the loop. Returns the wall time in
    nanoseconds and each coroutine's result.
    """
    if n == 1:
        start = perf_counter_ns()
        result = await work(0)
        return perf_counter_ns() - start, [result]
    start = perf_counter_ns()
    results = await asyncio.gather(*(work(i) for i in range(n)))
    return perf_counter_ns() - start, list(results)


# --- histories and stale reads --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class History:
    """What one worker did: (key, start ns, version read), (key, end ns, version written)."""

    reads: list[tuple[int, int, int]]
    writes: list[tuple[int, int, int]]
    latencies_ns: array[int]


class Recorder:
    """Builds one worker's ``History``; its writes set versions above ``first_version``."""

    def __init__(self, first_version: int) -> None:
        self.history = History([], [], array("q"))
        self._version = first_version

    def next_version(self) -> int:
        self._version += 1
        return self._version

    def wrote(self, key: int, start: int, version: int) -> None:
        end = perf_counter_ns()  # the write has committed: it returned
        self.history.writes.append((key, end, version))
        self.history.latencies_ns.append(end - start)

    def read(self, key: int, start: int, row: Any) -> None:
        end = perf_counter_ns()
        self.history.reads.append((key, start, row.version))
        self.history.latencies_ns.append(end - start)


def run_mixed(
    read: Callable[[int], Any],
    write: Callable[[int, int], None],
    ops: Sequence[tuple[bool, int]],
    first_version: int,
) -> History:
    """Run ``ops`` (is_write, key) in order, recording each read and write."""
    recorder = Recorder(first_version)
    for is_write, key in ops:
        start = perf_counter_ns()
        if is_write:
            version = recorder.next_version()
            write(key, version)
            recorder.wrote(key, start, version)
        else:
            recorder.read(key, start, read(key))
    return recorder.history


async def run_mixed_async(
    read: Callable[[int], Awaitable[Any]],
    write: Callable[[int, int], Awaitable[None]],
    ops: Sequence[tuple[bool, int]],
    first_version: int,
) -> History:
    """``run_mixed`` for coroutine functions."""
    recorder = Recorder(first_version)
    for is_write, key in ops:
        start = perf_counter_ns()
        if is_write:
            version = recorder.next_version()
            await write(key, version)
            recorder.wrote(key, start, version)
        else:
            recorder.read(key, start, await read(key))
    return recorder.history


def count_stale(histories: Iterable[History]) -> int:
    """Reads that returned a version older than a write completed before they began."""
    histories = list(histories)
    done: dict[int, list[int]] = {}
    newest: dict[int, list[int]] = {}  # per key, the highest version written by each end time
    for key, end, version in sorted(w for h in histories for w in h.writes):
        ends, highs = done.setdefault(key, []), newest.setdefault(key, [])
        ends.append(end)
        highs.append(max(version, highs[-1]) if highs else version)
    stale = 0
    for history in histories:
        for key, start, seen in history.reads:
            written = done.get(key)
            if not written:
                continue
            before = bisect.bisect_left(written, start)  # writes that ended before the read began
            if before and seen < newest[key][before - 1]:
                stale += 1
    return stale


# --- bytes per cached row -------------------------------------------------------------

_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes per cached row: dal's cache beside a plain dict of tuples, by ``tracemalloc``.

    Both hold the same rows, read from the database while tracing, so the values
    themselves (strings, ints) count in both. dal's figure is everything its store
    keeps per row: the record, the entry and key tuples, the LRU order and the
    namespace's key set; the dict's is the dict, its tuples and their values: the
    least a cache of rows can hold.
    """

    rows: int
    dal_bytes_per_row: float
    dict_bytes_per_row: float

    @property
    def ratio(self) -> float:
        return self.dal_bytes_per_row / self.dict_bytes_per_row

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def memory(env: Env) -> Memory:
    """Fill each with the same ``cache_size`` rows and count what stays allocated."""
    import dal

    from .competitors import repository_class
    from .data import core_read_many

    keys = env.keys.ranked[: min(env.config.cache_size, env.config.rows)]
    chunks = [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
    load_many = core_read_many(env.engine)
    load_many(env.keys.warm)  # connect and compile before tracing

    def fill_dict() -> object:
        return {key: tuple(row) for chunk in chunks for key, row in load_many(chunk).items()}

    db = dal.Database(env.url, cache_size=len(keys))
    try:
        items = repository_class()(db)
        items.get_many(env.keys.warm)  # connect and compile before tracing
        db._store.clear()

        def fill_dal() -> object:
            for chunk in chunks:
                items.get_many(chunk)
            return db

        dal_bytes = _retained(fill_dal)
        cached = db.stats()["cache"]["currsize"]
    finally:
        db.close()
    if cached != len(keys):
        raise RuntimeError(f"dal cached {cached} of {len(keys)} rows: the figure would be wrong")
    dict_bytes = _retained(fill_dict)
    return Memory(len(keys), dal_bytes / len(keys), dict_bytes / len(keys))


def _retained(fill: Callable[[], object]) -> int:
    """Bytes allocated by ``fill`` that are still alive while what it returned is."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return after - before
