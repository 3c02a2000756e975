"""From measured runs to reported figures: percentiles per run, medians over runs."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["Result", "Sample", "percentile", "summarize"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    """One measured run of one competitor."""

    #: Requests served in the throughput pass, and its wall time.
    ops: int
    wall_ns: int
    #: Nanoseconds per call as timed (timing loop included; see ``Env.timer_overhead_ns``).
    latencies_ns: Sequence[int]
    #: Reads issued over the whole measurement, the denominator of the hit ratio.
    reads: int
    stale_reads: int | None = None
    #: Filled in by the driver from the competitor's counters.
    queries: int = 0
    misses: int = 0

    @property
    def ops_per_s(self) -> float:
        return self.ops * 1e9 / max(self.wall_ns, 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """One row of the report: one competitor in one case of one workload."""

    workload: str
    case: str
    competitor: str
    label: str
    threads: int
    ops_per_s: float
    p50_us: float | None
    p99_us: float | None
    hit_ratio: float | None
    #: Total over all repetitions (any stale read must show), None where not checked.
    stale_reads: int | None
    #: Median per run, and the most any run issued.
    queries: float
    queries_max: int
    repetitions: int
    #: The case's reference (dal, where it runs) and its throughput divided by this
    #: row's: 2.0 means the reference is twice as fast as this row.
    reference: str | None = None
    ratio: float | None = None
    #: Workload-specific figures, e.g. the share of the ideal throughput.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def percentile(ordered: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile of an ascending sequence."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(
    samples: Sequence[Sample],
    *,
    workload: str,
    case: str,
    competitor: str,
    label: str,
    threads: int,
    caches: bool,
    timer_overhead_ns: int,
) -> Result:
    """Medians over ``samples``; latencies less the timing loop's own cost."""

    def latency_us(sample: Sample, q: float) -> float | None:
        if not sample.latencies_ns:
            return None
        return max(0, percentile(sorted(sample.latencies_ns), q) - timer_overhead_ns) / 1e3

    def median(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    stale = [s.stale_reads for s in samples if s.stale_reads is not None]
    return Result(
        workload=workload,
        case=case,
        competitor=competitor,
        label=label,
        threads=threads,
        ops_per_s=statistics.median(s.ops_per_s for s in samples),
        p50_us=median([latency_us(s, 50) for s in samples]),
        p99_us=median([latency_us(s, 99) for s in samples]),
        hit_ratio=median([1 - s.misses / s.reads if caches and s.reads else None for s in samples]),
        stale_reads=sum(stale) if stale else None,
        queries=statistics.median(s.queries for s in samples),
        queries_max=max(s.queries for s in samples),
        repetitions=len(samples),
    )
