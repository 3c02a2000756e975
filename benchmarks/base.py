"""What a benchmark is made of: competitors, workloads and their cases, each registered
once, and the driver that runs a case's competitors interleaved.

A competitor is a class with ``@competitor``; its ``kind`` (and ``aio``, ``batches``,
``only``) says which tables it takes part in, so a new competitor appears in every
table of its kind with no other edit. A workload is a class with ``@workload``: it
turns the run's settings into cases, picks its competitors by kind
(``self.competitors(...)``) and declares its targets (``rules``). Either may live in
any module of this package; ``load()`` imports them all.

The driver measures every case the same way: for each repetition, each competitor in
turn (the order rotates, A B C, B C A...) starts over with an empty cache, fills its
pool and compiles its statements on keys no measurement reads, and is measured; the
report gives the median of the repetitions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import gc
import importlib
import pkgutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import Engine

from .config import Env
from .data import Read, Write
from .results import Result, Rule, Sample, summarize

if TYPE_CHECKING:
    from .report import Progress

__all__ = [
    "COMPETITORS",
    "WORKLOADS",
    "Case",
    "Competitor",
    "Kind",
    "Tally",
    "Unavailable",
    "Workload",
    "available",
    "competitor",
    "create",
    "load",
    "run_case",
    "split",
    "workload",
]

T = TypeVar("T")
C = TypeVar("C", bound="type[Competitor]")
W = TypeVar("W", bound="type[Workload]")
ReadMany = Callable[[Sequence[int]], Mapping[int, Any]]


class Kind(enum.Enum):
    """What a competitor is, which decides the tables it is in."""

    #: A cache over the database: every read workload.
    CACHE = "cache"
    #: Reads the database every time: the miss, zipf, write and pool workloads.
    NO_CACHE = "no cache"
    #: The least a hit can cost: the hit and zipf tables.
    HIT_FLOOR = "hit floor"
    #: The least a miss can cost: the miss and zipf tables.
    MISS_FLOOR = "miss floor"


class Unavailable(Exception):
    """A competitor's library is not installed (or does not import)."""


class Tally:
    """A counter that threads can bump without losing counts (used on miss paths only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def counting(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn``, counting its calls."""

        @functools.wraps(fn)
        def counted(*args: Any) -> T:
            self.add(1)
            return fn(*args)

        return counted

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def _unsupported(*args: Any) -> Any:
    raise NotImplementedError("this competitor does not do that")


class Competitor:
    """One way of serving reads, behind one small interface a workload drives.

    ``read(key)``, ``read_many(keys)``, ``write(key, version)`` (coroutine functions
    where ``aio``), ``reset()`` (start over with an empty cache), ``prime(keys)``,
    ``warm(threads)``, ``close()``, and the counters ``queries`` (statements sent to
    the database) and ``misses`` (reads the cache did not answer). ``read`` and
    friends are plain attributes bound to the library's own callable, so the timing
    loop calls into every library through the same one call.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    kind: ClassVar[Kind]
    #: Whether ``read`` and ``write`` are coroutine functions (the async workloads).
    aio: ClassVar[bool] = False
    #: Whether ``read_many`` is one query for all the misses (the batch tables).
    batches: ClassVar[bool] = False
    #: The workloads this one is limited to (a variant worth one table); None: all.
    only: ClassVar[frozenset[str] | None] = None
    #: Its colour in the chart.
    colour: ClassVar[str] = "#444444"
    #: The distribution whose version the report records.
    library: ClassVar[str | None] = None

    read: Read
    read_many: ReadMany
    write: Write

    def __init__(self, env: Env) -> None:
        self.env = env
        self.read = self.read_many = self.write = _unsupported
        self._loads = Tally()

    @property
    def caches(self) -> bool:
        """Whether reads go through a cache (a hit ratio means something)."""
        return self.kind in (Kind.CACHE, Kind.HIT_FLOOR)

    @classmethod
    def check_available(cls) -> None:
        """Raise ``Unavailable`` if the library cannot be used here."""

    @classmethod
    def supported(cls, env: Env) -> bool:
        """Whether it can run on this run's database."""
        return True

    def reset(self) -> None:
        """Start over with an empty cache; called before every measured run."""

    def prime(self, keys: Iterable[int]) -> None:
        """Get ``keys`` into the cache."""
        for key in keys:
            self.read(key)

    def warm(self, threads: int) -> None:
        """Fill the pool for ``threads`` and compile statements, on keys no workload reads."""
        engine = self.pooled_engine
        if engine is not None:
            with contextlib.ExitStack() as stack:
                # the pool keeps this many idle
                for _ in range(min(threads, self.env.config.pool_size)):
                    stack.enter_context(engine.connect())
        warm = self.env.keys.warm
        for key in warm:
            self.read(key)
        if self.batches:
            self.read_many(warm)

    @property
    def pooled_engine(self) -> Engine | None:
        """The engine whose pool serves this competitor's reads."""
        return self.env.engine

    @property
    def queries(self) -> int:
        """Statements this competitor's engine has sent (read it before and after)."""
        return self.env.counter.count

    @property
    def misses(self) -> int:
        """Reads its cache did not answer, so far (read it before and after)."""
        return self._loads.value

    def close(self) -> None:
        """Release what ``reset`` made."""


#: Every registered competitor and workload, by name, in the order they registered.
COMPETITORS: dict[str, type[Competitor]] = {}
WORKLOADS: dict[str, type[Workload]] = {}


def competitor(cls: C) -> C:
    """Register a competitor class: it joins every table of its kind."""
    COMPETITORS[cls.name] = cls
    return cls


def workload(cls: W) -> W:
    """Register a workload class: ``--workload NAME`` runs it; a full run runs them all."""
    WORKLOADS[cls.name] = cls
    return cls


#: Imported first, so that the built-in workloads run (and list) first.
_FIRST = ("competitors", "workloads")


def load() -> None:
    """Import every module of the package, so that every registration has run."""
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    found = sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    for name in [*_FIRST, *(n for n in found if n not in _FIRST)]:
        importlib.import_module(f"{package}.{name}")


def create(name: str, env: Env) -> Competitor:
    """A competitor by name; ``Unavailable`` if its library is missing."""
    cls = COMPETITORS[name]
    cls.check_available()
    return cls(env)


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
    #: What the chart counts for this case's rows: "stale_reads", "queries" or None.
    counts: str | None = None

    @property
    def title(self) -> str:
        return f"{self.workload} {self.name}".strip()


class Workload(ABC):
    """A kind of traffic; ``cases`` builds its request sequences from the run's seed."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Its targets, checked against every case (or the cases a rule names).
    rules: ClassVar[tuple[Rule, ...]] = ()

    def __init__(self, env: Env) -> None:
        self.env = env

    @abstractmethod
    def cases(self) -> list[Case]: ...

    def competitors(
        self, *kinds: Kind, aio: bool = False, batches: bool = False
    ) -> tuple[str, ...]:
        """The registered competitors of ``kinds`` that take part here, in order."""
        return tuple(
            name
            for name, cls in COMPETITORS.items()
            if cls.kind in kinds
            and cls.aio == aio
            and (cls.batches or not batches)
            and (cls.only is None or self.name in cls.only)
            and cls.supported(self.env)
        )


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
    if case.counts is not None:
        results = [dataclasses.replace(r, extra={**r.extra, "chart": case.counts}) for r in results]
    return _with_ratios(results, case.reference)


def _with_ratios(results: list[Result], reference: str | None) -> list[Result]:
    ref = next((r for r in results if r.competitor == reference), None)
    if ref is None:
        return results
    return [
        dataclasses.replace(r, reference=ref.competitor, ratio=ref.ops_per_s / r.ops_per_s)
        for r in results
    ]
