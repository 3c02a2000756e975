"""cached_query: cache a function's result per arguments; writes to its tables drop it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from sqlalchemy import Connection, Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Query, Session

from .database import Database
from .errors import ConfigError
from .frozen import freeze, thaw
from .repository_base import DEFAULT, CacheInfo
from .store.keys import ArgumentKey, table_key
from .tracking import catalog

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .aio.database import AsyncDatabase
    from .aio.query import AsyncCachedQuery

__all__ = ["CachedQuery", "cached_query"]

P = ParamSpec("P")
R = TypeVar("R")


@overload
def cached_query(
    db: Database, *, depends_on: Iterable[Any], ttl: float | None = ...
) -> Callable[[Callable[Concatenate[Session, P], R]], CachedQuery[P, R]]: ...


@overload
def cached_query(
    db: AsyncDatabase, *, depends_on: Iterable[Any], ttl: float | None = ...
) -> Callable[[Callable[Concatenate[AsyncSession, P], Awaitable[R]]], AsyncCachedQuery[P, R]]: ...


def cached_query(db: Any, *, depends_on: Iterable[Any], ttl: Any = DEFAULT) -> Any:
    """Cache ``fn(session, *args)`` per arguments; a committed write to any table in
    ``depends_on`` (models, Tables or table names) drops its results.

    The function receives a Session first and callers omit it. It should only read.
    With an AsyncDatabase it is an ``async def`` that receives an AsyncSession, and
    calls of it are awaited.
    """
    asynchronous = not isinstance(db, Database)
    if asynchronous:
        from .aio.database import AsyncDatabase
        from .aio.query import AsyncCachedQuery

        if not isinstance(db, AsyncDatabase):
            raise ConfigError(
                f"cached_query takes a dal.Database or a dal.AsyncDatabase, not {db!r}"
            )
    tables, unchecked = _table_names(db, depends_on)
    if ttl is DEFAULT:
        ttl = db.settings.ttl
    elif ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0
    ):
        raise ConfigError(f"cached_query ttl={ttl!r} must be a positive number or None")

    def decorate(fn: Callable[..., Any]) -> Any:
        _check_function(fn, asynchronous)
        kind = AsyncCachedQuery if asynchronous else CachedQuery
        return kind(db, fn, tables, ttl, unchecked)

    return decorate


class CachedQueryBase(Generic[P, R]):
    """What a cached function is besides its calls: its key, namespace and counters."""

    def __init__(
        self,
        db: Any,
        fn: Callable[..., Any],
        tables: frozenset[str],
        ttl: float | None,
        unchecked: tuple[str, ...] = (),
    ) -> None:
        self._db = db
        #: Table names no known model maps: checked against the database at the first load.
        self._unchecked = unchecked
        self._fn = fn
        self._store = db._store
        self._key = ArgumentKey(fn, skip=1)
        name = getattr(fn, "__qualname__", repr(fn))
        # Keyed by this object: the same function cached twice is two caches.
        self._ns = db._store.namespace(self, name, tables, ttl)
        functools.update_wrapper(cast(Any, self), fn)
        # What callers pass: FastAPI's Depends and documentation tools read this.
        self.__signature__ = _callers_signature(fn)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Forget the result cached for these arguments."""
        self._store.drop(self._ns, (self._ns, self._key(args, kwargs)))

    def cache_clear(self) -> None:
        """Forget every result of this function."""
        self._store.drop(self._ns)

    def cache_info(self) -> CacheInfo:
        """Hits, misses and entries; ``maxsize`` is the Database's ``cache_size``, which
        bounds this function's entries and is shared with every other cache of it."""
        ns = self._ns
        with self._store.lock:
            return CacheInfo(ns.hits, ns.misses, self._store.max_entries, len(ns.entries))

    def _freeze(self, value: Any) -> Any:
        """``freeze(value)``, or a ConfigError naming the function if it cannot be stored."""
        lazy = isinstance(value, (Iterator, Query))  # Result, ScalarResult, generators
        if not lazy:
            try:
                return freeze(value)
            except Exception as exc:  # deepcopy of something that holds a socket, a lock...
                raise self._unstorable(value, f"it cannot be copied ({exc})") from exc
        raise self._unstorable(value, "it is a lazy result that would outlive its session")

    def _unstorable(self, value: Any, why: str) -> ConfigError:
        module, kind = type(value).__module__, type(value).__qualname__
        kind = kind if module == "builtins" else f"{module}.{kind}"
        return ConfigError(
            f"cached_query {self._ns.name} returned a {kind}, which cannot be cached: {why}; "
            "return plain values, e.g. a list (`.all()`), a tuple or a dict"
        )

    def _check_tables(self, conn: Connection) -> None:
        """Refuse names in ``depends_on`` that no table or view of the database has."""
        existing = catalog.table_names(conn)
        missing = [name for name in self._unchecked if table_key(name) not in existing]
        if missing:
            raise ConfigError(
                f"cached_query {self._ns.name}: depends_on names {', '.join(map(repr, missing))},"
                f" which is no table or view of the database (it has: {', '.join(existing)})"
            )
        self._unchecked = ()

    def __repr__(self) -> str:
        return f"<cached_query {self._ns.name} on {sorted(self._ns.tables)}>"


class CachedQuery(CachedQueryBase[P, R]):
    """A cached function: call it as the original minus its Session argument."""

    _db: Database
    _fn: Callable[Concatenate[Session, P], R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = (self._ns, self._key(args, kwargs))
        if self._db._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:  # see the session's own writes; cache nothing
                return self._in_session(session, args, kwargs)
        stored = self._store.get_or_load(self._ns, key, partial(self._load, args, kwargs))
        return thaw(stored)  # type: ignore[no-any-return]

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Load the result for these arguments now, store it, and return it."""
        key = (self._ns, self._key(args, kwargs))
        # Dropping revokes a load in flight: the value stored is one read from here on.
        self._store.drop(self._ns, key)
        return thaw(self._store.get_or_load(self._ns, key, partial(self._load, args, kwargs)))  # type: ignore[no-any-return]

    def set(self, value: R, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as the result for these arguments (until a write drops it)."""
        if self._unchecked:
            self._db._read(self._check_tables)
        self._store.put(self._ns, (self._ns, self._key(args, kwargs)), self._freeze(value))

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function on a fresh session, bypassing the cache (nothing is stored)."""
        if self._db._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:
                return self._in_session(session, args, kwargs)
        return thaw(self._load(args, kwargs))  # type: ignore[no-any-return]

    def _in_session(self, session: Session, args: Any, kwargs: Any) -> R:
        """The function run in the caller's writing session: its writes seen, nothing stored."""
        with self._db._boundary():
            value = self._fn(session, *args, **kwargs)
        return thaw(self._freeze(value))  # type: ignore[no-any-return]

    def _load(self, args: Any, kwargs: Any) -> Any:
        if self._unchecked:
            self._db._read(self._check_tables)
        # Frozen inside the session, while ORM instances can still load attributes.
        return self._db._read_in_session(lambda s: self._freeze(self._fn(s, *args, **kwargs)))


def _callers_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s signature without its first (Session) parameter, annotations resolved."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (
        NameError,
        AttributeError,
        TypeError,
        SyntaxError,
    ):  # an annotation that names what the module cannot see at run time
        signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[1:]
    return signature.replace(parameters=parameters)


def _check_function(fn: Callable[..., Any], asynchronous: bool) -> None:
    """Refuse, when decorated, a function dal could not call as a cached query."""
    name = getattr(fn, "__qualname__", repr(fn))
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise ConfigError(
            f"cached_query {name} is a generator function: its result would be read after "
            "its session closed; return a list instead"
        )
    if asynchronous and not inspect.iscoroutinefunction(fn):
        raise ConfigError(
            f"cached_query {name} is a plain def, and the Database is an AsyncDatabase: "
            "use an async def taking an AsyncSession, or a dal.Database"
        )
    if not asynchronous and inspect.iscoroutinefunction(fn):
        raise ConfigError(
            f"cached_query {name} is an async function, and the Database is synchronous: "
            "use a def, or an AsyncDatabase"
        )
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cached_query {name}: cannot read its signature ({exc})") from exc
    takes_session = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    if not params or params[0].kind not in takes_session:
        short = getattr(fn, "__name__", "f")
        session, prefix = ("an AsyncSession", "async ") if asynchronous else ("a Session", "")
        raise ConfigError(
            f"cached_query {name} takes no session parameter: dal passes {session} as "
            f"the first positional argument, e.g. {prefix}def {short}(session, ...)"
        )


def _table_names(db: Any, depends_on: Iterable[Any]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The table keys ``depends_on`` names, and the names no model's MetaData knows.

    Names are matched as the database compares them (``keys.table_key``): ``"USERS"``
    and ``"public.users"`` are the table ``users``. A name no watched MetaData has is
    checked against the database at the first load, when dal first talks to it.
    """
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Iterable):
        raise ConfigError("depends_on takes a list of models, Tables or table names")
    names = set()
    strings = []
    for item in depends_on:
        if isinstance(item, str):
            if not table_key(item):
                raise ConfigError(f"depends_on: {item!r} is no table name")
            strings.append(item)
            continue
        table = (
            item
            if isinstance(item, Table)
            else getattr(sa_inspect(item, raiseerr=False), "local_table", None)
        )
        if not isinstance(table, Table):
            raise ConfigError(
                f"depends_on: {item!r} is not a mapped model, a Table or a table name"
            )
        db._tracker.watch(table)
        names.add(table_key(table.name))
    known = db._tracker.relations.known
    names.update(table_key(name) for name in strings)
    return frozenset(names), tuple(n for n in strings if table_key(n) not in known)
