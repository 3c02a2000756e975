"""Immutable records: one slotted class per mapped model, built from its columns.

A record is what every read returns. It is shared by all callers and by the cache
without copies, so it cannot be changed: attributes are read-only, and a column
whose values may be mutable (JSON, arrays) hands out a copy on each access.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import decimal
import enum
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar, cast

from sqlalchemy import Column, Table
from sqlalchemy.orm import Mapper

__all__ = ["IMMUTABLE_TYPES", "Record", "RecordType", "jsonable", "record_type"]

#: The mapped class a record was read from (``Record[User]``).
M_co = TypeVar("M_co", covariant=True)
R = TypeVar("R", bound="Record[Any]")

#: Values of these exact types never change; records and caches share them.
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {
        int, float, bool, str, bytes, complex, type(None), decimal.Decimal, uuid.UUID,
        datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
    }
)  # fmt: skip


def _frozen_copy(value: Any) -> Any:
    return value if type(value) in IMMUTABLE_TYPES else copy.deepcopy(value)


class Record(Generic[M_co]):
    """Base of the record classes; read attributes by column attribute name.

    ``Record[User]`` is the type of a ``User`` row in annotations. With the mypy
    plugin (``plugins = ["dal.mypy"]``) each attribute has its column's type, a
    misspelt one is an error, and so is any assignment.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    #: Relationship names; each is set only if the read loaded it (eagerly).
    _relationships: ClassVar[tuple[str, ...]] = ()
    _model: ClassVar[Any] = None

    if TYPE_CHECKING:  # records carry one attribute per column of their model

        def __getattr__(self, name: str) -> Any: ...

        # NoReturn: mypy rejects assigning any value to a record attribute.
        def __setattr__(self, name: str, value: NoReturn) -> None: ...

    else:

        def __setattr__(self, name, value):
            raise AttributeError(
                f"{type(self).__name__} is immutable; write through the repository instead"
            )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def _loaded(self) -> dict[str, Any]:
        found = {}
        for name in self._relationships:
            with contextlib.suppress(AttributeError):  # an unset slot: not loaded
                found[name] = object.__getattribute__(self, _relationship_slot(name))
        return found

    def _link(self, relationships: dict[str, Any]) -> None:
        for name, value in relationships.items():
            object.__setattr__(self, _relationship_slot(name), value)

    def _asdict(self) -> dict[str, Any]:
        """The record's columns (and loaded relationships, as records) as a new dict."""
        values = dict(zip(self._fields, self._values(), strict=True))
        values.update(self._loaded())
        return values

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        # (name, value) pairs, as pydantic models iterate: dict(record) works, and so
        # does FastAPI's jsonable_encoder for an endpoint without a response model.
        return iter(self._asdict().items())

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """``Record[User]`` in a pydantic model or a FastAPI return annotation."""
        from .schema import record_schema

        return record_schema(source, handler)

    def _replace(self: R, **changes: Any) -> R:
        """A new record with some columns changed, like ``namedtuple._replace``; not stored."""
        unknown = [name for name in changes if name not in self._fields]
        if unknown:
            from .errors import UnknownColumnError

            raise UnknownColumnError(
                f"{type(self).__name__}._replace: no column {', '.join(map(repr, unknown))} "
                f"(columns: {', '.join(self._fields)})"
            )
        kind = record_type(self._model)
        values = [
            _frozen_copy(changes[name]) if name in changes else object.__getattribute__(self, slot)
            for name, slot in zip(kind.fields, kind._slots, strict=True)
        ]
        new: R = kind.make(values)  # type: ignore[assignment]
        new._link(self._loaded())
        return new

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._values() == other._values())

    def __hash__(self) -> int:
        values = self._values()
        try:
            return hash((type(self), values))
        except TypeError:  # a JSON or array column: hash a frozen form, equal if equal
            return hash((type(self), _hashable(values)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the model (pickled by reference) and the column values; loaded
        # relationships go in the state, which pickle sets after memoizing the record,
        # so a graph with cycles (user.orders[0].user) round-trips.
        loaded = self._loaded()
        if loaded:
            return (_rebuild, (self._model, self._values()), loaded)
        return (_rebuild, (self._model, self._values()))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._link(state)

    def __copy__(self: R) -> R:
        return self

    def __deepcopy__(self: R, memo: dict[int, Any]) -> R:
        return self


def _hashable(value: Any) -> Any:
    """A hashable stand-in for ``value`` that is equal whenever the values are equal.

    Hashable values stand for themselves, so a record hashes the same whichever
    path its hash takes; dicts and sets become frozensets (order does not count
    for their equality), other containers tuples.
    """
    try:
        hash(value)
    except TypeError:
        pass
    else:
        return value
    if isinstance(value, Mapping):
        return frozenset((key, _hashable(item)) for key, item in value.items())
    if isinstance(value, (set, frozenset)):
        return frozenset(value)  # its members are hashable already
    if isinstance(value, Iterable):
        return tuple(_hashable(item) for item in value)
    raise TypeError(f"unhashable column value of type {type(value).__name__}")


class RecordType:
    """A model's record class with the column list and fast constructors."""

    __slots__ = ("_slots", "cls", "columns", "fields", "make", "pk_indexes", "relationships")

    def __init__(
        self,
        model: Any,
        name: str,
        columns: Sequence[Column[Any]],
        fields: Sequence[str],
        pk_indexes: Sequence[int] = (),
        relationships: Sequence[str] = (),
    ):
        self.columns = tuple(columns)
        self.fields = tuple(fields)
        # In the primary-key constraint's order, which Session.get and the write
        # tracking use too (it may differ from the columns' order).
        self.pk_indexes = tuple(pk_indexes)
        self.relationships = tuple(relationships)
        self._slots = tuple(_slot(f, c) for f, c in zip(fields, columns, strict=True))
        namespace: dict[str, Any] = {
            "__slots__": self._slots + tuple(map(_relationship_slot, self.relationships)),
            "_fields": self.fields,
            "_relationships": self.relationships,
            "_model": model,
            "__module__": getattr(model, "__module__", __name__),
        }
        for field, column in zip(fields, columns, strict=True):
            if _slot(field, column) != field:
                namespace[field] = _copying_property(_slot(field, column))
        for relationship in self.relationships:
            namespace[relationship] = _relationship_property(model, relationship)
        self.cls: type[Record[Any]] = type(name, (Record,), namespace)
        self.make: Callable[[Sequence[Any]], Record[Any]] = self._maker()

    def _maker(self) -> Callable[[Sequence[Any]], Record[Any]]:
        # Generated code: one slot store a field, no loop, no __setattr__.
        setters = {f"set{i}": getattr(self.cls, name).__set__ for i, name in enumerate(self._slots)}
        body = "".join(f"    set{i}(self, row[{i}])\n" for i in range(len(self.fields)))
        source = f"def make(row):\n    self = new(cls)\n{body}    return self\n"
        scope: dict[str, Any] = {"new": object.__new__, "cls": self.cls, **setters}
        exec(source, scope)
        return scope["make"]  # type: ignore[no-any-return]

    def from_instance(self, instance: Any, memo: dict[int, Any] | None = None) -> Record[Any]:
        """A record of an ORM instance's current column values and loaded relationships.

        ``memo`` maps ``id(instance)`` to its record, so an object graph with cycles
        becomes records with the same cycles.
        """
        record = self.make([getattr(instance, f) for f in self.fields])
        if self.relationships:
            memo = {} if memo is None else memo
            memo[id(instance)] = record
            loaded = instance.__dict__  # what the ORM has loaded; no lazy load here
            record._link(
                {
                    name: _related(loaded[name], memo)
                    for name in self.relationships
                    if name in loaded
                }
            )
        return record


def _related(value: Any, memo: dict[int, Any]) -> Any:
    """A loaded relationship's value as a record, None, or a tuple of records."""
    if value is None:
        return None
    if isinstance(value, Mapping):  # attribute_keyed_dict and friends: the values
        value = value.values()
    if isinstance(value, Iterable):
        return tuple(_related_one(item, memo) for item in value)
    return _related_one(value, memo)


def _related_one(instance: Any, memo: dict[int, Any]) -> Any:
    found = memo.get(id(instance))
    if found is None:
        found = record_type(type(instance)).from_instance(instance, memo)
    return found


def _slot(field: str, column: Column[Any]) -> str:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = object
    immutable = python_type in IMMUTABLE_TYPES or issubclass(python_type, enum.Enum)
    return field if immutable else f"_{field}_value"


def _relationship_slot(name: str) -> str:
    return f"_{name}_related"


def _copying_property(slot: str) -> property:
    def get(self: Any) -> Any:
        return _frozen_copy(object.__getattribute__(self, slot))

    return property(get)


def _relationship_property(model: Any, name: str) -> property:
    slot = _relationship_slot(name)
    message = (
        f"{model.__name__}.{name} is a relationship that this read did not load: records "
        f"carry a relationship only when the query loaded it eagerly, e.g. a cached_query "
        f"with .options(selectinload({model.__name__}.{name})); repository reads load the "
        "columns only (read the related rows through their own repository)"
    )

    def get(self: Any) -> Any:
        try:
            return object.__getattribute__(self, slot)
        except AttributeError:
            raise AttributeError(message, name=name, obj=self) from None

    return property(get)


_types: dict[Any, RecordType] = {}
_types_lock = threading.Lock()


def record_type(model: Any) -> RecordType:
    """The record class of a mapped class (made once, then shared)."""
    found = _types.get(model)
    if found is not None:
        return found
    with _types_lock:
        found = _types.get(model)
        if found is None:
            found = _types[model] = _build(model)
        return found


def _build(model: Any) -> RecordType:
    from sqlalchemy import inspect

    mapper: Mapper[Any] = inspect(model)
    table = mapper.local_table
    single = mapper.inherits is None
    fields, columns = [], []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        # One table: its own columns. A mapped hierarchy: every mapped column.
        if isinstance(column, Column) and (column.table is table or not single):
            fields.append(prop.key)
            columns.append(column)
    key_columns = cast(Table, table).primary_key.columns if single else mapper.primary_key
    pk_indexes = [
        next(i for i, prop_column in enumerate(columns) if prop_column is column)
        for column in key_columns
        if any(prop_column is column for prop_column in columns)
    ]
    relationships = [prop.key for prop in mapper.relationships]
    return RecordType(model, f"{model.__name__}Record", columns, fields, pk_indexes, relationships)


def _rebuild(model: Any, values: tuple[Any, ...]) -> Record[Any]:
    return record_type(model).make(values)


def jsonable(value: Any) -> Any:
    """``json.dumps(record, default=dal.records.jsonable)``: records become dicts.

    Also dates and times (ISO 8601), Decimal and UUID (strings, exact), enums (their
    value), sets and frozensets (lists), bytes (an error: choose an encoding).
    """
    if isinstance(value, Record):
        return value._asdict()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
