"""``pool``: short queries over a pooled engine against a connection per query."""

from __future__ import annotations

from ..competitors import Competitor
from ..stats import Sample
from .base import Case, Workload
from .reads import read_sample

__all__ = ["Pool"]


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
                competitors=("core", "core-nullpool"),
                measure=measure,
                reference="core",
            )
        ]
