"""What every workload and competitor of one run shares: settings, data, the baseline engine."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Engine

from .config import Config
from .data import KeySpace
from .engines import QueryCounter

__all__ = ["Env"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Env:
    config: Config
    #: The pooled engine of every competitor but dal (dal builds its own from the URL).
    engine: Engine
    counter: QueryCounter
    keys: KeySpace
    #: What the timing loop adds to each measured call, subtracted from latencies.
    timer_overhead_ns: int

    @property
    def url(self) -> str:
        return self.config.url
