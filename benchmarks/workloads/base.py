"""Workloads, their cases, and the driver that runs a case's competitors interleaved.

A workload turns the run's settings into cases; a case names its competitors and
how to measure one of them once. The driver does the rest the same way for all:
for each repetition, each competitor in turn (the order rotates, A B C, B C A...)
starts over with an empty cache, fills its pool and compiles its statements on
keys no measurement reads, and is measured; the report
gives the median of the repetitions.
"""

from __future__ import annotations

import dataclasses
import gc
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

from ..competitors import COMPETITORS, Competitor, Unavailable, create
from ..env import Env
from ..progress import Progress
from ..stats import Result, Sample, summarize

__all__ = ["Case", "Workload", "available", "run_case", "split"]

T = TypeVar("T")


def _nothing(competitor: Competitor) -> None:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """One table section: some competitors measured the same way at one thread count."""

    workload: str
    name: str
    #: One line for the report: what a request is and how many there are.
    describe: str
    threads: int
    competitors: tuple[str, ...]
    #: Measures one competitor once (after ``reset``, ``warm`` and ``prepare``); gets the
    #: repetition.
    measure: Callable[[Competitor, int], Sample]
    #: What a competitor needs beyond a warm pool before it is measured (e.g. a full cache).
    prepare: Callable[[Competitor], None] = _nothing
    #: Whose throughput the ``ratio`` column divides by this row's.
    reference: str | None = "dal"
    #: Post-processing of the case's rows (e.g. a derived ``ideal`` row).
    finish: Callable[[list[Result]], list[Result]] | None = None

    @property
    def title(self) -> str:
        return f"{self.workload} {self.name}".strip()


class Workload(ABC):
    """A kind of traffic; ``cases`` builds its request sequences from the run's seed."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, env: Env) -> None:
        self.env = env

    @abstractmethod
    def cases(self) -> list[Case]: ...


def split(requests: Sequence[T], threads: int) -> list[Sequence[T]]:
    """Deal ``requests`` round-robin to ``threads`` threads."""
    return [requests[i::threads] for i in range(threads)]


def available(names: Sequence[str], progress: Progress) -> tuple[str, ...]:
    """The competitors in ``names`` whose libraries import; says which are skipped."""
    found = []
    for name in names:
        try:
            COMPETITORS[name].check_available()
        except Unavailable as exc:
            progress.note(f"skipping {name}: {exc}")
        else:
            found.append(name)
    return tuple(found)


def run_case(env: Env, case: Case, progress: Progress) -> list[Result]:
    """Measure every competitor of ``case`` ``repeat`` times, interleaved; one row each."""
    competitors = [create(name, env) for name in case.competitors]
    samples: dict[str, list[Sample]] = {c.name: [] for c in competitors}
    repeat = env.config.repeat
    try:
        for rep in range(repeat):
            turn = rep % len(competitors)
            for competitor in competitors[turn:] + competitors[:turn]:
                progress.step(f"{case.title}: {competitor.name} ({rep + 1}/{repeat})")
                competitor.reset()
                competitor.warm(case.threads)
                case.prepare(competitor)
                gc.collect()  # no competitor pays for the garbage of the one before it
                queries, misses = competitor.queries, competitor.misses
                sample = case.measure(competitor, rep)
                samples[competitor.name].append(
                    dataclasses.replace(
                        sample,
                        queries=competitor.queries - queries,
                        misses=competitor.misses - misses,
                    )
                )
    finally:
        for competitor in competitors:
            competitor.close()
    results = [
        summarize(
            samples[c.name],
            workload=case.workload,
            case=case.name,
            competitor=c.name,
            label=c.label,
            threads=case.threads,
            caches=c.caches,
            timer_overhead_ns=env.timer_overhead_ns,
        )
        for c in competitors
    ]
    if case.finish is not None:
        results = case.finish(results)
    return _with_ratios(results, case.reference)


def _with_ratios(results: list[Result], reference: str | None) -> list[Result]:
    ref = next((r for r in results if r.competitor == reference), None)
    if ref is None:
        return results
    return [
        dataclasses.replace(r, reference=ref.competitor, ratio=ref.ops_per_s / r.ops_per_s)
        for r in results
    ]
