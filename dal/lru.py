"""cachetools' LRUCache as the store needs it: evictions reported, entries bounded
by count as well as bytes, and direct views of its dict for the hit path."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import LRUCache

__all__ = ["LRU", "Entry", "Key", "hit_views"]

#: (namespace, key within it)
Key = tuple[Any, Hashable]
#: (value, expiry on the monotonic clock or None)
Entry = tuple[Any, "float | None"]


class LRU(LRUCache[Key, Entry]):
    """cachetools' LRU, reporting evictions and bounding entries as well as bytes."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int | None,
        on_evict: Callable[[Key], None],
    ) -> None:
        if max_bytes is None:
            super().__init__(max_entries)
        else:
            super().__init__(max_bytes, getsizeof=_sizeof)
        self._max_entries = max_entries
        self._on_evict = on_evict

    def __setitem__(self, key: Key, value: Entry) -> None:
        super().__setitem__(key, value)
        while len(self) > self._max_entries:
            self.popitem()

    def popitem(self) -> tuple[Key, Entry]:
        key, value = super().popitem()
        self._on_evict(key)
        return key, value


class _Entries:
    """Stand-in for cachetools' entry dict if its internals ever change: slower, same result."""

    def __init__(self, lru: LRU) -> None:
        self._lru = lru

    def get(self, key: Key, default: Any = None) -> Any:
        return self._lru.get(key, default)  # LRUCache.get refreshes recency itself

    def __getitem__(self, key: Key) -> Any:
        return self._lru[key]


class _Order:
    def move_to_end(self, key: Key) -> None:
        pass


def hit_views(lru: LRU) -> tuple[Any, Any]:
    """cachetools' own entry dict and recency order, for the hit path.

    A hit then costs one dict lookup and one ``move_to_end`` (what
    ``LRUCache.__getitem__`` does, minus two Python frames); inserts, evictions
    and size accounting still go through cachetools.
    """
    entries = getattr(lru, "_Cache__data", None)
    order = getattr(lru, "_LRUCache__order", None)
    if isinstance(entries, dict) and isinstance(order, OrderedDict):
        return entries, order
    return _Entries(lru), _Order()


def _sizeof(entry: Entry) -> int:
    """Approximate bytes of one entry: the value and its direct members."""
    value = entry[0]
    size = sys.getsizeof(value)
    members = getattr(value, "_values", None)
    items = members() if callable(members) else value
    if isinstance(items, (tuple, list)):
        size += sum(sys.getsizeof(item) for item in items)
    return size
