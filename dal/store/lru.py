"""cachetools' LRUCache as the store needs it: entries as slots, evictions reported,
bounded by count as well as bytes, and a direct view of its recency order for hits.

Each cached entry is one ``Slot``: the LRU's key and value at once, hashed by
identity. A namespace maps its own keys to its slots, so a hit costs one lookup of
the caller's key (an int, a str: cheap to hash) and one ``move_to_end`` of a slot
(identity hash), never a hash of a ``(namespace, key)`` tuple.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import LRUCache

__all__ = ["LRU", "BytesLRU", "Key", "Slot", "fallback_order", "hit_order"]

#: (namespace, key within it): how the store names an entry or a load in flight.
Key = tuple[Any, Hashable]


class Slot:
    """One cached entry: its namespace and key, value, expiry and counted bytes.

    Equal only to itself: the namespace's entry dict keeps at most one slot per key.
    """

    __slots__ = ("expires", "key", "ns", "size", "value")

    def __init__(self, ns: Any, key: Hashable, value: Any, expires: float | None, size: int):
        self.ns = ns
        self.key = key
        self.value = value
        #: On the monotonic clock; None: no TTL applies, the clock is not read.
        self.expires = expires
        self.size = size


class LRU(LRUCache[Slot, Slot]):
    """cachetools' LRU of slots, reporting evictions, bounded by entries.

    ``LRU.bounded`` makes one bounded by bytes too (``BytesLRU``); the count alone
    needs nothing around cachetools' own ``__setitem__``, which a fill pays per entry.
    """

    def __init__(self, max_entries: int, on_evict: Callable[[Slot], None]) -> None:
        super().__init__(max_entries)
        self._on_evict = on_evict

    @staticmethod
    def bounded(max_entries: int, max_bytes: int | None, on_evict: Callable[[Slot], None]) -> LRU:
        """An LRU of at most ``max_entries`` slots, and of ``max_bytes`` if given."""
        if max_bytes is None:
            return LRU(max_entries, on_evict)
        return BytesLRU(max_entries, max_bytes, on_evict)

    def popitem(self) -> tuple[Slot, Slot]:
        key, value = super().popitem()
        self._on_evict(key)
        return key, value


class BytesLRU(LRU):
    """An LRU bounded by the slots' counted bytes, and by their number."""

    def __init__(self, max_entries: int, max_bytes: int, on_evict: Callable[[Slot], None]) -> None:
        LRUCache.__init__(self, max_bytes, getsizeof=_counted)
        self._max_entries = max_entries
        self._on_evict = on_evict

    def __setitem__(self, key: Slot, value: Slot) -> None:
        super().__setitem__(key, value)
        while len(self) > self._max_entries:
            self.popitem()


def _counted(slot: Slot) -> int:
    return slot.size


class _Order:
    """Stand-in for cachetools' recency order: a read through ``LRUCache`` is a use."""

    __slots__ = ("_lru",)

    def __init__(self, lru: LRU) -> None:
        self._lru = lru

    def move_to_end(self, slot: Slot) -> None:
        self._lru[slot]  # LRUCache.__getitem__ moves the key to the recent end


def hit_order(lru: LRU) -> Any:
    """cachetools' own recency order, for the hit path.

    A hit then costs one ``move_to_end`` (what ``LRUCache.__getitem__`` does, minus
    two Python frames); inserts, evictions and size accounting still go through
    cachetools.
    """
    order = getattr(lru, "_LRUCache__order", None)
    if isinstance(order, OrderedDict):
        return order
    return fallback_order(lru)


def fallback_order(lru: LRU) -> Any:
    """Recency through cachetools' public methods, used if its internals change."""
    return _Order(lru)
