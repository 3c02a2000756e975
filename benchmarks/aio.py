"""The async competitors and the ``async`` workload, on one event loop, same data.

dal's ``AsyncRepository`` beside ``AsyncSession.get`` (no cache), the raw async
driver's primary-key read on a held connection (the floor of a miss), and the async
caches users pick: cashews (in-memory), aiocache (in-memory) and async-lru, each a
read-through cache over a Core select on an ``AsyncEngine``, without invalidation.
The sync ``dal`` row joins the hit table: the async hit is measured against it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import statistics
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from time import perf_counter_ns
from typing import Any, ClassVar, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from .base import Case, Competitor, Kind, Tally, Unavailable, Workload, competitor, workload
from .config import Env
from .data import TABLE_NAME, Item, item_table, statements
from .drivers import MAX_OVERFLOW, SQLITE_BUSY_TIMEOUT, QueryCounter
from .measure import run_coroutines, run_mixed_async, timed_calls_async
from .results import Rule, Sample, p50_ratio, stale, throughput_ratio
from .workloads import hit_sample, hit_slices, mixed_plans, mixed_sample

__all__ = ["ASYNC_FLOORS", "AsyncCompetitor", "async_url"]

T = TypeVar("T")
CACHE, NO_CACHE, MISS_FLOOR = Kind.CACHE, Kind.NO_CACHE, Kind.MISS_FLOOR
AsyncRead = Callable[[int], Awaitable[Any]]

#: backend -> its asyncio driver where ``dal.AsyncDatabase`` takes none (yet).
ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite", "mysql": "asyncmy"}


def async_driver(backend: str) -> str:
    """The asyncio driver the async workload uses for ``backend``: dal's default for it."""
    from dal.config import SUPPORTED_ASYNC

    return SUPPORTED_ASYNC.get(backend, (ASYNC_DRIVERS[backend],))[0]


def async_url(url: str) -> str:
    """The run's URL with its backend's asyncio driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = async_driver(backend)
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def make_async_engine(url: str, *, pool_size: int | None) -> AsyncEngine:
    """``drivers.make_engine``'s async twin: the same pool limits and SQLite settings."""
    from dal.drivers import sqlite_pragmas

    kwargs: dict[str, Any] = (
        {"poolclass": NullPool}
        if pool_size is None
        # Named: on older SQLAlchemy 2.0 releases (2.0.4 among them) aiosqlite defaults to NullPool.
        else {
            "poolclass": AsyncAdaptedQueuePool,
            "pool_size": pool_size,
            "max_overflow": MAX_OVERFLOW,
        }
    )
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    engine = create_async_engine(async_url(url), **kwargs)
    if sqlite:
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


# --- the floor of an async miss, per driver ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class AsyncFloor:
    #: How the statement is sent, for the report's label.
    how: str
    #: Makes ``read(key)`` on a driver connection that it may hold until the run ends.
    prepare: Callable[[Any], Awaitable[AsyncRead]]


def _columns() -> str:
    return ", ".join(c.name for c in item_table().columns)


async def _asyncpg(connection: Any) -> AsyncRead:
    # A prepared statement, outside any transaction: Bind/Execute per key.
    statement = await connection.prepare(f"SELECT {_columns()} FROM {TABLE_NAME} WHERE id = $1")
    return statement.fetchrow  # type: ignore[no-any-return]


async def _aiosqlite(connection: Any) -> AsyncRead:
    # One hop to aiosqlite's thread per read, its sqlite3 statement cache keyed by the text.
    sql = f"SELECT {_columns()} FROM {TABLE_NAME} WHERE id = ?"
    fetch = connection.execute_fetchall

    async def read(key: int) -> Any:
        rows = await fetch(sql, (key,))
        return rows[0] if rows else None

    return read


async def _mysql(connection: Any) -> AsyncRead:
    await connection.autocommit(True)
    sql = f"SELECT {_columns()} FROM {TABLE_NAME} WHERE id = %s"
    cursor = connection.cursor()

    async def read(key: int) -> Any:
        await cursor.execute(sql, (key,))
        return await cursor.fetchone()

    return read


#: By SQLAlchemy's name for the async driver.
ASYNC_FLOORS: dict[str, AsyncFloor] = {
    "asyncpg": AsyncFloor("asyncpg's prepared fetchrow", _asyncpg),
    "aiosqlite": AsyncFloor("aiosqlite's execute_fetchall", _aiosqlite),
    "asyncmy": AsyncFloor("asyncmy's cursor, autocommit", _mysql),
}


# --- the competitors -------------------------------------------------------------------


class AsyncCompetitor(Competitor):
    """A competitor whose ``read``/``write`` are coroutine functions, on the run's loop.

    Subclasses make their engines and caches in ``areset`` (on the loop) and release
    them in ``aclose``; ``engine`` is theirs, counted like the sync baselines' engine.
    """

    aio = True
    #: The library whose import decides whether it runs.
    module: ClassVar[str | None] = None

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.engine: AsyncEngine | None = None
        self._counter: QueryCounter | None = None

    @classmethod
    def check_available(cls) -> None:
        if cls.module is not None:
            try:
                importlib.import_module(cls.module)
            except ImportError as exc:
                raise Unavailable(f"{cls.module} is not installed ({exc})") from exc

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.env.loop.run_until_complete(coroutine)

    def reset(self) -> None:
        self.run(self._reset())

    async def _reset(self) -> None:
        await self.aclose()
        self.engine = make_async_engine(self.env.url, pool_size=self.env.config.pool_size)
        self._counter = QueryCounter(self.engine.sync_engine)
        await self.areset()

    async def areset(self) -> None:
        """Make the cache and bind ``read`` and ``write``."""

    def prime(self, keys: Iterable[int]) -> None:
        self.run(_each(self.read, keys))

    def warm(self, threads: int) -> None:
        self.run(self._warm(threads))

    async def _warm(self, workers: int) -> None:
        engine = self.engine
        if engine is not None:  # the pool keeps this many idle
            held = [engine.connect() for _ in range(min(workers, self.env.config.pool_size))]
            for conn in held:
                await conn.start()
            for conn in held:
                await conn.close()
        await _each(self.read, self.env.keys.warm)

    @property
    def pooled_engine(self) -> None:
        return None

    @property
    def queries(self) -> int:
        return 0 if self._counter is None else self._counter.count

    def close(self) -> None:
        self.run(self.aclose())

    async def aclose(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = self._counter = None

    def core(
        self,
    ) -> tuple[Callable[[int], Coroutine[Any, Any, Any]], Callable[[int, int], Awaitable[None]]]:
        """A Core select by key over the pool (counted as a miss) and the version update."""
        engine = self.engine
        assert engine is not None
        by_key, _, set_version = statements()

        async def load(key: int) -> Any:
            self._loads.add(1)
            async with engine.connect() as conn:
                return (await conn.execute(by_key, {"key": key})).first()

        async def write(key: int, version: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(set_version, {"key": key, "new": version})

        return load, write


async def _each(read: AsyncRead, keys: Iterable[int]) -> None:
    for key in keys:
        await read(key)


@competitor
class DalAsync(AsyncCompetitor):
    name = "dal-async"
    label = "dal AsyncRepository get / update"
    kind = CACHE
    colour = "#ff7f0e"

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._db: Any = None

    @classmethod
    def check_available(cls) -> None:
        super().check_available()
        try:
            async_repository_class()
        except (ImportError, AttributeError) as exc:
            raise Unavailable(f"dal.AsyncRepository does not import ({exc})") from exc

    @classmethod
    def supported(cls, env: Env) -> bool:
        """Whether ``dal.AsyncDatabase`` takes an asyncio driver for the run's backend."""
        from dal.config import SUPPORTED_ASYNC

        return env.engine.dialect.name in SUPPORTED_ASYNC

    async def _reset(self) -> None:
        import dal

        await self.aclose()
        config = self.env.config
        self._db = dal.AsyncDatabase(  # a new, empty cache and zeroed counters
            async_url(self.env.url),
            cache_size=config.cache_size,
            pool_size=config.pool_size,
            max_overflow=MAX_OVERFLOW,
        )
        self.engine = self._db.engine
        self._counter = QueryCounter(self._db.engine.sync_engine)
        repository = async_repository_class()(self._db)
        self.read = repository.get

        async def write(key: int, version: int) -> None:
            await repository.update(key, version=version)

        self.write = write  # type: ignore[assignment]

    @property
    def misses(self) -> int:
        return 0 if self._db is None else int(self._db.stats()["cache"]["misses"])

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = self.engine = self._counter = None


@functools.cache
def async_repository_class() -> type[Any]:
    import dal

    class AsyncItems(dal.AsyncRepository[Item]):  # type: ignore[misc,name-defined,unused-ignore]
        model = Item

    return AsyncItems


@competitor
class AsyncSessionGet(AsyncCompetitor):
    name = "orm-async"
    label = "no cache: AsyncSession.get, a session per read"
    kind = NO_CACHE
    colour = "#c49c94"

    async def areset(self) -> None:
        engine = self.engine
        _, write = self.core()

        async def read(key: int) -> Item | None:
            async with AsyncSession(engine) as session:
                return await session.get(Item, key)

        self.read, self.write = read, write  # type: ignore[assignment]


@competitor
class AsyncRawFloor(AsyncCompetitor):
    name = "raw-async"
    label = "floor: the async driver's own pk select on a held connection"
    kind = MISS_FLOOR
    colour = "#252525"

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._floor = ASYNC_FLOORS[async_driver(env.engine.dialect.name)]
        self.label = f"{self.label}, {self._floor.how}"  # type: ignore[misc]
        self._held: list[Any] = []
        self._reads = Tally()

    @classmethod
    def supported(cls, env: Env) -> bool:
        return async_driver(env.engine.dialect.name) in ASYNC_FLOORS

    async def _reset(self) -> None:
        if self.engine is None:  # one held connection for the whole case
            self.engine = make_async_engine(self.env.url, pool_size=None)
            conn = await self.engine.connect()
            raw = await conn.get_raw_connection()
            self._held.append(conn)
            read = self._reads.counting(await self._floor.prepare(raw.driver_connection))
            self.read = read

    @property
    def queries(self) -> int:
        return self._reads.value  # one statement per read, nothing else

    @property
    def misses(self) -> int:
        return 0

    def close(self) -> None:
        self.run(self._close())

    async def _close(self) -> None:
        for conn in self._held:
            await conn.close()
        self._held.clear()
        await self.aclose()


@competitor
class Cashews(AsyncCompetitor):
    name = "cashews"
    label = "cashews @cache (mem://, LRU-bounded), no invalidation"
    kind = CACHE
    module = "cashews"
    library = "cashews"
    colour = "#e7ba52"

    async def areset(self) -> None:
        from cashews import Cache

        cache = Cache()
        cache.setup(f"mem://?size={self.env.config.cache_size}")
        load, self.write = self.core()  # type: ignore[assignment]
        self._cache = cache

        @cache(ttl="1h", key="item:{key}")
        async def get(key: int) -> Any:
            return await load(key)

        self.read = get

    async def aclose(self) -> None:
        cache = getattr(self, "_cache", None)
        if cache is not None:
            await cache.close()
        await super().aclose()


@competitor
class Aiocache(AsyncCompetitor):
    name = "aiocache"
    label = "aiocache @cached (SimpleMemoryCache, unbounded), no invalidation"
    kind = CACHE
    module = "aiocache"
    library = "aiocache"
    colour = "#bd9e39"

    async def areset(self) -> None:
        from aiocache import SimpleMemoryCache, cached

        load, self.write = self.core()  # type: ignore[assignment]

        @cached(cache=SimpleMemoryCache)  # type: ignore[untyped-decorator,unused-ignore]
        async def get(key: int) -> Any:
            return await load(key)

        self.read = get


@competitor
class AsyncLru(AsyncCompetitor):
    name = "async-lru"
    label = "async-lru @alru_cache(maxsize=cache_size), no invalidation"
    kind = CACHE
    module = "async_lru"
    library = "async-lru"
    colour = "#8c6d31"

    async def areset(self) -> None:
        from async_lru import alru_cache

        load, self.write = self.core()  # type: ignore[assignment]
        self.read = alru_cache(maxsize=self.env.config.cache_size)(load)


# --- the workload ----------------------------------------------------------------------

#: Coroutines of the two zipf cases, and of the stampede.
COROUTINES = (1, 64)
STAMPEDE_COROUTINES = 64
#: The share of writes in the zipf cases, whose reads are checked for staleness.
WRITE_SHARE = 0.05
_VERSIONS_PER_RUN = 10**9


@workload
class Async(Workload):
    name = "async"
    summary = (
        "asyncio: hit, miss, zipf with writes (1 and 64 coroutines, stale reads counted), "
        "a 64-coroutine stampede"
    )
    rules = (
        Rule(
            "dal-async hit within 1.5x the sync get hit (dal / dal-async)",
            throughput_ratio("dal", "dal-async"),
            "<=",
            1.5,
            cases=("hit",),
        ),
        Rule(
            "dal-async hit at least 15x faster than cashews'",
            throughput_ratio("dal-async", "cashews"),
            ">=",
            15.0,
            cases=("hit",),
        ),
        Rule(
            "dal-async hit at least 15x faster than aiocache's",
            throughput_ratio("dal-async", "aiocache"),
            ">=",
            15.0,
            cases=("hit",),
        ),
        Rule(
            "dal-async miss p50 at most 1.2x the raw async driver's",
            p50_ratio("dal-async", "raw-async"),
            "<=",
            1.2,
            cases=("miss",),
        ),
        Rule(
            "dal-async miss p50 at most 0.6x AsyncSession.get's",
            p50_ratio("dal-async", "orm-async"),
            "<=",
            0.6,
            cases=("miss",),
        ),
        Rule(
            "dal-async serves no stale read (all repetitions)",
            stale("dal-async"),
            "==",
            0,
            "stale reads",
        ),
        Rule(
            "dal-async: one query for a cold key (most in any repetition)",
            lambda rows: rows["dal-async"].queries_max if "dal-async" in rows else None,
            "==",
            1,
            unit="queries",
            cases=("stampede",),
        ),
    )

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._runs = itertools.count(1)
        self._where = f"{async_url(env.url).partition(':')[0]}, {env.config.pools}"

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.env.loop.run_until_complete(coroutine)

    def cases(self) -> list[Case]:
        driver = async_driver(self.env.engine.dialect.name)
        for module in ("greenlet", driver):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                print(
                    f"skipping async: {module} is not installed ({exc}); "
                    "pip install 'sqlalchemy-dal[async]'",
                    file=sys.stderr,
                    flush=True,
                )
                return []
        return [self._hit(), self._miss(), *map(self._zipf, COROUTINES), self._stampede()]

    def _hit(self) -> Case:
        config = self.env.config
        hot = self.env.keys.ranked[: config.hot_keys]
        requests = self.env.keys.uniform(hot, config.hit_requests, "hit")

        def measure(competitor: Competitor, rep: int) -> Sample:
            if competitor.aio:
                return self.run(_hit_sample_async(competitor.read, requests))
            return hit_sample(competitor.read, requests)

        return Case(
            workload=self.name,
            name="hit",
            describe=(
                f"{len(requests):,} reads over {len(hot):,} cached keys, 1 coroutine "
                f"awaiting each ({self._where}); the sync dal row for reference"
            ),
            threads=1,
            competitors=(*self.competitors(CACHE, aio=True), "dal"),
            measure=measure,
            prepare=lambda competitor: competitor.prime(hot),
            reference="dal-async",
        )

    def _miss(self) -> Case:
        keys = self.env.keys.distinct(self.env.config.miss_keys, "async miss")

        def measure(competitor: Competitor, rep: int) -> Sample:
            return self.run(_read_sample(competitor.read, keys))

        return Case(
            workload=self.name,
            name="miss",
            describe=f"{len(keys):,} cold keys read once each, 1 coroutine ({self._where})",
            threads=1,
            competitors=self.competitors(CACHE, NO_CACHE, MISS_FLOOR, aio=True),
            measure=measure,
            reference="dal-async",
        )

    def _zipf(self, coroutines: int) -> Case:
        config = self.env.config
        total = config.mixed_requests
        plans = mixed_plans(
            self.env.keys, config.zipf, f"async zipf {coroutines}", WRITE_SHARE, coroutines, total
        )

        def measure(competitor: Competitor, rep: int) -> Sample:
            first = next(self._runs) * _VERSIONS_PER_RUN
            read, write = competitor.read, competitor.write

            def work(i: int) -> Awaitable[Any]:
                return run_mixed_async(read, write, plans[i], first)  # type: ignore[arg-type]

            return mixed_sample(*self.run(run_coroutines(coroutines, work)))

        writes = sum(is_write for plan in plans for is_write, _ in plan)
        return Case(
            workload=self.name,
            name=f"zipf {coroutines} coroutine" + ("s" if coroutines > 1 else ""),
            describe=(
                f"{total:,} requests ({writes:,} writes), s={config.zipf}, cache of "
                f"{config.cache_size:,}, {coroutines} coroutine(s) on one loop "
                f"({self._where}); latency covers reads and writes"
            ),
            threads=coroutines,
            competitors=self.competitors(CACHE, NO_CACHE, aio=True),
            measure=measure,
            reference="dal-async",
            counts="stale_reads",
        )

    def _stampede(self) -> Case:
        coroutines = STAMPEDE_COROUTINES
        cold = self.env.keys.distinct(self.env.config.repeat, "async stampede")

        def measure(competitor: Competitor, rep: int) -> Sample:
            key = (cold[rep],)
            read = competitor.read

            def work(i: int) -> Awaitable[Any]:
                return timed_calls_async(read, key)

            wall, latencies = self.run(run_coroutines(coroutines, work))
            return Sample(
                ops=coroutines,
                wall_ns=wall,
                latencies_ns=[t for each in latencies for t in each],
                reads=coroutines,
            )

        return Case(
            workload=self.name,
            name="stampede",
            describe=(
                f"{coroutines} coroutines started in one turn of the loop read one cold key "
                f"({self._where}); queries per run"
            ),
            threads=coroutines,
            competitors=self.competitors(CACHE, NO_CACHE, aio=True),
            measure=measure,
            reference="dal-async",
            counts="queries",
        )


async def _hit_sample_async(read: AsyncRead, requests: Sequence[int]) -> Sample:
    """``workloads.hit_sample``, awaited: throughput from untimed slices, latency per call."""
    walls = []
    for part in hit_slices(requests):
        start = perf_counter_ns()
        await _each(read, part)
        walls.append(perf_counter_ns() - start)
    return Sample(
        ops=len(requests),
        wall_ns=int(statistics.median(walls) * len(walls)),
        latencies_ns=await timed_calls_async(read, requests),
        reads=2 * len(requests),
    )


async def _read_sample(read: AsyncRead, keys: Sequence[int]) -> Sample:
    """Each key read once, each call timed, by one coroutine."""
    wall, (latencies,) = await run_coroutines(1, lambda i: timed_calls_async(read, keys))
    return Sample(ops=len(keys), wall_ns=wall, latencies_ns=latencies, reads=len(keys))
