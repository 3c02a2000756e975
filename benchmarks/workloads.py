"""The sync workloads: ``hit`` (the hit path alone), ``miss`` (cold reads), ``zipf``,
``mixed`` (reads and writes, stale reads counted), ``stampede`` and ``pool``.

Each picks its competitors by kind (``Workload.competitors``) and declares its targets.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import statistics
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from .base import Case, Competitor, Kind, Workload, split, workload
from .data import KeySpace
from .measure import History, count_stale, run_mixed, run_threads, timed_calls, untimed_calls
from .results import Result, Rows, Rule, Sample, p50_ratio, stale, throughput_ratio

__all__ = ["hit_sample", "hit_slices", "mixed_plans", "mixed_sample", "read_sample", "with_ideal"]

A = TypeVar("A")
CACHE, NO_CACHE, HIT_FLOOR, MISS_FLOOR = Kind.CACHE, Kind.NO_CACHE, Kind.HIT_FLOOR, Kind.MISS_FLOOR


def _hit_points(rows: Rows) -> float | None:
    """dal's hit ratio less LRU's, in percentage points."""
    dal, lru = rows.get("dal"), rows.get("cachetools")
    if dal is None or lru is None or dal.hit_ratio is None or lru.hit_ratio is None:
        return None
    return 100 * (dal.hit_ratio - lru.hit_ratio)


def _of_ideal(rows: Rows) -> float | None:
    dal = rows.get("dal")
    value = None if dal is None else dal.extra.get("of_ideal")
    return None if value is None else float(value)


_HIT_SLICES = 10
_MANY_SLICES = 8


def read_sample(competitor: Competitor, plans: Sequence[Sequence[int]]) -> Sample:
    """Every thread reads its plan, one key per call, each call timed."""
    read = competitor.read
    wall, latencies = run_threads(len(plans), lambda i: timed_calls(read, plans[i]))
    ops = sum(len(p) for p in plans)
    return Sample(ops=ops, wall_ns=wall, latencies_ns=list(itertools.chain(*latencies)), reads=ops)


@workload
class Hit(Workload):
    name = "hit"
    summary = "the hit path alone: every key read is cached, beside a locked LRUCache lookup"
    rules = (
        Rule(
            "dal within 1.5x the locked-LRUCache floor (floor / dal)",
            throughput_ratio("lru-floor", "dal"),
            "<=",
            1.5,
        ),
        Rule(
            "dal faster than cachetools.cachedmethod with a lock",
            throughput_ratio("dal", "cachedmethod"),
            ">",
            1.0,
        ),
        Rule(
            "dal at least 15x faster than dogpile's decorator",
            throughput_ratio("dal", "dogpile"),
            ">=",
            15.0,
        ),
    )

    def cases(self) -> list[Case]:
        config = self.env.config
        hot = self.env.keys.ranked[: config.hot_keys]
        requests = self.env.keys.uniform(hot, config.hit_requests, "hit")

        def prepare(competitor: Competitor) -> None:
            competitor.prime(hot)

        def measure(competitor: Competitor, rep: int) -> Sample:
            return hit_sample(competitor.read, requests)

        return [
            Case(
                workload=self.name,
                name="",
                describe=f"{len(requests):,} reads over {len(hot):,} cached keys, 1 thread",
                threads=1,
                competitors=self.competitors(HIT_FLOOR, CACHE),
                measure=measure,
                prepare=prepare,
            )
        ]


@workload
class Miss(Workload):
    name = "miss"
    summary = "the miss path: keys no cache holds, one at a time and in batches"
    rules = (
        Rule(
            "dal miss p50 at most 0.6x Session.get's",
            p50_ratio("dal", "orm"),
            "<=",
            0.6,
            cases=("get",),
        ),
        Rule(
            "dal get_many at least as fast as one Core IN query (dal / core)",
            throughput_ratio("dal", "core"),
            ">=",
            1.0,
            cases=("get_many x50",),
        ),
    )

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
            timed = [run_threads(1, functools.partial(_timed_slice, read_many, s)) for s in slices]
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
                competitors=self.competitors(CACHE, NO_CACHE, MISS_FLOOR),
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
                competitors=self.competitors(CACHE, NO_CACHE, batches=True),
                measure=measure_many,
            ),
        ]


@workload
class Zipf(Workload):
    name = "zipf"
    summary = "Zipf-distributed reads through a cache smaller than the table"
    rules = (
        Rule("dal at least 2x cachetools.cached", throughput_ratio("dal", "cachetools"), ">=", 2.0),
        Rule(
            "dal at least 10x no cache (Core select)", throughput_ratio("dal", "core"), ">=", 10.0
        ),
        # Within the table's precision: with threads, which of two racing misses
        # counts is down to scheduling, for both caches.
        Rule(
            "dal hit ratio at least LRU's (dal - cachetools.cached, to 0.1 point)",
            _hit_points,
            ">=",
            -0.1,
            unit="points",
        ),
        Rule(
            "dal at least 50% of the compulsory-miss ideal", _of_ideal, ">=", 0.5, unit="of ideal"
        ),
    )

    def cases(self) -> list[Case]:
        config = self.env.config
        requests = self.env.keys.zipf(config.requests, config.zipf, "zipf")
        uncached = requests[: config.uncached_requests]
        distinct = sorted(set(requests))
        # No-cache reads, and the physical floor of a miss, serve the uncached prefix.
        competitors = self.competitors(HIT_FLOOR, CACHE, NO_CACHE, MISS_FLOOR)

        def prepare(competitor: Competitor) -> None:
            if competitor.kind is HIT_FLOOR:
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
                        f"keys, cache of {config.cache_size:,}, {workers(threads)}; "
                        f"no-cache rows serve the first {len(uncached):,}"
                    ),
                    threads=threads,
                    competitors=competitors,
                    measure=_measure_reads(split(requests, threads), split(uncached, threads)),
                    prepare=prepare,
                    finish=finish,
                )
            )
        return cases


def workers(threads: int) -> str:
    """How a case's threads run, for its line in the report."""
    return "1 thread" if threads == 1 else f"ThreadPoolExecutor(max_workers={threads})"


def hit_slices(requests: Sequence[int]) -> list[Sequence[int]]:
    """The slices the hit path's throughput is timed in."""
    return [requests[i::_HIT_SLICES] for i in range(_HIT_SLICES)]


def hit_sample(read: Callable[[int], object], requests: Sequence[int]) -> Sample:
    """The hit path's throughput from loops with no clock in them, and each call's latency.

    At well under a microsecond a call, timing each call would be a large part of what
    is measured. Each slice takes milliseconds, so a noisy neighbour spoils a slice, not
    the figure: the run's time is the median slice's, times the slices.
    """
    walls = [_untimed_wall(read, part) for part in hit_slices(requests)]
    return Sample(
        ops=len(requests),
        wall_ns=int(statistics.median(walls) * len(walls)),
        latencies_ns=timed_calls(read, requests),
        reads=2 * len(requests),
    )


def _timed_slice(fn: Callable[[A], object], args: Sequence[A], worker: int) -> array[int]:
    return timed_calls(fn, args)


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


#: (name, share of writes)
MIXES = (("95/5", 0.05), ("80/20", 0.20))
#: Versions of one run start above every version of the runs before it.
_VERSIONS_PER_RUN = 10**9


@workload
class Mixed(Workload):
    name = "mixed"
    summary = "Zipf reads and writes; a read is stale if it missed a write completed before it"
    rules = (
        Rule("dal serves no stale read (all repetitions)", stale("dal"), "==", 0, "stale reads"),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._runs = itertools.count(1)

    def cases(self) -> list[Case]:
        return [self._case(name, share) for name, share in MIXES]

    def _case(self, name: str, write_share: float) -> Case:
        config = self.env.config
        threads = config.max_threads
        total = config.mixed_requests
        plans = mixed_plans(
            self.env.keys, config.zipf, f"mixed {name}", write_share, threads, total
        )

        def measure(competitor: Competitor, rep: int) -> Sample:
            first = next(self._runs) * _VERSIONS_PER_RUN
            read, write = competitor.read, competitor.write
            wall, histories = run_threads(
                threads, lambda i: run_mixed(read, write, plans[i], first)
            )
            return mixed_sample(wall, histories)

        writes = sum(is_write for plan in plans for is_write, _ in plan)
        return Case(
            workload=self.name,
            name=name,
            describe=(
                f"{total:,} requests ({writes:,} writes), s={config.zipf}, {workers(threads)}; "
                "latency covers reads and writes"
            ),
            threads=threads,
            competitors=self.competitors(CACHE, NO_CACHE),
            measure=measure,
            counts="stale_reads",
        )


def mixed_plans(
    keys: KeySpace, s: float, purpose: str, write_share: float, workers: int, total: int
) -> list[list[tuple[bool, int]]]:
    """Each worker's (is_write, key) list; a worker writes only the keys it owns.

    Owning rows (key % workers) keeps each row's versions rising in the order its
    writes complete, which is what makes a stale read well defined.
    """
    reads = keys.zipf_stream(s, f"{purpose} reads")
    writes = keys.zipf_stream(s, f"{purpose} writes")
    coin = keys.rng(f"{purpose} ops")
    plans: list[list[tuple[bool, int]]] = [[] for _ in range(workers)]
    for n in range(total):
        owner = n % workers
        if coin.random() < write_share:
            plans[owner].append((True, _owned(writes, owner, workers)))
        else:
            plans[owner].append((False, next(reads)))
    return plans


def mixed_sample(wall_ns: int, histories: Sequence[History]) -> Sample:
    """The figures of one run of mixed plans: every request, every stale read."""
    return Sample(
        ops=sum(len(h.latencies_ns) for h in histories),
        wall_ns=wall_ns,
        latencies_ns=list(itertools.chain(*(h.latencies_ns for h in histories))),
        reads=sum(len(h.reads) for h in histories),
        stale_reads=count_stale(histories),
    )


def _owned(keys: Iterator[int], owner: int, workers: int) -> int:
    return next(key for key in keys if key % workers == owner)


@workload
class Stampede(Workload):
    name = "stampede"
    summary = "threads released by a barrier read one cold key; single flight means one query"
    rules = (
        Rule(
            "dal: one query for a cold key (most in any repetition)",
            lambda rows: rows["dal"].queries_max if "dal" in rows else None,
            "==",
            1,
            unit="queries",
        ),
    )

    def cases(self) -> list[Case]:
        config = self.env.config
        threads = config.stampede_threads
        # A different cold key each repetition, the same one for every competitor.
        cold = self.env.keys.distinct(config.repeat, "stampede")

        def measure(competitor: Competitor, rep: int) -> Sample:
            key = (cold[rep],)
            read = competitor.read
            wall, latencies = run_threads(threads, lambda i: timed_calls(read, key))
            return Sample(
                ops=threads,
                wall_ns=wall,
                latencies_ns=[t for thread in latencies for t in thread],
                reads=threads,
            )

        return [
            Case(
                workload=self.name,
                name="",
                describe=(
                    f"{threads} threads ({workers(threads)}) behind a Barrier read one cold "
                    "key; queries per run"
                ),
                threads=threads,
                competitors=self.competitors(CACHE, NO_CACHE),
                measure=measure,
                counts="queries",
            )
        ]


@workload
class Pool(Workload):
    name = "pool"
    summary = "primary-key selects on a pooled engine and on one with NullPool"

    def cases(self) -> list[Case]:
        config = self.env.config
        keys = self.env.keys.uniform(self.env.keys.ranked, config.pool_requests, "pool")

        def measure(competitor: Competitor, rep: int) -> Sample:
            return read_sample(competitor, [keys])

        return [
            Case(
                workload=self.name,
                name="",
                describe=f"{len(keys):,} primary-key selects, 1 thread; ref = the pooled engine",
                threads=1,
                competitors=self.competitors(NO_CACHE),
                measure=measure,
                reference="core",
            )
        ]
