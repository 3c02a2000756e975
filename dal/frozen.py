"""Safe values: what a cached function returned, made safe to share between callers.

Stored once in a form no caller can change; each hit hands out a fresh copy of
any container, so mutating a result never reaches the cache or another caller.
ORM instances become records: a live object bound to a session is never cached.
"""

from __future__ import annotations

import copy
import enum
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Row
from sqlalchemy.engine.result import result_tuple

from .records import IMMUTABLE_TYPES, Record, record_type

__all__ = ["freeze", "thaw"]


class _Copy:
    """A stored value that is copied on every hit."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def thaw(self) -> Any:
        return copy.deepcopy(self.value)


class _List(_Copy):
    def thaw(self) -> Any:
        return list(self.value)


class _Dict(_Copy):
    def thaw(self) -> Any:
        return dict(self.value)


class _Set(_Copy):
    def thaw(self) -> Any:
        return set(self.value)


_COPIES = frozenset({_Copy, _List, _Dict, _Set})


def thaw(stored: Any) -> Any:
    """What a hit returns: the stored value, or a fresh copy of its container."""
    return stored.thaw() if type(stored) in _COPIES else stored


def freeze(value: Any) -> Any:
    """The form to store ``value`` in (done once, when a load fills the cache)."""
    value = _detach(value)
    if _immutable(value):
        return value
    kind = type(value)
    if kind is list and all(_immutable(item) for item in value):
        return _List(tuple(value))
    if kind is dict and all(_immutable(item) for item in value.values()):
        return _Dict(tuple(value.items()))
    if kind is set and all(_immutable(item) for item in value):
        return _Set(frozenset(value))
    return _Copy(copy.deepcopy(value))


def _immutable(value: Any) -> bool:
    kind = type(value)
    if kind in IMMUTABLE_TYPES or isinstance(value, (Record, enum.Enum)):
        return True
    if kind is tuple or kind is frozenset or isinstance(value, Row):
        return all(_immutable(item) for item in value)
    return False


def _detach(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``value`` with ORM instances replaced by records, through containers.

    ``memo`` (``id(instance)`` -> record) makes an instance reached twice one record.
    """
    kind = type(value)
    if kind in IMMUTABLE_TYPES:
        return value
    memo = {} if memo is None else memo
    if kind is list:
        return [_detach(v, memo) for v in value]
    if kind is tuple:
        return tuple(_detach(v, memo) for v in value)
    if kind is set or kind is frozenset:
        return kind(_detach(v, memo) for v in value)
    if kind is dict:
        return {_detach(k, memo): _detach(v, memo) for k, v in value.items()}
    if isinstance(value, Row):
        if all(_immutable(v) for v in value):
            return value
        # A Row again, so row.User and row._mapping keep working.
        return result_tuple(value._fields)([_detach(v, memo) for v in value])
    state = sa_inspect(value, raiseerr=False)
    mapper = getattr(state, "mapper", None)
    if mapper is not None and getattr(state, "obj", None) is not None:
        found = memo.get(id(value))
        if found is None:
            found = record_type(mapper.class_).from_instance(value, memo)
        return found
    return value
