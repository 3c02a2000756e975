"""The SQLAlchemy Core reads and writes every competitor but dal runs on a miss or a write."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, Row, bindparam, select, update

from .data import item_table

__all__ = ["Read", "Write", "core_read", "core_read_many", "core_write"]

Read = Callable[[int], Any]
Write = Callable[[int, int], None]


@functools.cache
def _statements() -> tuple[Any, Any, Any]:
    table = item_table()
    by_key = select(table).where(table.c.id == bindparam("key"))
    by_keys = select(table).where(table.c.id.in_(bindparam("keys", expanding=True)))
    set_version = (
        update(table).where(table.c.id == bindparam("key")).values(version=bindparam("new"))
    )
    return by_key, by_keys, set_version


def core_read(engine: Engine) -> Read:
    """A pooled Core SELECT by primary key: what a cache's loader runs on a miss."""
    by_key = _statements()[0]

    def load(key: int) -> Row[Any] | None:
        with engine.connect() as conn:
            return conn.execute(by_key, {"key": key}).first()

    return load


def core_read_many(engine: Engine) -> Callable[[Sequence[int]], dict[int, Row[Any]]]:
    """One pooled Core SELECT ... WHERE id IN (...) for a batch of keys."""
    by_keys = _statements()[1]

    def load_many(keys: Sequence[int]) -> dict[int, Row[Any]]:
        with engine.connect() as conn:
            return {row.id: row for row in conn.execute(by_keys, {"keys": list(keys)})}

    return load_many


def core_write(engine: Engine) -> Write:
    """A Core UPDATE of the row's version in its own transaction."""
    set_version = _statements()[2]

    def write(key: int, version: int) -> None:
        with engine.begin() as conn:
            conn.execute(set_version, {"key": key, "new": version})

    return write
