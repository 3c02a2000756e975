"""Immutable records: one slotted class per mapped model, built from its columns.

A record is what every read returns. It is shared by all callers and by the cache
without copies, so it cannot be changed: attributes are read-only, and a column
whose values may be mutable (JSON, arrays) hands out a copy on each access.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, Table
from sqlalchemy.orm import Mapper

__all__ = ["IMMUTABLE_TYPES", "Record", "RecordType", "record_type"]

#: Values of these exact types never change; records and caches share them.
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {
        int, float, bool, str, bytes, complex, type(None), decimal.Decimal, uuid.UUID,
        datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
    }
)  # fmt: skip


def _frozen_copy(value: Any) -> Any:
    return value if type(value) in IMMUTABLE_TYPES else copy.deepcopy(value)


class Record:
    """Base of the record classes; read attributes by column attribute name."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _model: ClassVar[Any] = None

    if TYPE_CHECKING:  # records carry one attribute per column of their model

        def __getattr__(self, name: str) -> Any: ...

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} is immutable; write through the repository instead"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def _asdict(self) -> dict[str, Any]:
        """The record's columns as a new dict."""
        return dict(zip(self._fields, self._values(), strict=True))

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
        # Rebuilt from the model (pickled by reference) and the column values.
        return (_rebuild, (self._model, self._values()))

    def __copy__(self) -> Record:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Record:
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

    __slots__ = ("_slots", "cls", "columns", "fields", "make", "pk_indexes")

    def __init__(
        self, model: Any, name: str, columns: Sequence[Column[Any]], fields: Sequence[str]
    ):
        self.columns = tuple(columns)
        self.fields = tuple(fields)
        # In the primary-key constraint's order, which Session.get and the write
        # tracking use too (it may differ from the columns' order).
        table = self.columns[0].table
        self.pk_indexes = tuple(self.columns.index(c) for c in table.primary_key.columns)
        self._slots = tuple(_slot(f, c) for f, c in zip(fields, columns, strict=True))
        namespace: dict[str, Any] = {
            "__slots__": self._slots,
            "_fields": self.fields,
            "_model": model,
            "__module__": getattr(model, "__module__", __name__),
        }
        for field, column in zip(fields, columns, strict=True):
            if _slot(field, column) != field:
                namespace[field] = _copying_property(_slot(field, column))
        self.cls: type[Record] = type(name, (Record,), namespace)
        self.make: Callable[[Sequence[Any]], Record] = self._maker()

    def _maker(self) -> Callable[[Sequence[Any]], Record]:
        # Generated code: one slot store a field, no loop, no __setattr__.
        setters = {f"set{i}": getattr(self.cls, name).__set__ for i, name in enumerate(self._slots)}
        body = "".join(f"    set{i}(self, row[{i}])\n" for i in range(len(self.fields)))
        source = f"def make(row):\n    self = new(cls)\n{body}    return self\n"
        scope: dict[str, Any] = {"new": object.__new__, "cls": self.cls, **setters}
        exec(source, scope)
        return scope["make"]  # type: ignore[no-any-return]

    def from_instance(self, instance: Any) -> Record:
        """A record of an ORM instance's current column values."""
        return self.make([getattr(instance, f) for f in self.fields])


def _slot(field: str, column: Column[Any]) -> str:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = object
    immutable = python_type in IMMUTABLE_TYPES or issubclass(python_type, enum.Enum)
    return field if immutable else f"_{field}_value"


def _copying_property(slot: str) -> property:
    def get(self: Any) -> Any:
        return _frozen_copy(object.__getattribute__(self, slot))

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
    if not isinstance(table, Table) or mapper.inherits is not None:
        from .errors import ConfigError

        raise ConfigError(
            f"{model.__name__} is not mapped to a single table; dal repositories "
            "support models mapped to one Table without inheritance"
        )
    fields, columns = [], []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if isinstance(column, Column) and column.table is table:
            fields.append(prop.key)
            columns.append(column)
    return RecordType(model, f"{model.__name__}Record", columns, fields)


def _rebuild(model: Any, values: tuple[Any, ...]) -> Record:
    return record_type(model).make(values)
