"""From measured runs to reported figures: percentiles per run, medians over runs; and
the targets each workload declares, checked against one run's medians.

A target is a figure of this run (mostly a ratio between two rows of one case) and a
bound. The targets are set for PostgreSQL; on SQLite they are checked the same way,
for information. A rule may also say how far the figure could go at all on this run
(a ``Limit``, from a model of the workload), so that a missed target that no cache
could meet reads as such.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "Limit",
    "Result",
    "Rows",
    "Rule",
    "Sample",
    "Target",
    "evaluate",
    "p50_ratio",
    "percentile",
    "stale",
    "summarize",
    "throughput_ratio",
]


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


# --- targets --------------------------------------------------------------------------

Rows = Mapping[str, Result]  # a case's rows by competitor

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limit:
    """The most a target's figure could be on this run under the model ``text`` states
    (in the target's unit): below the bound, the target is out of reach for any
    competitor, not only for the one measured."""

    value: float
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """A checked target: ``measured op bound`` passed or not."""

    workload: str
    case: str
    text: str
    measured: float
    op: str
    bound: float
    unit: str
    limit: Limit | None = None

    @property
    def passed(self) -> bool:
        return _OPS[self.op](self.measured, self.bound)

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


@dataclasses.dataclass(frozen=True)
class Rule:
    text: str
    #: The figure from a case's rows, or None when a row it needs was not run.
    measure: Callable[[Rows], float | None]
    op: str
    bound: float
    unit: str = "x"
    cases: tuple[str, ...] | None = None  # None: every case of the workload
    #: The most the figure could be on these rows, or None where the model says nothing.
    limit: Callable[[Rows], Limit | None] | None = None


def throughput_ratio(numerator: str, denominator: str) -> Callable[[Rows], float | None]:
    """The throughput of one row over another's."""

    def measure(rows: Rows) -> float | None:
        top, bottom = rows.get(numerator), rows.get(denominator)
        return top.ops_per_s / bottom.ops_per_s if top and bottom else None

    return measure


def p50_ratio(numerator: str, denominator: str) -> Callable[[Rows], float | None]:
    """The median latency of one row over another's."""

    def measure(rows: Rows) -> float | None:
        top, bottom = rows.get(numerator), rows.get(denominator)
        if top is None or bottom is None or top.p50_us is None or not bottom.p50_us:
            return None
        return top.p50_us / bottom.p50_us

    return measure


def stale(competitor: str) -> Callable[[Rows], float | None]:
    """The stale reads a row saw, over all repetitions."""

    def measure(rows: Rows) -> float | None:
        row = rows.get(competitor)
        return None if row is None else row.stale_reads

    return measure


def evaluate(results: Sequence[Result], rules: Mapping[str, Sequence[Rule]]) -> list[Target]:
    """Every target (``rules`` by workload) whose rows this run measured, in the order of
    the results."""
    cases: dict[tuple[str, str], dict[str, Result]] = {}
    for result in results:
        cases.setdefault((result.workload, result.case), {})[result.competitor] = result
    targets = []
    for (workload, case), rows in cases.items():
        for rule in rules.get(workload, ()):
            if rule.cases is not None and case not in rule.cases:
                continue
            measured = rule.measure(rows)
            if measured is not None:
                targets.append(
                    Target(
                        workload=workload,
                        case=case,
                        text=rule.text,
                        measured=measured,
                        op=rule.op,
                        bound=rule.bound,
                        unit=rule.unit,
                        limit=rule.limit(rows) if rule.limit else None,
                    )
                )
    return targets
