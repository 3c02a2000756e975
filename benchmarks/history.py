"""Reads and writes with their times, and the check that finds stale reads in them.

A read is stale if it returned a version older than the newest write to that row
that had *completed* before the read *began*. Every write to a row comes from one
thread (rows are owned by threads), so a row's versions rise in the order its writes
complete, and "newest completed" is well defined without a global order.
"""

from __future__ import annotations

import bisect
import dataclasses
from array import array
from collections.abc import Callable, Iterable, Sequence
from time import perf_counter_ns
from typing import Any

__all__ = ["History", "count_stale", "run_mixed"]


@dataclasses.dataclass(frozen=True)
class History:
    """What one thread did: (key, start ns, version read), (key, end ns, version written)."""

    reads: list[tuple[int, int, int]]
    writes: list[tuple[int, int, int]]
    latencies_ns: array[int]


def run_mixed(
    read: Callable[[int], Any],
    write: Callable[[int, int], None],
    ops: Sequence[tuple[bool, int]],
    first_version: int,
) -> History:
    """Run ``ops`` (is_write, key) in order; writes set versions above ``first_version``."""
    reads: list[tuple[int, int, int]] = []
    writes: list[tuple[int, int, int]] = []
    latencies: array[int] = array("q")
    version = first_version
    now = perf_counter_ns
    for is_write, key in ops:
        start = now()
        if is_write:
            version += 1
            write(key, version)
            end = now()  # the write has committed: it returned
            writes.append((key, end, version))
        else:
            seen = read(key).version
            end = now()
            reads.append((key, start, seen))
        latencies.append(end - start)
    return History(reads, writes, latencies)


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
