"""``mixed``: reads and writes together, with every stale read counted."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ..competitors import Competitor
from ..harness import run_threads
from ..history import count_stale, run_mixed
from ..stats import Sample
from .base import Case, Workload

__all__ = ["Mixed"]

#: (name, share of writes)
MIXES = (("95/5", 0.05), ("80/20", 0.20))
#: Versions of one run start above every version of the runs before it.
_VERSIONS_PER_RUN = 10**9


class Mixed(Workload):
    name = "mixed"
    summary = "Zipf reads and writes; a read is stale if it missed a write completed before it"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._runs = itertools.count(1)

    def cases(self) -> list[Case]:
        return [self._case(name, share) for name, share in MIXES]

    def _case(self, name: str, write_share: float) -> Case:
        config = self.env.config
        threads = config.max_threads
        total = config.mixed_requests
        plans = self._plans(name, write_share, threads, total)

        def measure(competitor: Competitor, rep: int) -> Sample:
            first = next(self._runs) * _VERSIONS_PER_RUN
            read, write = competitor.read, competitor.write
            wall, histories = run_threads(
                threads, lambda i: run_mixed(read, write, plans[i], first)
            )
            return Sample(
                ops=total,
                wall_ns=wall,
                latencies_ns=list(itertools.chain(*(h.latencies_ns for h in histories))),
                reads=sum(len(h.reads) for h in histories),
                stale_reads=count_stale(histories),
            )

        writes = sum(is_write for plan in plans for is_write, _ in plan)
        return Case(
            workload=self.name,
            name=name,
            describe=(
                f"{total:,} requests ({writes:,} writes), s={config.zipf}, {threads} threads; "
                "latency covers reads and writes"
            ),
            threads=threads,
            competitors=("dal", "cachetools", "dogpile", "core"),
            measure=measure,
        )

    def _plans(
        self, name: str, write_share: float, threads: int, total: int
    ) -> list[list[tuple[bool, int]]]:
        """Each thread's (is_write, key) list; a thread writes only the keys it owns.

        Owning rows (key % threads) keeps each row's versions rising in the order its
        writes complete, which is what makes a stale read well defined.
        """
        keys = self.env.keys
        reads = keys.zipf_stream(self.env.config.zipf, f"mixed {name} reads")
        writes = keys.zipf_stream(self.env.config.zipf, f"mixed {name} writes")
        coin = keys.rng(f"mixed {name} ops")
        plans: list[list[tuple[bool, int]]] = [[] for _ in range(threads)]
        for n in range(total):
            owner = n % threads
            if coin.random() < write_share:
                plans[owner].append((True, _owned(writes, owner, threads)))
            else:
                plans[owner].append((False, next(reads)))
        return plans


def _owned(keys: Iterator[int], owner: int, threads: int) -> int:
    return next(key for key in keys if key % threads == owner)
