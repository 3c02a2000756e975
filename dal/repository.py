"""Repository[T]: cached reads of one model's rows and queries, and writes that keep them fresh."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from functools import partial
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any, TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from .database import Database
from .records import Record
from .repository_base import CacheInfo, OrderBy, RepositoryBase
from .store.cache import Namespace

__all__ = ["CacheInfo", "Repository"]

T = TypeVar("T")


class Repository(RepositoryBase[T]):
    """Reads and writes of one mapped model, through the Database's cache.

    Subclass it with ``model = User`` (and optionally ``ttl = 60.0``); instances are
    cheap, and every instance of one class on one Database shares its cache entries.
    Writes commit before they return, except inside ``db.session()``, where they are
    part of the session's transaction.
    """

    #: The mapped class; inferred from ``Repository[User]`` when not set.
    model: type[T]
    _db: Database

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        if type(self).get is Repository.get:
            # Hits are answered by a closure over the objects they touch (local
            # loads, not attribute lookups), which falls back to the method.
            self.__dict__["get"] = _hit_path(self, partial(Repository.get, self))

    # -- reads ----------------------------------------------------------------------

    def get(self, pk: Any) -> Record[T] | None:
        """The row with primary key ``pk``, or None (an absent row is cached too)."""
        if pk.__class__ is not self._pk_type:
            pk = self._parts.key(pk)
        if self._db._sessions_open and self._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:
                return self._in_session(session, self._session_get(pk))  # type: ignore[no-any-return]
        rows = self._rows
        return self._store.get_or_load(rows, (rows, pk), partial(self._load_one, pk))  # type: ignore[no-any-return]

    def get_many(self, pks: Iterable[Any]) -> dict[Hashable, Record[T]]:
        """``{pk: record}`` for the pks that have a row; one query for all the misses."""
        normalized = self._keys_of(pks)
        session = self._db._writing_session()
        if session is not None:
            return self._in_session(session, self._session_get_many(normalized))  # type: ignore[no-any-return]
        keys = [(self._rows, pk) for pk in normalized]
        values = self._store.get_many_or_load(self._rows, keys, self._load_many)
        return {key[1]: rec for key, rec in values.items() if rec is not None}

    def get_or_raise(self, pk: Any) -> Record[T]:
        """The row with primary key ``pk``; NotFoundError (a LookupError) if there is none."""
        found = self.get(pk)
        if found is None:
            raise self._missing(pk)
        return found

    def find(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        **equals: Any,
    ) -> list[Record[T]]:
        """Rows matching column expressions ``where`` and ``equals`` (None matches NULL),
        cached per arguments.

        ``order_by`` takes column names (``"-name"`` for descending) or expressions
        (``User.balance.desc()``). Any committed write to the table drops every result.
        """
        found = self._cached("find", where, equals, order_by, limit, offset)
        return list(found)

    def find_one(
        self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any
    ) -> Record[T] | None:
        """The first matching row (by ``order_by``, else by primary key), or None."""
        found = self.find(*where, order_by=self._first(order_by), limit=1, **equals)
        return found[0] if found else None

    def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many rows match; cached like find."""
        return self._cached("count", where, equals)  # type: ignore[no-any-return]

    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether any row matches; cached like find."""
        return self._cached("exists", where, equals)  # type: ignore[no-any-return]

    # -- writes (each commits before it returns) -----------------------------------------

    def add(self, instance: Any = None, /, **values: Any) -> Record[T]:
        """Insert a row from keyword values or a model instance; the stored row."""
        return self._make(self._db._write(self._insert(instance, values)))

    def update(self, pk: Any, **values: Any) -> Record[T]:
        """Set columns of the row ``pk``; the updated row. NotFoundError if there is none."""
        pk = self._parts.key(pk)
        row = self._db._write(self._update(pk, values))
        if row is None:
            raise self._missing(pk)
        return self._make(row)

    def delete(self, pk: Any) -> bool:
        """Delete the row ``pk``; whether there was one."""
        return self._db._write(self._delete(self._parts.key(pk)))

    # -- internals ------------------------------------------------------------------------

    def _load_one(self, pk: Any) -> Record[T] | None:
        return self._db._read_raw(self._parts.pk_read, self._pk_read(pk))

    def _load_many(
        self, keys: list[tuple[Namespace, Any]]
    ) -> Mapping[tuple[Namespace, Any], Record[T]]:
        db, reader = self._db, self._parts.pk_read
        return self._many_found(
            (key, db._read_raw(reader, run) if raw else db._read(run))
            for key, (raw, run) in self._many_reads(keys)
        )

    def _cached(self, call: str, where: Any, equals: Mapping[str, Any], *rest: Any) -> Any:
        """find, count or exists: checked before any SQL, then cached in the finds."""
        query = self._parts.filters.query(call, where, equals, *rest)
        session = self._db._writing_session()
        if session is not None:  # see the session's writes; cache nothing
            return self._in_session(session, self._session_query(query))
        key = self._found_key(query)
        return self._store.get_or_load(
            key[0], key, partial(self._db._read, self._found_read(query))
        )

    def _in_session(self, session: Session, read: Callable[[Session], Any]) -> Any:
        # Converting may load expired attributes: that SQL is translated too.
        with self._db._boundary():
            return read(session)


def _hit_path(repository: RepositoryBase[Any], full: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``repository.get`` for a cache hit: ``Store._find``'s steps, inlined because it
    is the hot one; anything else (another key type, a session, a miss, an expired
    entry) goes to ``full``, the method."""
    db = repository._db
    pk_type = repository._pk_type
    active = db._active
    lock = db._store.lock
    cached = repository._rows.entries
    order = db._store.order
    rows = repository._rows

    def get(pk: Any) -> Any:
        # No session open anywhere (read without a lock; see Database._sessions_open)
        # means none in this context: the ContextVar lookup is skipped.
        if pk.__class__ is pk_type and (not db._sessions_open or active.get() is None):
            with lock:
                slot = cached.get(pk)
                # A slot without TTL carries expires=None: the clock is not read.
                if slot is not None and (slot.expires is None or slot.expires > monotonic()):
                    order.move_to_end(slot)
                    rows.hits += 1
                    return slot.value
        return full(pk)

    get.__doc__ = Repository.get.__doc__
    return get
