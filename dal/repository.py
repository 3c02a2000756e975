"""Repository[T]: cached reads of one model's rows and queries, and writes that keep them fresh."""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast, get_args, get_origin

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from .database import Database
from .drivers.pkread import MAX_KEYS, PkRead
from .errors import ConfigError, InvalidArgument, NotFoundError
from .filters import Filters, Query
from .records import Record, RecordType, record_type
from .store.cache import Namespace
from .store.keys import PrimaryKey, table_key
from .tracking import catalog

__all__ = ["CacheInfo", "Repository"]

T = TypeVar("T")

#: ``order_by``: a column name (``"-name"`` for descending), an expression, or several.
OrderBy = str | ColumnElement[Any] | Sequence[str | ColumnElement[Any]] | None

#: Per-repository default meaning "the Database's ttl".
_DEFAULT: Any = type("DefaultTTL", (), {"__repr__": lambda self: "DEFAULT"})()


class CacheInfo(NamedTuple):
    """Hit and size counters, in the shape ``functools.lru_cache`` uses."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class _Parts:
    """What every instance of one repository class on one Database shares."""

    def __init__(self, db: Database, cls: type[Repository[Any]]) -> None:
        model = getattr(cls, "model", None)
        if model is None:
            raise ConfigError(
                f"{cls.__qualname__} must name its model: `class {cls.__name__}"
                "(dal.Repository[User])` or `model = User`"
            )
        mapper = sa_inspect(model, raiseerr=False)
        if mapper is None or not isinstance(mapper.local_table, Table) or mapper.inherits:
            raise ConfigError(
                f"{getattr(model, '__name__', model)!r} is not mapped to a single table; "
                "dal repositories support models mapped to one Table without inheritance "
                "(a cached_query can return instances of a mapped hierarchy)"
            )
        self.records: RecordType = record_type(model)
        self.table = mapper.local_table
        self.columns = {
            f: c for f, c in zip(self.records.fields, self.records.columns, strict=True)
        }
        pk_columns = [self.records.columns[i] for i in self.records.pk_indexes]
        self.pk = PrimaryKey(pk_columns, db._engine.dialect.name, _collations(db, pk_columns))
        self.pk_fields = [self.records.fields[i] for i in self.records.pk_indexes]
        self.filters = Filters(cls.__qualname__, model, self.table, self.columns)
        ttl = db.settings.ttl if cls.ttl is _DEFAULT else cls.ttl
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0
        ):
            raise ConfigError(f"{cls.__qualname__}.ttl={ttl!r} must be a positive number or None")
        name, tables = cls.__qualname__, [table_key(self.table.name)]
        store = db._store
        self.rows = store.namespace((cls, "rows"), f"{name}.get", tables, ttl, self.pk)
        self.finds = store.namespace((cls, "finds"), f"{name}.find", tables, ttl)
        db._tracker.watch(self.table)
        selected = self.records.columns
        self.select: Select[Any] = select(*selected)
        self.pk_read = PkRead(db._engine.dialect, selected, pk_columns)
        self.by_pk = self.select.where(self._pk_equals())
        self.by_pks = self.select.where(self._pk_column().in_(bindparam("pks", expanding=True)))

    def _pk_column(self) -> ColumnElement[Any]:
        columns = [self.columns[f] for f in self.pk_fields]
        return columns[0] if len(columns) == 1 else tuple_(*columns)

    def _pk_equals(self) -> ColumnElement[bool]:
        return and_(*(self.columns[f] == bindparam(f"pk{i}") for i, f in enumerate(self.pk_fields)))

    def key(self, pk: Any) -> Hashable:
        """The cache key of ``pk``, given as Session.get takes it: a value, a tuple in
        primary-key order, or a dict by attribute name."""
        if isinstance(pk, Mapping):
            self.filters.check_names(pk, "get")
            if set(pk) != set(self.pk_fields):
                raise InvalidArgument(
                    f"primary key {pk!r}: a dict needs exactly the keys {self.pk_fields}"
                )
            values = tuple(pk[field] for field in self.pk_fields)
            pk = values[0] if len(values) == 1 else values
        return self.pk(pk)

    def moved(self, pk: Any, values: Mapping[str, Any]) -> Any:
        """The primary key of row ``pk`` after an update that sets ``values``."""
        if self.pk.width == 1:
            return values.get(self.pk_fields[0], pk)
        return tuple(values.get(f, v) for f, v in zip(self.pk_fields, pk, strict=True))

    def pk_params(self, pk: Any) -> dict[str, Any]:
        values = (pk,) if self.pk.width == 1 else pk
        return {f"pk{i}": v for i, v in enumerate(values)}


def _model_argument(cls: type[Any]) -> Any:
    """``User`` of ``class Users(Repository[User])``, or None (unparametrized, a TypeVar)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Repository):
            (argument,) = get_args(base)
            return argument if isinstance(argument, type) else None
    return None


def _collations(db: Database, columns: Sequence[Any]) -> Callable[[], list[str | None]] | None:
    """MySQL: how to learn the key columns' collations, once, at the first lookup."""
    if db._engine.dialect.name not in ("mysql", "mariadb"):
        return None
    table = columns[0].table
    names = [c.name for c in columns]
    return lambda: db._read(lambda conn: catalog.collations(conn, table.schema, table.name, names))


class Repository(Generic[T]):
    """Reads and writes of one mapped model, through the Database's cache.

    Subclass it with ``model = User`` (and optionally ``ttl = 60.0``); instances are
    cheap, and every instance of one class on one Database shares its cache entries.
    Writes commit before they return, except inside ``db.session()``, where they are
    part of the session's transaction.
    """

    #: The mapped class; inferred from ``Repository[User]`` when not set.
    model: type[T]
    #: Seconds an entry may be served; None for no age limit. Default: the Database's.
    ttl: ClassVar[float | None] = _DEFAULT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        named = _model_argument(cls)
        if named is None:
            return
        own = cls.__dict__.get("model")
        if own is None:
            cls.model = named
        elif own is not named:
            raise ConfigError(
                f"{cls.__qualname__}: model = {getattr(own, '__name__', own)} does not "
                f"match Repository[{named.__name__}]"
            )

    def __init__(self, db: Database) -> None:
        parts = db._parts.get(type(self))
        if parts is None:
            parts = db._parts.setdefault(type(self), _Parts(db, type(self)))
        self._db = db
        self._parts: _Parts = parts
        self._store = db._store
        self._rows: Namespace = parts.rows
        self._pk_type = parts.pk.scalar_type
        self._active = db._active
        self._make: Callable[[Sequence[Any]], Record[T]] = parts.records.make
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
                return cast(
                    Record[T] | None, self._in_session(session, lambda s: s.get(self.model, pk))
                )
        rows = self._rows
        return self._store.get_or_load(rows, (rows, pk), partial(self._load_one, pk))  # type: ignore[no-any-return]

    def get_many(self, pks: Iterable[Any]) -> dict[Hashable, Record[T]]:
        """``{pk: record}`` for the pks that have a row; one query for all the misses."""
        if isinstance(pks, (str, bytes, bytearray)) or not isinstance(pks, Iterable):
            raise InvalidArgument(
                f"{type(self).__qualname__}.get_many takes an iterable of primary keys, "
                f"not {type(pks).__name__} {reprlib.repr(pks)}; for one key, use get()"
            )
        normalized = list(dict.fromkeys(self._parts.key(pk) for pk in pks))
        session = self._db._writing_session()
        if session is not None:
            found = {
                pk: self._in_session(session, lambda s, pk=pk: s.get(self.model, pk))
                for pk in normalized
            }
            return {pk: rec for pk, rec in found.items() if rec is not None}
        keys = [(self._rows, pk) for pk in normalized]
        values = self._store.get_many_or_load(self._rows, keys, self._load_many)
        return {key[1]: rec for key, rec in values.items() if rec is not None}

    def get_or_raise(self, pk: Any) -> Record[T]:
        """The row with primary key ``pk``; NotFoundError (a LookupError) if there is none."""
        found = self.get(pk)
        if found is None:
            raise NotFoundError(f"{self.model.__name__} {pk!r} does not exist")
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
        ordering = self._parts.pk_fields if order_by is None else order_by
        found = self.find(*where, order_by=ordering, limit=1, **equals)
        return found[0] if found else None

    def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many rows match; cached like find."""
        return self._cached("count", where, equals)  # type: ignore[no-any-return]

    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether any row matches; cached like find."""
        return self._cached("exists", where, equals)  # type: ignore[no-any-return]

    def cache_clear(self) -> None:
        """Forget every cached row and query result of this repository."""
        self._store.drop(self._parts.rows)
        self._store.drop(self._parts.finds)

    def cache_info(self) -> CacheInfo:
        """Hits, misses and entries of this repository's rows and finds; ``maxsize`` is
        the Database's ``cache_size``, which they share with every other cache of it."""
        spaces = (self._parts.rows, self._parts.finds)
        with self._store.lock:
            return CacheInfo(
                hits=sum(ns.hits for ns in spaces),
                misses=sum(ns.misses for ns in spaces),
                maxsize=self._store.max_entries,
                currsize=sum(len(ns.entries) for ns in spaces),
            )

    # -- writes (each commits before it returns) -----------------------------------------

    def add(self, instance: Any = None, /, **values: Any) -> Record[T]:
        """Insert a row from keyword values or a model instance; the stored row."""
        if instance is not None:
            if values:
                raise InvalidArgument("add() takes a model instance or keyword values, not both")
            if not isinstance(instance, self.model):
                expected, got = self.model.__name__, type(instance).__name__
                raise InvalidArgument(f"add() expected a {expected} instance, not {got}")
            loaded = sa_inspect(instance).dict
            self._refuse_graph(loaded)
            values = {f: loaded[f] for f in self._parts.records.fields if f in loaded}
        row_values = self._column_values(values, "add")
        statement = insert(self._parts.table).values(row_values)
        returning = statement.returning(*self._parts.records.columns)

        def write(conn: Connection) -> Any:
            if conn.dialect.insert_returning:
                return conn.execute(returning).one()
            # No RETURNING (MySQL): the key given, or the driver's lastrowid, which is
            # exact for a one-row insert; then the row, read in the same transaction.
            key = tuple(conn.execute(statement).inserted_primary_key or ())
            return self._reread(conn, key if self._parts.pk.width > 1 else key[0])

        return self._make(self._db._write(write))

    def update(self, pk: Any, **values: Any) -> Record[T]:
        """Set columns of the row ``pk``; the updated row. NotFoundError if there is none."""
        pk = self._parts.key(pk)
        if not values:
            raise InvalidArgument("update() needs at least one column value")
        statement = (
            update(self._parts.table)
            .where(self._parts._pk_equals())
            .values(self._column_values(values, "update"))
        )
        returning = statement.returning(*self._parts.records.columns)
        params = self._parts.pk_params(pk)

        def write(conn: Connection) -> Any:
            if conn.dialect.update_returning:
                return conn.execute(returning, params).first()
            # No UPDATE ... RETURNING (MySQL, MariaDB): the UPDATE, then the row read in
            # the same transaction, whose lock on it holds until COMMIT. rowcount counts
            # matched rows (SQLAlchemy sets CLIENT.FOUND_ROWS), changed or not.
            if not conn.execute(statement, params).rowcount:
                return None
            return self._reread(conn, self._parts.moved(pk, values))

        row = self._db._write(write)
        if row is None:
            raise NotFoundError(f"{self.model.__name__} {pk!r} does not exist")
        return self._make(row)

    def delete(self, pk: Any) -> bool:
        """Delete the row ``pk``; whether there was one."""
        pk = self._parts.key(pk)
        statement = delete(self._parts.table).where(self._parts._pk_equals())
        params = self._parts.pk_params(pk)
        result = self._db._write(lambda conn: conn.execute(statement, params))
        return bool(result.rowcount)

    # -- internals ------------------------------------------------------------------------

    def _reread(self, conn: Connection, pk: Any) -> Any:
        """The row ``pk`` as the writing transaction sees it (for drivers without RETURNING)."""
        return conn.execute(self._parts.by_pk, self._parts.pk_params(pk)).one()

    def _load_one(self, pk: Any) -> Record[T] | None:
        values = (pk,) if self._parts.pk.width == 1 else pk
        reader = self._parts.pk_read
        row = self._db._read_raw(reader, lambda cursor: reader.run(cursor, values))
        return None if row is None else self._make(row)

    def _load_many(
        self, keys: list[tuple[Namespace, Any]]
    ) -> Mapping[tuple[Namespace, Any], Record[T]]:
        # A key the database may match to a row whose key folds elsewhere (a non-ASCII
        # key under a case-insensitive collation) is read alone: its row is its own.
        exact = self._parts.pk.exact
        alone = {key: self._load_one(key[1]) for key in keys if not exact(key[1])}
        pks = [key[1] for key in keys if key not in alone]
        reader = self._parts.pk_read
        rows: list[Any] = []
        if self._parts.pk.width == 1:
            for start in range(0, len(pks), MAX_KEYS):
                rows += self._db._read_raw(
                    reader, partial(reader.run_many, pks=pks[start : start + MAX_KEYS])
                )
        elif pks:
            by_pks = self._parts.by_pks
            rows = self._db._read(lambda conn: list(conn.execute(by_pks, {"pks": pks})))
        indexes = self._parts.records.pk_indexes
        from_row = self._parts.pk.from_row
        rows_ns = self._rows
        found = {
            (rows_ns, from_row(tuple(row[i] for i in indexes))): self._make(row) for row in rows
        }
        found.update((key, rec) for key, rec in alone.items() if rec is not None)
        return found

    def _cached(
        self,
        call: str,
        where: Sequence[Any],
        equals: Mapping[str, Any],
        order_by: Any = None,
        limit: Any = None,
        offset: Any = None,
    ) -> Any:
        """find, count or exists: checked before any SQL, then cached in the finds."""
        query = self._parts.filters.query(call, where, equals, order_by, limit, offset)
        session = self._db._writing_session()
        if session is not None:  # see the session's writes; cache nothing
            statement = query.statement(select(self.model), self.model)
            if call == "find":
                return self._in_session(session, lambda s: s.scalars(statement).all())
            with self._db._boundary():
                return query.answer(session.execute(statement))
        statement = query.statement(self._parts.select, self._parts.table)
        finds = self._parts.finds
        return self._store.get_or_load(
            finds, (finds, query.key), partial(self._load_found, query, statement)
        )

    def _load_found(self, query: Query, statement: Select[Any]) -> Any:
        if query.call != "find":
            return self._db._read(lambda conn: query.answer(conn.execute(statement)))
        rows = self._db._read(lambda conn: conn.execute(statement).all())
        return tuple(self._make(row) for row in rows)

    def _in_session(self, session: Session, read: Any) -> Any:
        from_instance = self._parts.records.from_instance
        # Converting may load expired attributes: that SQL is translated too.
        with self._db._boundary():
            found = read(session)
            if found is None:
                return None
            if isinstance(found, list):
                return [from_instance(obj) for obj in found]
            return from_instance(found)

    def _refuse_graph(self, loaded: Mapping[str, Any]) -> None:
        """add() writes one row: related objects would be dropped silently, so refuse."""
        for name in self._parts.records.relationships:
            related = loaded.get(name)
            if related is not None and related != []:
                model = self.model.__name__
                raise InvalidArgument(
                    f"{type(self).__qualname__}.add: {model}.{name} holds related objects, "
                    f"which add() would not write (it inserts one {model} row); add the "
                    "object graph in a transaction instead: "
                    "`with db.session() as s: s.add(obj)`, or add each row through its "
                    "repository"
                )

    def _column_values(self, values: Mapping[str, Any], where: str) -> dict[Any, Any]:
        self._parts.filters.check_names(values, where)
        return {self._parts.columns[f]: v for f, v in values.items()}


def _hit_path(
    repository: Repository[Any], full: Callable[[Any], Record[Any] | None]
) -> Callable[[Any], Record[Any] | None]:
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

    def get(pk: Any) -> Record[Any] | None:
        # No session open anywhere (read without a lock; see Database._sessions_open)
        # means none in this context: the ContextVar lookup is skipped.
        if pk.__class__ is pk_type and (not db._sessions_open or active.get() is None):
            with lock:
                slot = cached.get(pk)
                # A slot without TTL carries expires=None: the clock is not read.
                if slot is not None and (slot.expires is None or slot.expires > monotonic()):
                    order.move_to_end(slot)
                    rows.hits += 1
                    return slot.value  # type: ignore[no-any-return]
        return full(pk)

    get.__doc__ = Repository.get.__doc__
    return get
