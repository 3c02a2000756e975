"""The sync competitors: each a way of reading (and writing) the benchmark's rows.

Every competitor but dal reads through the same SQLAlchemy Core statement on the
run's pooled engine and writes with a Core UPDATE on it; dal reads and writes
through its repository on its own ``Database``. The interface is ``base.Competitor``;
``@competitor`` puts a class in every table of its ``kind``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import cachetools
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .base import Competitor, Kind, Unavailable, competitor
from .config import Env
from .data import Item, Read, core_read, core_read_many, core_write
from .drivers import FLOORS, MAX_OVERFLOW, QueryCounter, Reader, make_engine

__all__ = ["repository_class"]


@competitor
class LockedLRUFloor(Competitor):
    name = "lru-floor"
    label = "floor: bare LRUCache lookup under a threading.Lock, rows preloaded"
    kind = Kind.HIT_FLOOR
    colour = "#7f7f7f"

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._rows: dict[int, Any] = {}  # loaded once per case: reads never change them

    def reset(self) -> None:
        self._fill(self.env.config.cache_size, ())

    def prime(self, keys: Iterable[int]) -> None:
        wanted = sorted(set(keys))
        self._fill(max(self.env.config.cache_size, len(wanted)), wanted)

    def warm(self, threads: int) -> None:
        """Nothing to warm: the floor never touches the database."""

    def _fill(self, size: int, keys: Sequence[int]) -> None:
        missing = [key for key in keys if key not in self._rows]
        load_many = core_read_many(self.env.engine)
        for start in range(0, len(missing), 500):
            self._rows.update(load_many(missing[start : start + 500]))
        cache: cachetools.LRUCache[int, Any] = cachetools.LRUCache(size)
        cache.update((key, self._rows[key]) for key in keys)
        lock = threading.Lock()

        def read(key: int) -> Any:
            with lock:
                return cache[key]

        self.read = read


@competitor
class RawFloor(Competitor):
    name = "raw"
    label = "floor: the driver's own pk select on a held connection"
    kind = Kind.MISS_FLOOR
    colour = "#4d4d4d"

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._floor = FLOORS[env.engine.dialect.driver]
        self.label = f"{self.label}, {self._floor.how}"  # type: ignore[misc]
        # Its own engine: the held connections must not starve the shared pool.
        self._engine = make_engine(env.url, pool_size=None)
        self._counter = QueryCounter(self._engine)
        self._held: list[tuple[Any, Reader]] = []

    @classmethod
    def supported(cls, env: Env) -> bool:
        """Whether ``drivers.FLOORS`` has an entry for the run's driver."""
        return env.engine.dialect.driver in FLOORS

    def warm(self, threads: int) -> None:
        """One prepared connection per thread (and the caller's), then the warm keys."""
        while len(self._held) < threads + 1:
            conn = self._engine.raw_connection()
            self._held.append((conn, self._floor.prepare(conn.dbapi_connection)))
        free = [reader.read for _, reader in self._held]
        lock = threading.Lock()
        local = threading.local()

        def read(key: int) -> Any:
            mine = getattr(local, "read", None)
            if mine is None:  # a thread's first read takes a connection of its own
                with lock:
                    mine = local.read = free.pop()
            return mine(key)

        self.read = read
        for key in self.env.keys.warm:
            read(key)

    @property
    def pooled_engine(self) -> Engine | None:
        return None

    @property
    def queries(self) -> int:
        return self._counter.count

    def close(self) -> None:
        for conn, reader in self._held:
            with contextlib.suppress(Exception):
                reader.close()
            conn.close()
        self._held.clear()
        self._engine.dispose()


@competitor
class Dal(Competitor):
    name = "dal"
    label = "dal repository get / get_many / update"
    kind = Kind.CACHE
    colour = "#d62728"
    library = "sqlalchemy-dal"
    batches = True

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self._db: Any = None
        self._counter: QueryCounter | None = None

    @classmethod
    def check_available(cls) -> None:
        try:
            repository_class()
        except (ImportError, AttributeError) as exc:
            raise Unavailable(f"dal does not import ({exc})") from exc

    def reset(self) -> None:
        import dal

        # A new Database: a new, empty cache and zeroed counters, nothing carried over.
        self.close()
        config = self.env.config
        self._db = dal.Database(
            self.env.url,
            cache_size=config.cache_size,
            pool_size=config.pool_size,
            max_overflow=MAX_OVERFLOW,
        )
        self._counter = QueryCounter(self._db.engine)
        repository = repository_class()(self._db)
        self.read = repository.get
        self.read_many = repository.get_many

        def write(key: int, version: int) -> None:
            repository.update(key, version=version)

        self.write = write

    @property
    def pooled_engine(self) -> Engine | None:
        return None if self._db is None else self._db.engine

    @property
    def queries(self) -> int:
        return 0 if self._counter is None else self._counter.count

    @property
    def misses(self) -> int:
        return 0 if self._db is None else int(self._db.stats()["cache"]["misses"])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = self._counter = None


@functools.cache
def repository_class() -> type[Any]:
    import dal

    class Items(dal.Repository[Item]):  # type: ignore[misc,name-defined,unused-ignore]
        model = Item

    return Items


@competitor
class CachetoolsCached(Competitor):
    name = "cachetools"
    label = "cachetools.cached(LRUCache, lock=Lock()), no invalidation"
    kind = Kind.CACHE
    colour = "#1f77b4"
    library = "cachetools"

    def reset(self) -> None:
        engine = self.env.engine
        cache: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(self.env.config.cache_size)
        load = self._loads.counting(core_read(engine))
        self.read = cachetools.cached(cache, lock=threading.Lock())(load)
        self.write = core_write(engine)


class _MethodLoader:
    """``cachetools.cachedmethod``'s shape: the cache and lock live on the instance."""

    def __init__(self, load: Read, size: int) -> None:
        self.cache: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(size)
        self.lock = threading.Lock()
        self._load = load

    @cachetools.cachedmethod(lambda self: self.cache, lock=lambda self: self.lock)
    def get(self, key: int) -> Any:
        return self._load(key)


@competitor
class CachetoolsMethod(Competitor):
    name = "cachedmethod"
    label = "cachetools.cachedmethod(LRUCache, lock=Lock()), no invalidation"
    kind = Kind.CACHE
    only = frozenset({"hit"})  # the same loads as cachetools.cached: only its hit differs
    colour = "#17becf"

    def reset(self) -> None:
        load = self._loads.counting(core_read(self.env.engine))
        self.read = _MethodLoader(load, self.env.config.cache_size).get
        self.write = core_write(self.env.engine)


class _LockedLRU:
    """An LRUCache under a lock: dogpile's memory backend takes none, and threads share it."""

    def __init__(self, size: int) -> None:
        self._cache: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(size)
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._cache.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            self._cache[key] = value

    def pop(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._cache.pop(key, default)


@competitor
class Dogpile(Competitor):
    name = "dogpile"
    label = "dogpile.cache memory region (LRU-bounded), invalidate() after each write"
    kind = Kind.CACHE
    colour = "#9467bd"
    library = "dogpile.cache"
    batches = True

    @classmethod
    def check_available(cls) -> None:
        try:
            import dogpile.cache  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"dogpile.cache is not installed ({exc})") from exc

    def reset(self) -> None:
        from dogpile.cache import make_region

        engine = self.env.engine
        region = make_region().configure(
            "dogpile.cache.memory",
            arguments={"cache_dict": _LockedLRU(self.env.config.cache_size)},
        )
        load = self._loads.counting(core_read(engine))
        load_many = core_read_many(engine)
        loads = self._loads

        def fetch(key: int) -> Any:
            return load(key)

        def fetch_many(*keys: int) -> dict[int, Any]:
            loads.add(len(keys))  # dogpile asks only for the keys it misses
            rows = load_many(keys)
            return {key: rows.get(key) for key in keys}

        # dogpile's decorators, applied as a user would with ``@``; typed Any because
        # their stubs know neither ``invalidate`` nor ``asdict=True``'s dict result.
        get: Any = region.cache_on_arguments()(fetch)
        get_many: Any = region.cache_multi_on_arguments(asdict=True)(fetch_many)  # type: ignore[arg-type]

        write_row = core_write(engine)

        def write(key: int, version: int) -> None:
            write_row(key, version)
            get.invalidate(key)  # after the commit: the usual way to keep dogpile fresh

        self.read = get
        self.read_many = lambda keys: get_many(*keys)
        self.write = write


@competitor
class NoCacheCore(Competitor):
    name = "core"
    label = "no cache: Core select over the pool"
    kind = Kind.NO_CACHE
    colour = "#2ca02c"
    batches = True

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.engine = self._engine()
        self.read = core_read(self.engine)
        self.read_many = core_read_many(self.engine)
        self.write = core_write(self.engine)

    def _engine(self) -> Engine:
        return self.env.engine


@competitor
class NoCacheORM(Competitor):
    name = "orm"
    label = "no cache: ORM Session.get, a session per read"
    kind = Kind.NO_CACHE
    only = frozenset({"miss"})
    colour = "#8c564b"
    batches = True

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        engine = env.engine

        def read(key: int) -> Item | None:
            with Session(engine) as session:
                return session.get(Item, key)

        def read_many(keys: Sequence[int]) -> dict[int, Item]:
            with Session(engine) as session:
                items = session.scalars(select(Item).where(Item.id.in_(keys)))
                return {item.id: item for item in items}

        self.read, self.read_many, self.write = read, read_many, core_write(engine)


@competitor
class NoCacheNullPool(NoCacheCore):
    name = "core-nullpool"
    label = "no cache: Core select, NullPool (a connection per query)"
    only = frozenset({"pool"})
    colour = "#e377c2"

    def _engine(self) -> Engine:
        engine = make_engine(self.env.url, pool_size=None)
        self._counter = QueryCounter(engine)
        return engine

    @property
    def queries(self) -> int:
        return self._counter.count

    @property
    def pooled_engine(self) -> Engine | None:
        return None  # nothing to keep: every query connects

    def close(self) -> None:
        self.engine.dispose()
