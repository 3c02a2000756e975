"""The benchmark's table: created, filled reproducibly from ``--seed``, and dropped;
the request sequences drawn over it; the Core statements every competitor but dal
runs on a miss or a write.

Keys are ranked by popularity through a seeded permutation, so the hot rows are
spread over the table, not ids 1, 2, 3...
A few keys are held back from every sequence to warm pools and statement caches
without caching anything a measurement reads.
"""

from __future__ import annotations

import functools
import itertools
import random
import string
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    Row,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "TABLE_NAME",
    "Item",
    "KeySpace",
    "Read",
    "Write",
    "core_read",
    "core_read_many",
    "core_write",
    "create",
    "drop",
    "item_table",
    "statements",
]

Read = Callable[[int], Any]
Write = Callable[[int, int], None]

TABLE_NAME = "dal_bench_item"
WARM_KEYS = 64
_CHUNK = 10_000


class Base(DeclarativeBase):
    pass


class Item(Base):
    """A row of a typical size: a few numbers and two short strings."""

    __tablename__ = TABLE_NAME

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(40))
    value: Mapped[int] = mapped_column(Integer)
    #: Raised by every write; the stale-read checker compares it.
    version: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(String(100))


def item_table() -> Table:
    table = Item.__table__
    assert isinstance(table, Table)
    return table


def create(engine: Engine, rows: int, seed: int) -> None:
    """(Re)create the table with ``rows`` rows, ids 1..rows, all at version 0."""
    table = item_table()
    rng = random.Random(f"{seed}:rows")
    letters = string.ascii_lowercase
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        for start in range(1, rows + 1, _CHUNK):
            conn.execute(
                insert(table),
                [
                    {
                        "id": key,
                        "name": "".join(rng.choices(letters, k=12)),
                        "value": rng.randrange(1_000_000),
                        "version": 0,
                        "payload": "".join(rng.choices(letters, k=64)),
                    }
                    for key in range(start, min(start + _CHUNK, rows + 1))
                ],
            )


def drop(engine: Engine) -> None:
    item_table().drop(engine, checkfirst=True)


class KeySpace:
    """Request sequences over the table's keys, reproducible from the seed."""

    def __init__(self, rows: int, seed: int) -> None:
        ranked = list(range(1, rows + 1))
        random.Random(f"{seed}:ranks").shuffle(ranked)
        #: Never in a sequence: read to warm a competitor without caching measured keys.
        self.warm = ranked[-WARM_KEYS:]
        #: Keys by popularity, most popular first.
        self.ranked = ranked[:-WARM_KEYS]
        self.seed = seed
        self._cum_weights: dict[float, list[float]] = {}

    def rng(self, purpose: str) -> random.Random:
        """A generator of its own per purpose, so adding one sequence changes no other."""
        return random.Random(f"{self.seed}:{purpose}")

    def zipf(self, n: int, s: float, purpose: str) -> list[int]:
        """``n`` keys, the k-th most popular drawn with probability proportional to k**-s."""
        return list(itertools.islice(self.zipf_stream(s, purpose), n))

    def zipf_stream(self, s: float, purpose: str) -> Iterator[int]:
        """An endless ``zipf`` sequence (the same keys as ``zipf`` for the same purpose)."""
        weights = self._cum_weights.get(s)
        if weights is None:
            ranks = range(1, len(self.ranked) + 1)
            weights = self._cum_weights[s] = list(itertools.accumulate(r**-s for r in ranks))
        rng = self.rng(purpose)
        while True:
            yield from rng.choices(self.ranked, cum_weights=weights, k=4_096)

    def uniform(self, keys: Sequence[int], n: int, purpose: str) -> list[int]:
        """``n`` keys drawn uniformly from ``keys``."""
        return self.rng(purpose).choices(keys, k=n)

    def distinct(self, n: int, purpose: str) -> list[int]:
        """``n`` different keys."""
        return self.rng(purpose).sample(self.ranked, n)


@functools.cache
def statements() -> tuple[Any, Any, Any]:
    """By key, by keys (expanding ``IN``), and the version update."""
    table = item_table()
    by_key = select(table).where(table.c.id == bindparam("key"))
    by_keys = select(table).where(table.c.id.in_(bindparam("keys", expanding=True)))
    set_version = (
        update(table).where(table.c.id == bindparam("key")).values(version=bindparam("new"))
    )
    return by_key, by_keys, set_version


def core_read(engine: Engine) -> Read:
    """A pooled Core SELECT by primary key: what a cache's loader runs on a miss."""
    by_key = statements()[0]

    def load(key: int) -> Row[Any] | None:
        with engine.connect() as conn:
            return conn.execute(by_key, {"key": key}).first()

    return load


def core_read_many(engine: Engine) -> Callable[[Sequence[int]], dict[int, Row[Any]]]:
    """One pooled Core SELECT ... WHERE id IN (...) for a batch of keys."""
    by_keys = statements()[1]

    def load_many(keys: Sequence[int]) -> dict[int, Row[Any]]:
        with engine.connect() as conn:
            return {row.id: row for row in conn.execute(by_keys, {"keys": list(keys)})}

    return load_many


def core_write(engine: Engine) -> Write:
    """A Core UPDATE of the row's version in its own transaction."""
    set_version = statements()[2]

    def write(key: int, version: int) -> None:
        with engine.begin() as conn:
            conn.execute(set_version, {"key": key, "new": version})

    return write
