"""Bytes per cached row: dal's cache beside a plain dict of tuples, by ``tracemalloc``.

Both hold the same rows, read from the database while tracing, so the values
themselves (strings, ints) count in both. dal's figure is everything its store keeps
per row: the record, the entry and key tuples, the LRU order and the namespace's key
set; the dict's is the dict, its tuples and their values: the least a cache of rows
can hold.
"""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from .core import core_read_many
from .env import Env

__all__ = ["Memory", "measure"]

_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Memory:
    rows: int
    dal_bytes_per_row: float
    dict_bytes_per_row: float

    @property
    def ratio(self) -> float:
        return self.dal_bytes_per_row / self.dict_bytes_per_row

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def measure(env: Env) -> Memory:
    """Fill each with the same ``cache_size`` rows and count what stays allocated."""
    import dal

    from .competitors import repository_class

    keys = env.keys.ranked[: min(env.config.cache_size, env.config.rows)]
    chunks = [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
    load_many = core_read_many(env.engine)
    load_many(env.keys.warm)  # connect and compile before tracing

    def fill_dict() -> object:
        return {key: tuple(row) for chunk in chunks for key, row in load_many(chunk).items()}

    db = dal.Database(env.url, cache_size=len(keys))
    try:
        items = repository_class()(db)
        items.get_many(env.keys.warm)  # connect and compile before tracing
        db._store.clear()

        def fill_dal() -> object:
            for chunk in chunks:
                items.get_many(chunk)
            return db

        dal_bytes = _retained(fill_dal)
        cached = db.stats()["cache"]["currsize"]
    finally:
        db.close()
    if cached != len(keys):
        raise RuntimeError(f"dal cached {cached} of {len(keys)} rows: the figure would be wrong")
    dict_bytes = _retained(fill_dict)
    return Memory(len(keys), dal_bytes / len(keys), dict_bytes / len(keys))


def _retained(fill: Callable[[], object]) -> int:
    """Bytes allocated by ``fill`` that are still alive while what it returned is."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return after - before
