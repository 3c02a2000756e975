"""AsyncRepository[T]: Repository's reads and writes, awaited, over the same cache.

Everything a repository does is Repository's (``dal.repository_base``); here it is
awaited: a miss through ``dal.aio.loads`` (one load per key, shared with threads),
database work through the AsyncDatabase. A hit is answered before the first await,
so it never suspends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from functools import partial
from threading import get_ident
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, Connection
from sqlalchemy.orm import Session

from ..records import Record
from ..repository import _hit_path as sync_hit_path
from ..repository_base import OrderBy, RepositoryBase, unlearned
from ..store.cache import Namespace
from ..store.flights import MISSING
from . import loads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .database import AsyncDatabase

__all__ = ["AsyncRepository"]

T = TypeVar("T")


class AsyncRepository(RepositoryBase[T]):
    """Reads and writes of one mapped model through an AsyncDatabase's cache, awaited.

    Subclass it as a Repository (``class Users(dal.AsyncRepository[User])``). A hit
    returns without suspending; a miss waits on the event loop, never blocking it.
    ``cache_info()`` and ``cache_clear()`` are plain calls.
    """

    #: The mapped class; inferred from ``AsyncRepository[User]`` when not set.
    model: type[T]
    _kind: ClassVar[str] = "AsyncRepository"
    _asynchronous: ClassVar[bool] = True
    _db: AsyncDatabase

    def __init__(self, db: AsyncDatabase) -> None:
        super().__init__(db)
        if type(self).get is AsyncRepository.get:
            # As Repository's: hits answered by a closure over what they touch.
            self.__dict__["get"] = _hit_path(self, partial(AsyncRepository.get, self))

    @staticmethod
    def _learner(db: Any, read: Callable[[Connection], Any]) -> Callable[[], Any] | None:
        return unlearned  # learned by awaiting, before the first lookup (``_key``)

    # -- reads ----------------------------------------------------------------------

    async def get(self, pk: Any) -> Record[T] | None:
        """The row with primary key ``pk``, or None (an absent row is cached too)."""
        self._db._check_loop()
        if pk.__class__ is not self._pk_type:
            pk = await self._key(pk)
        if self._db._sessions_open and self._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:
                return await self._in_session(session, self._session_get(pk))  # type: ignore[no-any-return]
        rows, db = self._rows, self._db
        # The reads are made only on a miss (a key of no single type comes here to hit).
        load, quick = partial(self._load_one, pk), partial(self._quick_one, pk)
        found = await loads.get_or_load(
            self._store, rows, (rows, pk), load, db._running_loop(), quick
        )
        return found  # type: ignore[no-any-return]

    async def get_many(self, pks: Iterable[Any]) -> dict[Hashable, Record[T]]:
        """``{pk: record}`` for the pks that have a row; one query for all the misses."""
        self._db._check_loop()
        await self._learned()
        normalized = self._keys_of(pks)
        session = self._db._writing_session()
        if session is not None:
            return await self._in_session(session, self._session_get_many(normalized))  # type: ignore[no-any-return]
        keys = [(self._rows, pk) for pk in normalized]
        loop = self._db._running_loop()
        values = await loads.get_many_or_load(self._store, self._rows, keys, self._load_many, loop)
        return {key[1]: rec for key, rec in values.items() if rec is not None}

    async def get_or_raise(self, pk: Any) -> Record[T]:
        """The row with primary key ``pk``; NotFoundError (a LookupError) if there is none."""
        found = await self.get(pk)
        if found is None:
            raise self._missing(pk)
        return found

    async def find(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        **equals: Any,
    ) -> list[Record[T]]:
        """Rows matching ``where`` and ``equals``, cached per arguments (see Repository.find)."""
        found = await self._cached("find", where, equals, order_by, limit, offset)
        return list(found)

    async def find_one(
        self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any
    ) -> Record[T] | None:
        """The first matching row (by ``order_by``, else by primary key), or None."""
        found = await self.find(*where, order_by=self._first(order_by), limit=1, **equals)
        return found[0] if found else None

    async def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many rows match; cached like find."""
        return await self._cached("count", where, equals)  # type: ignore[no-any-return]

    async def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether any row matches; cached like find."""
        return await self._cached("exists", where, equals)  # type: ignore[no-any-return]

    # -- writes (each commits before it returns) -----------------------------------------

    async def add(self, instance: Any = None, /, **values: Any) -> Record[T]:
        """Insert a row from keyword values or a model instance; the stored row."""
        self._db._check_loop()
        return self._make(await self._db._write(self._insert(instance, values)))

    async def update(self, pk: Any, **values: Any) -> Record[T]:
        """Set columns of the row ``pk``; the updated row. NotFoundError if there is none."""
        self._db._check_loop()
        pk = await self._key(pk)
        row = await self._db._write(self._update(pk, values))
        if row is None:
            raise self._missing(pk)
        return self._make(row)

    async def delete(self, pk: Any) -> bool:
        """Delete the row ``pk``; whether there was one."""
        self._db._check_loop()
        return await self._db._write(self._delete(await self._key(pk)))

    # -- internals ------------------------------------------------------------------------

    async def _key(self, pk: Any) -> Hashable:
        await self._learned()
        return self._parts.key(pk)

    async def _learned(self) -> None:
        """MySQL string keys: their collations, read once before the first lookup."""
        pk, read = self._parts.pk, self._parts.collations
        if pk.learning and read is not None:
            pk.learned(await self._db._read(read))

    async def _load_one(self, pk: Any) -> Record[T] | None:
        return await self._db._read_raw(self._parts.pk_read, self._pk_read(pk))

    def _quick_one(self, pk: Any) -> Coroutine[Any, Any, Record[T] | None] | None:
        return self._db._direct(self._pk_read(pk))

    async def _load_many(
        self, keys: list[tuple[Namespace, Any]]
    ) -> Mapping[tuple[Namespace, Any], Record[T]]:
        db, reader = self._db, self._parts.pk_read
        results = []
        for key, (raw, run) in self._many_reads(keys):
            results.append((key, await (db._read_raw(reader, run) if raw else db._read(run))))
        return self._many_found(results)

    async def _cached(self, call: str, where: Any, equals: Mapping[str, Any], *rest: Any) -> Any:
        """find, count or exists: checked before any SQL, then cached in the finds."""
        self._db._check_loop()
        query = self._parts.filters.query(call, where, equals, *rest)
        session = self._db._writing_session()
        if session is not None:  # see the session's writes; cache nothing
            return await self._in_session(session, self._session_query(query))
        key = self._found_key(query)
        load = partial(self._db._read, self._found_read(query))
        return await loads.get_or_load(self._store, key[0], key, load, self._db._running_loop())

    async def _in_session(self, session: AsyncSession, read: Callable[[Session], Any]) -> Any:
        # On the session's own connection, in its greenlet: lazy loads work there.
        with self._db._boundary(os_errors=True):
            return await session.run_sync(read)


def _hit_path(
    repository: AsyncRepository[Any], full: Callable[[Any], Awaitable[Record[Any] | None]]
) -> Callable[[Any], Awaitable[Record[Any] | None]]:
    """``repository.get`` for a cache hit: Repository's hit path, then a return before
    any await, so a hit never suspends; anything else (a miss, a session, another
    event loop) goes to ``full``, the method, which checks the loop (``_check_loop``).

    The hit's own loop check is one attribute: asyncio's loops hold the ident of the
    thread running them in ``_thread_id`` (None while stopped), so equal to this
    thread's, the caller is on that loop. The loop is taken once ``full`` has run on
    it; a loop without the attribute (not asyncio's own) sends every call to ``full``.
    """
    hit = sync_hit_path(repository, _missed)
    db = repository._db
    loop: Any = _NoLoop

    async def get(pk: Any) -> Record[Any] | None:
        nonlocal loop
        if loop._thread_id == get_ident():
            found: Record[Any] | None = hit(pk)
            if found is not MISSING:
                return found
        found = await full(pk)
        loop = db._loop if hasattr(db._loop, "_thread_id") else _NoLoop
        return found

    get.__doc__ = AsyncRepository.get.__doc__
    return get


class _NoLoop:
    _thread_id = None


def _missed(pk: Any) -> Any:
    return MISSING
