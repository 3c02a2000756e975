"""cachetools' LRUCache as the store needs it: evictions reported, entries bounded
by count as well as bytes, and direct views of its dict for the hit path."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import Cache, LRUCache

__all__ = ["LRU", "Entry", "Key", "fallback_views", "hit_views"]

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
    """Stand-in for cachetools' entry dict if its internals ever change: slower, same result.

    A lookup must not count as use: the store checks expiry first and refreshes
    recency only for a live hit (``_Order``), and housekeeping reads entries too.
    ``Cache.__getitem__`` reads the entry without ``LRUCache``'s recency update.
    """

    __slots__ = ("_lru",)

    def __init__(self, lru: LRU) -> None:
        self._lru = lru

    def get(self, key: Key, default: Any = None) -> Any:
        try:
            return Cache.__getitem__(self._lru, key)
        except KeyError:
            return default

    def __getitem__(self, key: Key) -> Any:
        return Cache.__getitem__(self._lru, key)


class _Order:
    """Stand-in for cachetools' recency order: a read through ``LRUCache`` is a use."""

    __slots__ = ("_lru",)

    def __init__(self, lru: LRU) -> None:
        self._lru = lru

    def move_to_end(self, key: Key) -> None:
        self._lru[key]  # LRUCache.__getitem__ moves the key to the recent end


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
    return fallback_views(lru)


def fallback_views(lru: LRU) -> tuple[Any, Any]:
    """Views through cachetools' public methods, used if its internals change."""
    return _Entries(lru), _Order(lru)


def _sizeof(entry: Entry) -> int:
    """Approximate bytes of one entry: the value and its direct members."""
    value = entry[0]
    size = sys.getsizeof(value)
    members = getattr(value, "_values", None)
    items = members() if callable(members) else value
    if isinstance(items, (tuple, list)):
        size += sum(sys.getsizeof(item) for item in items)
    return size
