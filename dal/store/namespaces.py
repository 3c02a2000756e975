"""Namespaces of the store, and which of their keys a committed change makes stale.

A namespace is one repository's rows or finds, or one cached function. A change names
tables and primary keys; a row namespace loses just those rows' keys, any other one is
dropped whole (``Store._invalidate``).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Any

from ..errors import UncacheableArgument
from ..tracking.statements import ALL, NEW_ROWS
from .keys import PrimaryKey
from .lru import Key, Slot

__all__ = ["Changes", "Namespace", "describe", "row_keys"]

#: Committed changes: table name -> primary-key tuples, or ``None`` for "any row".
Changes = Mapping[str, Collection[tuple[Any, ...]] | None]


class Namespace:
    """One repository's rows or finds, or one cached function: keys ``(ns, k)``.

    A row namespace (``pk`` set) holds one table's rows by primary key and loses
    only the written keys; any other namespace is dropped whole when a table it
    depends on is written.
    """

    __slots__ = ("entries", "hits", "loads", "misses", "name", "pk", "tables", "ttl")

    def __init__(
        self, name: str, tables: frozenset[str], ttl: float | None, pk: PrimaryKey | None = None
    ) -> None:
        self.name = name
        self.tables = tables
        self.ttl = ttl
        self.pk = pk
        #: Key within the namespace -> its cached entry; never rebound (hit paths hold it).
        self.entries: dict[Hashable, Slot] = {}
        self.hits = self.misses = self.loads = 0

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"


def row_keys(ns: Namespace, pks: Collection[tuple[Any, ...]]) -> list[Key] | None:
    """Keys of written rows in a row namespace, or ``None`` if a pk is unusable."""
    assert ns.pk is not None
    try:
        return [(ns, ns.pk.written(pk)) for pk in pks if pk != NEW_ROWS]
    except (UncacheableArgument, IndexError):
        return None


def describe(changes: Changes) -> str:
    """Which tables a commit touched and how many rows; never the keys themselves."""
    if ALL in changes:
        return "every table (cache cleared)"
    parts = []
    for table, pks in changes.items():
        rows = "all rows" if pks is None else f"{sum(pk != NEW_ROWS for pk in pks)} row(s)"
        parts.append(f"{table} ({rows}{', new rows' if pks and NEW_ROWS in pks else ''})")
    return ", ".join(parts)
