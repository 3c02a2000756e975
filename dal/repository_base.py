"""What Repository and AsyncRepository share: a model's table, records, keys, and every
statement of their reads and writes, as functions of a Session, a Connection or a
cursor that either front end runs its own way (``dal.repository``, ``dal.aio.repository``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, get_args, get_origin

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

from .core import Core
from .drivers.pkread import MAX_KEYS, PkRead, PkRun
from .errors import ConfigError, DalError, InvalidArgument, NotFoundError
from .filters import Filters, Query
from .records import Record, RecordType, record_type
from .store.cache import Namespace
from .store.keys import PrimaryKey, table_key
from .tracking import catalog

__all__ = ["DEFAULT", "CacheInfo", "OrderBy", "RepositoryBase"]

T = TypeVar("T")

#: ``order_by``: a column name (``"-name"`` for descending), an expression, or several.
OrderBy = str | ColumnElement[Any] | Sequence[str | ColumnElement[Any]] | None

#: Per-repository default meaning "the Database's ttl".
DEFAULT: Any = type("DefaultTTL", (), {"__repr__": lambda self: "DEFAULT"})()

#: A read the front end runs: ``(True, run(cursor))`` on the raw primary-key path, or
#: ``(False, run(connection))`` through Core.
Read = tuple[bool, Callable[[Any], Any]]


class CacheInfo(NamedTuple):
    """Hit and size counters, in the shape ``functools.lru_cache`` uses."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class _Parts:
    """What every instance of one repository class on one Database shares."""

    def __init__(self, db: Any, cls: type[RepositoryBase[Any]]) -> None:
        model = getattr(cls, "model", None)
        if model is None:
            raise ConfigError(
                f"{cls.__qualname__} must name its model: `class {cls.__name__}"
                f"(dal.{cls._kind}[User])` or `model = User`"
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
        dialect = db._engine.dialect
        #: MySQL: the read that learns the key columns' collations, once, before the
        #: first lookup; None elsewhere.
        self.collations = _collations(dialect.name, pk_columns)
        learn = None if self.collations is None else cls._learner(db, self.collations)
        self.pk = PrimaryKey(pk_columns, dialect.name, learn)
        self.pk_fields = [self.records.fields[i] for i in self.records.pk_indexes]
        self.filters = Filters(cls.__qualname__, model, self.table, self.columns)
        ttl = db.settings.ttl if cls.ttl is DEFAULT else cls.ttl
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
        self.pk_read = PkRead(dialect, selected, pk_columns)
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


def _collations(dialect: str, columns: Sequence[Any]) -> Callable[[Connection], Any] | None:
    """MySQL: the catalog read of the key columns' collations."""
    if dialect not in ("mysql", "mariadb"):
        return None
    table = columns[0].table
    names = [c.name for c in columns]
    return lambda conn: catalog.collations(conn, table.schema, table.name, names)


class RepositoryBase(Generic[T]):
    """Reads and writes of one mapped model through a Database's cache, minus the way
    they reach the database and wait for it: ``Repository`` calls, ``AsyncRepository``
    awaits."""

    #: The mapped class; inferred from ``Repository[User]`` when not set.
    model: type[T]
    #: Seconds an entry may be served; None for no age limit. Default: the Database's.
    ttl: ClassVar[float | None] = DEFAULT
    #: The public base's name, for messages.
    _kind: ClassVar[str] = "Repository"
    #: Whether it takes an AsyncDatabase.
    _asynchronous: ClassVar[bool] = False

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
                f"match {cls._kind}[{named.__name__}]"
            )

    def __init__(self, db: Any) -> None:
        if not isinstance(db, Core) or db.is_async != self._asynchronous:
            wanted = "AsyncDatabase" if self._asynchronous else "Database"
            raise ConfigError(
                f"{type(self).__qualname__} is a dal.{self._kind} and takes a dal.{wanted}, "
                f"not {db!r}: use dal.Repository with a Database, dal.AsyncRepository with "
                "an AsyncDatabase"
            )
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

    @staticmethod
    def _learner(db: Any, read: Callable[[Connection], Any]) -> Callable[[], Any] | None:
        """How the key learns its collations at its first lookup (``_Parts.collations``)."""
        return partial(db._read, read)

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

    # -- reads: what to run ---------------------------------------------------------------

    def _keys_of(self, pks: Iterable[Any]) -> list[Hashable]:
        """get_many's keys, normalized, each once, in the order given."""
        if isinstance(pks, (str, bytes, bytearray)) or not isinstance(pks, Iterable):
            raise InvalidArgument(
                f"{type(self).__qualname__}.get_many takes an iterable of primary keys, "
                f"not {type(pks).__name__} {reprlib.repr(pks)}; for one key, use get()"
            )
        pks = list(pks)
        if {*map(type, pks)} == {self._pk_type}:  # already of the key's type: the common case
            return list(dict.fromkeys(pks))
        return list(dict.fromkeys(map(self._parts.key, pks)))

    def _missing(self, pk: Any) -> NotFoundError:
        return NotFoundError(f"{self.model.__name__} {pk!r} does not exist")

    def _first(self, order_by: OrderBy) -> OrderBy:
        """find_one's ordering: the caller's, else the primary key's."""
        return self._parts.pk_fields if order_by is None else order_by

    def _found_key(self, query: Query) -> tuple[Namespace, Hashable]:
        return (self._parts.finds, query.key)

    def _found_read(self, query: Query) -> Callable[[Connection], Any]:
        """The cached result of ``query``, read on a connection."""
        statement = query.statement(self._parts.select, self._parts.table)
        if query.call != "find":
            return lambda conn: query.answer(conn.execute(statement))
        make = self._make
        return lambda conn: tuple(make(row) for row in conn.execute(statement).all())

    def _pk_read(self, pk: Any) -> PkRun[Record[T] | None]:
        """The row ``pk`` (or None), read on a DBAPI cursor (``PkRead``)."""
        values = (pk,) if self._parts.pk.width == 1 else pk
        return PkRun(self._parts.pk_read, values, self._make)

    def _many_reads(self, keys: list[tuple[Namespace, Any]]) -> list[tuple[Any, Read]]:
        """get_many's misses as reads: ``(key, read)`` of a row read alone, ``(None,
        read)`` of a read of rows.

        A key the database may match to a row whose key folds elsewhere (a non-ASCII
        key under a case-insensitive collation) is read alone: its row is its own.
        """
        reads: list[tuple[Any, Read]] = []
        pks = [key[1] for key in keys]
        if self._pk_type is None:  # a key type that folds may not be exact
            exact = self._parts.pk.exact
            reads = [(key, (True, self._pk_read(key[1]))) for key in keys if not exact(key[1])]
            pks = [pk for pk in pks if exact(pk)]
        reader = self._parts.pk_read
        if self._parts.pk.width == 1:
            for start in range(0, len(pks), MAX_KEYS):
                run = partial(reader.run_many, pks=pks[start : start + MAX_KEYS])
                reads.append((None, (True, run)))
        elif pks:
            by_pks = self._parts.by_pks
            reads.append((None, (False, lambda conn: list(conn.execute(by_pks, {"pks": pks})))))
        return reads

    def _many_found(
        self, results: Iterable[tuple[Any, Any]]
    ) -> dict[tuple[Namespace, Any], Record[T]]:
        """get_many's loaded records by key, from the results of ``_many_reads``."""
        indexes = self._parts.records.pk_indexes
        from_row = self._parts.pk.from_row
        rows_ns, make, plain = self._rows, self._make, self._pk_type
        found: dict[tuple[Namespace, Any], Record[T]] = {}
        alone = {}
        for key, result in results:
            if key is not None:
                alone[key] = result
            elif plain is not None:
                # A key read back as the key's own type is its cache key: no fold applies.
                (i,) = indexes
                for row in result:
                    pk = row[i] if row[i].__class__ is plain else from_row((row[i],))
                    found[(rows_ns, pk)] = make(row)
            else:
                for row in result:
                    found[(rows_ns, from_row(tuple(row[i] for i in indexes)))] = make(row)
        found.update((key, rec) for key, rec in alone.items() if rec is not None)
        return found

    # -- reads inside a writing session: its own writes seen, nothing cached ----------------

    def _session_get(self, pk: Any) -> Callable[[Session], Record[T] | None]:
        return lambda s: self._records_of(s.get(self.model, pk))

    def _session_get_many(self, pks: list[Hashable]) -> Callable[[Session], dict[Hashable, Any]]:
        def read(session: Session) -> dict[Hashable, Any]:
            found = {pk: self._records_of(session.get(self.model, pk)) for pk in pks}
            return {pk: rec for pk, rec in found.items() if rec is not None}

        return read

    def _session_query(self, query: Query) -> Callable[[Session], Any]:
        statement = query.statement(select(self.model), self.model)
        if query.call == "find":
            return lambda s: self._records_of(s.scalars(statement).all())
        return lambda s: query.answer(s.execute(statement))

    def _records_of(self, found: Any) -> Any:
        """ORM instances as records (converting may load expired attributes: call it
        inside the error boundary)."""
        from_instance = self._parts.records.from_instance
        if found is None:
            return None
        if isinstance(found, list):
            return [from_instance(obj) for obj in found]
        return from_instance(found)

    # -- writes: what to run in the write's transaction --------------------------------------

    def _insert(self, instance: Any, values: dict[str, Any]) -> Callable[[Connection], Any]:
        """add()'s statement: insert a row, return it as stored."""
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

        return write

    def _update(self, pk: Any, values: dict[str, Any]) -> Callable[[Connection], Any]:
        """update()'s statement: the updated row, or None if there is none."""
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

        return write

    def _delete(self, pk: Any) -> Callable[[Connection], bool]:
        """delete()'s statement: whether there was a row."""
        statement = delete(self._parts.table).where(self._parts._pk_equals())
        params = self._parts.pk_params(pk)
        return lambda conn: bool(conn.execute(statement, params).rowcount)

    def _reread(self, conn: Connection, pk: Any) -> Any:
        """The row ``pk`` as the writing transaction sees it (for drivers without RETURNING)."""
        return conn.execute(self._parts.by_pk, self._parts.pk_params(pk)).one()

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


def _model_argument(cls: type[Any]) -> Any:
    """``User`` of ``class Users(Repository[User])``, or None (unparametrized, a TypeVar)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, RepositoryBase):
            (argument,) = get_args(base)
            return argument if isinstance(argument, type) else None
    return None


def unlearned() -> Any:
    """An async repository learns its keys' collations before a lookup needs them."""
    raise DalError("the key columns' collations are not known yet")
