"""The run's settings (what the command line asked for, the sizes derived from it) and
``Env``, what every workload and competitor of one run shares."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sqlalchemy import Engine

from .data import KeySpace
from .drivers import MAX_OVERFLOW, QueryCounter

__all__ = ["DEFAULTS", "QUICK", "Config", "Env"]

#: Defaults of a full run: about a minute on two cores with the embedded SQLite file.
DEFAULTS = {
    "rows": 100_000,
    "requests": 200_000,
    "threads": (1, 8),
    "zipf": 1.1,
    "cache_size": 10_000,
    "repeat": 3,
    "seed": 1,
}

#: ``--quick``: the same run scaled down to seconds, for tests.
QUICK = {
    **DEFAULTS,
    "rows": 2_000,
    "requests": 2_000,
    "threads": (1, 4),
    "cache_size": 200,
    "repeat": 2,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Everything one run was configured with; the derived sizes are properties."""

    url: str
    workloads: tuple[str, ...]
    quick: bool = False
    seed: int = 1
    rows: int = 100_000
    requests: int = 200_000
    threads: tuple[int, ...] = (1, 8)
    zipf: float = 1.1
    cache_size: int = 10_000
    repeat: int = 3
    json_path: Path | None = None
    plot_path: Path | None = None

    def __post_init__(self) -> None:
        for name in ("rows", "requests", "cache_size", "repeat"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.rows < 1_000:
            raise ValueError(f"--rows {self.rows} is too few: the workloads need at least 1000")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"--threads {self.threads} must be positive thread counts")
        if self.zipf <= 0:
            raise ValueError(f"--zipf {self.zipf} must be greater than 0")

    @property
    def hot_keys(self) -> int:
        """Keys the ``hit`` workload cycles over: all fit in the cache."""
        return max(1, min(1_000, self.cache_size // 2, self.rows // 4))

    @property
    def hit_requests(self) -> int:
        return max(1_000, self.requests // 4)

    @property
    def miss_keys(self) -> int:
        """Cold keys each ``miss`` run reads once (a multiple of ``batch_size``)."""
        keys = min(2_000, self.rows // 4, max(self.requests // 20, self.batch_size))
        return max(self.batch_size, keys - keys % self.batch_size)

    @property
    def batch_size(self) -> int:
        """Keys per ``get_many`` call in the ``miss`` workload."""
        return 50

    @property
    def mixed_requests(self) -> int:
        return max(1_000, self.requests // 40)

    @property
    def uncached_requests(self) -> int:
        """Requests a no-cache competitor serves in ``zipf``: a prefix of the sequence.

        Without a cache every request costs the same, so a prefix measures the same
        rate in a fraction of the time.
        """
        return min(self.requests, 5_000)

    @property
    def pool_requests(self) -> int:
        return min(self.requests, 1_000)

    @property
    def stampede_threads(self) -> int:
        return 64

    @property
    def max_threads(self) -> int:
        return max(self.threads)

    @property
    def pool_size(self) -> int:
        """Every pool's size: the largest ``ThreadPoolExecutor``'s ``max_workers`` (at least
        dal's default of 5), so a worker does not queue for a connection."""
        return max(5, self.max_threads)

    @property
    def pools(self) -> str:
        """The pool settings, for the report."""
        return f"pool_size={self.pool_size}, max_overflow={MAX_OVERFLOW}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Env:
    """What every workload and competitor of one run shares."""

    config: Config
    #: The pooled engine of every competitor but dal (dal builds its own from the URL).
    engine: Engine
    counter: QueryCounter
    keys: KeySpace
    #: What the timing loop adds to each measured call, subtracted from latencies.
    timer_overhead_ns: int
    #: The event loop every async competitor of the run lives on.
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return self.config.url
