"""Read-only workloads: ``hit`` (the hit path alone), ``miss`` (cold reads), ``zipf``."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Callable, Sequence

from ..competitors import Competitor, RawFloor
from ..env import Env
from ..harness import run_threads, timed_calls, untimed_calls
from ..stats import Result, Sample
from .base import Case, Workload, split

__all__ = ["Hit", "Miss", "Zipf", "read_sample"]

_HIT_SLICES = 10
_MANY_SLICES = 8


def read_sample(competitor: Competitor, plans: Sequence[Sequence[int]]) -> Sample:
    """Every thread reads its plan, one key per call, each call timed."""
    read = competitor.read
    wall, latencies = run_threads(len(plans), lambda i: timed_calls(read, plans[i]))
    ops = sum(len(p) for p in plans)
    return Sample(ops=ops, wall_ns=wall, latencies_ns=list(itertools.chain(*latencies)), reads=ops)


class Hit(Workload):
    name = "hit"
    summary = "the hit path alone: every key read is cached, beside a locked LRUCache lookup"

    def cases(self) -> list[Case]:
        config = self.env.config
        hot = self.env.keys.ranked[: config.hot_keys]
        requests = self.env.keys.uniform(hot, config.hit_requests, "hit")

        def prepare(competitor: Competitor) -> None:
            competitor.prime(hot)

        slices = [requests[i::_HIT_SLICES] for i in range(_HIT_SLICES)]

        def measure(competitor: Competitor, rep: int) -> Sample:
            read = competitor.read
            # Throughput from loops with no clock in them: at well under a microsecond
            # a call, timing each call would be a large part of what is measured. Each
            # slice takes milliseconds, so a noisy neighbour spoils a slice, not the
            # figure: the run's time is the median slice's, times the slices.
            walls = [_untimed_wall(read, part) for part in slices]
            return Sample(
                ops=len(requests),
                wall_ns=int(statistics.median(walls) * _HIT_SLICES),
                latencies_ns=timed_calls(read, requests),
                reads=2 * len(requests),
            )

        return [
            Case(
                workload=self.name,
                name="",
                describe=f"{len(requests):,} reads over {len(hot):,} cached keys, 1 thread",
                threads=1,
                competitors=("lru-floor", "dal", "cachetools", "cachedmethod", "dogpile"),
                measure=measure,
                prepare=prepare,
            )
        ]


class Miss(Workload):
    name = "miss"
    summary = "the miss path: keys no cache holds, one at a time and in batches"

    def cases(self) -> list[Case]:
        config = self.env.config
        keys = self.env.keys.distinct(config.miss_keys, "miss")
        size = config.batch_size
        batches = [keys[i : i + size] for i in range(0, len(keys), size)]

        def measure_get(competitor: Competitor, rep: int) -> Sample:
            return read_sample(competitor, [keys])

        count = min(_MANY_SLICES, len(batches))
        slices = [batches[i::count] for i in range(count)]

        def measure_many(competitor: Competitor, rep: int) -> Sample:
            read_many = competitor.read_many
            # A call takes milliseconds on a server: on a busy machine one stall would
            # decide the figure. Timed in slices, the run's time is the median slice's
            # times the slices (as in ``hit``).
            timed = [run_threads(1, lambda i, s=s: timed_calls(read_many, s)) for s in slices]
            wall = int(statistics.median(w for w, _ in timed) * len(slices))
            latencies = list(itertools.chain.from_iterable(lat[0] for _, lat in timed))
            # ops are rows, so the figure compares with ``get``; latency is per call.
            return Sample(ops=len(keys), wall_ns=wall, latencies_ns=latencies, reads=len(keys))

        return [
            Case(
                workload=self.name,
                name="get",
                describe=f"{len(keys):,} cold keys read once each, 1 thread",
                threads=1,
                competitors=("dal", "orm", "core", "cachetools", "dogpile", *_raw(self.env)),
                measure=measure_get,
            ),
            Case(
                workload=self.name,
                name=f"get_many x{size}",
                describe=(
                    f"{len(batches):,} calls of {size} cold keys; ops/s counts rows, "
                    "latency is per call"
                ),
                threads=1,
                competitors=("dal", "orm", "core", "dogpile"),
                measure=measure_many,
            ),
        ]


class Zipf(Workload):
    name = "zipf"
    summary = "Zipf-distributed reads through a cache smaller than the table"

    def cases(self) -> list[Case]:
        config = self.env.config
        requests = self.env.keys.zipf(config.requests, config.zipf, "zipf")
        uncached = requests[: config.uncached_requests]
        distinct = sorted(set(requests))
        cached_names = ("lru-floor", "dal", "cachetools", "dogpile")
        # The faster no-cache read (``miss`` has both), and the physical floor of a miss.
        uncached_names = ("core", *_raw(self.env))

        def prepare(competitor: Competitor) -> None:
            if competitor.name == "lru-floor":
                competitor.prime(distinct)  # the floor holds every key: it never misses

        def finish(results: list[Result]) -> list[Result]:
            return with_ideal(results, distinct=len(distinct), requests=len(requests))

        cases = []
        for threads in config.threads:
            cases.append(
                Case(
                    workload=self.name,
                    name=f"{threads} thread" + ("s" if threads > 1 else ""),
                    describe=(
                        f"{len(requests):,} reads, s={config.zipf}, {len(distinct):,} distinct "
                        f"keys, cache of {config.cache_size:,}, {threads} thread(s); "
                        f"no-cache rows serve the first {len(uncached):,}"
                    ),
                    threads=threads,
                    competitors=cached_names + uncached_names,
                    measure=_measure_reads(split(requests, threads), split(uncached, threads)),
                    prepare=prepare,
                    finish=finish,
                )
            )
        return cases


def _raw(env: Env) -> tuple[str, ...]:
    return ("raw",) if RawFloor.supported(env) else ()


def _untimed_wall(read: Callable[[int], object], keys: Sequence[int]) -> int:
    return run_threads(1, lambda i: untimed_calls(read, keys))[0]


def _measure_reads(
    plans: Sequence[Sequence[int]], uncached: Sequence[Sequence[int]]
) -> Callable[[Competitor, int], Sample]:
    def measure(competitor: Competitor, rep: int) -> Sample:
        return read_sample(competitor, plans if competitor.caches else uncached)

    return measure


def with_ideal(results: list[Result], *, distinct: int, requests: int) -> list[Result]:
    """Add the compulsory-miss ideal row, and each cache's share of its throughput.

    The ideal cache misses only on a key's first request (distinct keys / requests),
    pays the physical floor of a read for each such miss (the driver's prepared
    select on a held connection, ``raw``; the Core read where no driver entry
    exists) and the locked-LRUCache floor for every other request:
    ideal time = d * t_raw + (n - d) * t_floor.
    """
    by_name = {r.competitor: r for r in results}
    read, floor = by_name.get("raw") or by_name.get("core"), by_name.get("lru-floor")
    if read is None or floor is None:
        return results
    miss_share = distinct / requests
    ideal_ops = 1 / (miss_share / read.ops_per_s + (1 - miss_share) / floor.ops_per_s)
    rows = [
        dataclasses.replace(r, extra={**r.extra, "of_ideal": r.ops_per_s / ideal_ops})
        if r.hit_ratio is not None and r.competitor != "lru-floor"
        else r
        for r in results
    ]
    rows.append(
        dataclasses.replace(
            read,
            competitor="ideal",
            label=(
                f"compulsory misses only: a {read.competitor} read per distinct key, "
                "the floor otherwise"
            ),
            ops_per_s=ideal_ops,
            p50_us=None,
            p99_us=None,
            hit_ratio=1 - miss_share,
            queries=distinct,
            queries_max=distinct,
            extra={
                "of_ideal": 1.0,
                "distinct_keys": distinct,
                "requests": requests,
                "miss_read": read.competitor,
            },
        )
    )
    return rows
