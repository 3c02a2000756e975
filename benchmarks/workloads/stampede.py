"""``stampede``: many threads miss on one cold key at once; count the queries."""

from __future__ import annotations

from ..competitors import Competitor
from ..harness import run_threads, timed_calls
from ..stats import Sample
from .base import Case, Workload

__all__ = ["Stampede"]


class Stampede(Workload):
    name = "stampede"
    summary = "threads released by a barrier read one cold key; single flight means one query"

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
                describe=f"{threads} threads behind a Barrier read one cold key; queries per run",
                threads=threads,
                competitors=("dal", "cachetools", "dogpile", "core"),
                measure=measure,
            )
        ]
