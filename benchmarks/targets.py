"""The targets of issue 3, checked against one run's medians.

Each target is a figure of this run (mostly a ratio between two rows of one case)
and a bound. The targets are set for PostgreSQL; on SQLite they are checked the
same way, for information.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .stats import Result

__all__ = ["RULES", "Rule", "Target", "evaluate"]

Rows = Mapping[str, Result]  # a case's rows by competitor

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


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


def _throughput(numerator: str, denominator: str) -> Callable[[Rows], float | None]:
    def measure(rows: Rows) -> float | None:
        top, bottom = rows.get(numerator), rows.get(denominator)
        return top.ops_per_s / bottom.ops_per_s if top and bottom else None

    return measure


def _p50(numerator: str, denominator: str) -> Callable[[Rows], float | None]:
    def measure(rows: Rows) -> float | None:
        top, bottom = rows.get(numerator), rows.get(denominator)
        if top is None or bottom is None or top.p50_us is None or not bottom.p50_us:
            return None
        return top.p50_us / bottom.p50_us

    return measure


def _hit_points(rows: Rows) -> float | None:
    """dal's hit ratio less LRU's, in percentage points."""
    dal, lru = rows["dal"], rows.get("cachetools")
    if lru is None or dal.hit_ratio is None or lru.hit_ratio is None:
        return None
    return 100 * (dal.hit_ratio - lru.hit_ratio)


def _of_ideal(rows: Rows) -> float | None:
    value = rows["dal"].extra.get("of_ideal")
    return None if value is None else float(value)


def _stale(rows: Rows) -> float | None:
    return rows["dal"].stale_reads


#: The targets per workload.
RULES: dict[str, tuple[Rule, ...]] = {
    "hit": (
        Rule(
            "dal within 1.5x the locked-LRUCache floor (floor / dal)",
            _throughput("lru-floor", "dal"),
            "<=",
            1.5,
        ),
        Rule(
            "dal faster than cachetools.cachedmethod with a lock",
            _throughput("dal", "cachedmethod"),
            ">",
            1.0,
        ),
        Rule(
            "dal at least 15x faster than dogpile's decorator",
            _throughput("dal", "dogpile"),
            ">=",
            15.0,
        ),
    ),
    "miss": (
        Rule(
            "dal miss p50 at most 0.6x Session.get's", _p50("dal", "orm"), "<=", 0.6, cases=("get",)
        ),
        Rule(
            "dal get_many at least as fast as one Core IN query (dal / core)",
            _throughput("dal", "core"),
            ">=",
            1.0,
            cases=("get_many x50",),
        ),
    ),
    "zipf": (
        Rule("dal at least 2x cachetools.cached", _throughput("dal", "cachetools"), ">=", 2.0),
        Rule("dal at least 10x no cache (Core select)", _throughput("dal", "core"), ">=", 10.0),
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
    ),
    "stampede": (
        Rule(
            "dal: one query for a cold key (most in any repetition)",
            lambda rows: rows["dal"].queries_max,
            "==",
            1,
            unit="queries",
        ),
    ),
    "mixed": (
        Rule("dal serves no stale read (all repetitions)", _stale, "==", 0, unit="stale reads"),
    ),
    "invalidation": (
        Rule(
            "dal: p99 from another process's commit to the key dropped here",
            lambda rows: None if rows["dal"].p99_us is None else rows["dal"].p99_us / 1000,
            "<=",
            20.0,
            unit="ms",
        ),
        Rule("dal serves no stale read after the drop", _stale, "==", 0, unit="stale reads"),
    ),
}


def evaluate(results: Sequence[Result]) -> list[Target]:
    """Every target whose rows this run measured, in the order of the results."""
    cases: dict[tuple[str, str], dict[str, Result]] = {}
    for result in results:
        cases.setdefault((result.workload, result.case), {})[result.competitor] = result
    targets = []
    for (workload, case), rows in cases.items():
        if "dal" not in rows:
            continue
        for rule in RULES.get(workload, ()):
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
                    )
                )
    return targets
