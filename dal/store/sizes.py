"""Bytes an entry holds, for ``cache_bytes``: its value and key, deeply, plus the
store's own bookkeeping per entry.

Counted once, when a load fills the cache, never on a hit. Objects that the entry
does not own (classes, functions, modules, enum members, ``None``, booleans, small
ints) are not counted; an object reachable twice is counted once.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import types
from typing import Any

from sqlalchemy.engine import Row

__all__ = ["PER_ENTRY", "entry_size"]

#: The store's bytes per entry beyond its key and value: the slot and its size, and
#: its share of the LRU's dict and order, the size table and the namespace's entry
#: dict. Those dicts grow in powers of two, so the share swings with how full they
#: are (about +-12%); this is its middle, measured with tracemalloc on CPython 3.11
#: (tests/test_cache_bytes.py checks the swing stays within its stated tolerance).
PER_ENTRY = 515

#: Shared with the rest of the program, never the entry's own.
_SHARED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    enum.Enum,
)

#: Leaves: ``sys.getsizeof`` tells all of their size.
_LEAVES = frozenset({str, bytes, int, float, complex, bytearray})


def entry_size(key: Any, value: Any, expires: float | None) -> int:
    """Bytes held by an entry of ``value`` under the in-namespace ``key``."""
    seen: set[int] = set()
    size = PER_ENTRY + _deep(key, seen) + _deep(value, seen)
    return size if expires is None else size + sys.getsizeof(expires)


def _deep(root: Any, seen: set[int]) -> int:
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is None or obj is True or obj is False or id(obj) in seen:
            continue
        kind = type(obj)
        if kind is int and -5 <= obj <= 256:  # CPython's shared small ints
            continue
        if isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if kind in _LEAVES:
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (tuple, list, set, frozenset, Row)):
            stack.extend(obj)
        else:
            stack.extend(_members(obj))
    return total


def _members(obj: Any) -> list[Any]:
    """What an object refers to through its slots and its ``__dict__``."""
    members = []
    for name in _slot_names(type(obj)):
        with contextlib.suppress(AttributeError):  # an empty slot
            members.append(object.__getattribute__(obj, name))
    instance_dict = getattr(obj, "__dict__", None)
    if isinstance(instance_dict, dict):
        members.append(instance_dict)
    return members


_slots_of: dict[type, tuple[str, ...]] = {}


def _slot_names(cls: type) -> tuple[str, ...]:
    found = _slots_of.get(cls)
    if found is None:
        names: list[str] = []
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            names.extend([slots] if isinstance(slots, str) else slots)
        found = _slots_of[cls] = tuple(n for n in names if n not in ("__dict__", "__weakref__"))
    return found
