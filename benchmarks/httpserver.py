"""``python -m benchmarks.httpserver``: examples/tornado_app.py in one of three variants.

The same handlers, routes and JSON in all three; only what ``items`` is differs:

- ``nodb``: a dict in memory, no database work at all: the ceiling;
- ``raw``: the seed's way, a raw async driver pool (asyncpg, asyncmy, or aiosqlite
  connections), one query per request, no cache;
- ``dal``: the example as it is, ``dal.AsyncRepository`` over ``dal.AsyncDatabase``.

The items table must exist and be filled (``create_items``); the server prints
``listening on http://127.0.0.1:PORT`` on stderr once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.engine import make_url

import dal

__all__ = ["VARIANTS", "async_url", "main"]

Row = collections.namedtuple("Row", ["id", "name", "city", "price_cents"])
COLUMNS = ", ".join(Row._fields)

#: backend -> its async driver, as SQLAlchemy names it.
ASYNC_DRIVERS = {"postgresql": "asyncpg", "mysql": "asyncmy", "sqlite": "aiosqlite"}


def async_url(url: str) -> str:
    """``url`` with the backend's async driver (``postgresql+psycopg2`` -> ``+asyncpg``)."""
    parsed = make_url(url)
    driver = ASYNC_DRIVERS[parsed.get_backend_name()]
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(
        hide_password=False
    )


def seeded(rows: int) -> dict[int, Row]:
    """The rows ``create_items`` writes, in memory."""
    from examples.tornado_app import sample_items  # tornado: imported only where it runs

    return {values["id"]: Row(**values) for values in sample_items(rows)}


class NoStats:
    """``/stats`` of the variants without dal: nothing to count."""

    def stats(self) -> dict[str, Any]:
        return {}


class WithCpu:
    """``/stats`` with the server process's CPU time, so the load can say what a request
    cost the server (on two cores the wall time also pays for the client and database)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def stats(self) -> dict[str, Any]:
        return {**self.inner.stats(), "server": {"cpu_ns": time.process_time_ns()}}


class MemoryItems:
    """The repository's reads and writes on a dict: the app's own cost, nothing else."""

    def __init__(self, rows: int) -> None:
        self.rows = seeded(rows)

    async def get(self, pk: int) -> Row | None:
        return self.rows.get(pk)

    async def find(self, *, order_by: str, limit: int, city: str | None = None) -> list[Row]:
        found = [r for r in self.rows.values() if city is None or r.city == city]
        return found[:limit]

    async def update(self, pk: int, **values: Any) -> Row:
        row = self.rows.get(pk)
        if row is None:
            raise dal.NotFoundError(pk)
        self.rows[pk] = row = row._replace(**values)
        return row


class RawItems:
    """A query per request on a pool of raw driver connections (autocommit)."""

    def __init__(self, connection: Callable[[], AbstractAsyncContextManager[Any]], mark: str):
        self.connection = connection
        self.mark = mark  # the driver's placeholder: $1, %s or ?

    def _sql(self, sql: str) -> str:
        if self.mark == "$":
            parts = sql.split("?")
            return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        return sql.replace("?", self.mark)

    async def _query(self, conn: Any, sql: str, *args: Any) -> list[Row]:
        if self.mark == "$":  # asyncpg
            return [Row(*r) for r in await conn.fetch(self._sql(sql), *args)]
        async with conn.cursor() as cur:
            await cur.execute(self._sql(sql), args)
            return [Row(*r) for r in await cur.fetchall()]

    async def get(self, pk: int) -> Row | None:
        async with self.connection() as conn:
            rows = await self._query(conn, f"SELECT {COLUMNS} FROM items WHERE id = ?", pk)
        return rows[0] if rows else None

    async def find(self, *, order_by: str, limit: int, city: str | None = None) -> list[Row]:
        where, args = ("WHERE city = ?", (city,)) if city is not None else ("", ())
        sql = f"SELECT {COLUMNS} FROM items {where} ORDER BY id LIMIT {int(limit)}"
        async with self.connection() as conn:
            return await self._query(conn, sql, *args)

    async def update(self, pk: int, **values: Any) -> Row:
        sets = ", ".join(f"{name} = ?" for name in values)  # names checked by the handler
        async with self.connection() as conn:
            await self._query(conn, f"UPDATE items SET {sets} WHERE id = ?", *values.values(), pk)
            if self.mark == "?":  # aiosqlite opened a transaction
                await conn.commit()
            rows = await self._query(conn, f"SELECT {COLUMNS} FROM items WHERE id = ?", pk)
        if not rows:
            raise dal.NotFoundError(pk)
        return rows[0]


@asynccontextmanager
async def raw_items(url: str, size: int) -> AsyncIterator[RawItems]:
    """``RawItems`` on a pool of ``size`` connections of the URL's async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        import asyncpg

        pool = await asyncpg.create_pool(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            database=parsed.database,
            min_size=size,
            max_size=size,
        )
        try:
            yield RawItems(pool.acquire, "$")
        finally:
            await pool.close()
    elif backend == "mysql":
        import asyncmy

        pool = await asyncmy.create_pool(
            host=parsed.host,
            port=parsed.port or 3306,
            user=parsed.username,
            password=parsed.password or "",
            db=parsed.database,
            minsize=size,
            maxsize=size,
            autocommit=True,
            pool_recycle=30,
        )
        try:
            yield RawItems(pool.acquire, "%s")
        finally:
            pool.close()
            await pool.wait_closed()
    else:
        import aiosqlite

        idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for _ in range(size):
            idle.put_nowait(await aiosqlite.connect(parsed.database or ""))

        @asynccontextmanager
        async def connection() -> AsyncIterator[aiosqlite.Connection]:
            conn = await idle.get()
            try:
                yield conn
            finally:
                idle.put_nowait(conn)

        try:
            yield RawItems(connection, "?")
        finally:
            while not idle.empty():
                await idle.get_nowait().close()


async def run(args: argparse.Namespace) -> None:
    from examples.tornado_app import Items, make_app, serve

    if args.variant == "nodb":
        app = make_app(WithCpu(NoStats()), MemoryItems(args.rows))  # type: ignore[arg-type]
        await serve(app, args.port, args.address)
    elif args.variant == "raw":
        async with raw_items(args.db, 10) as items:
            app = make_app(WithCpu(NoStats()), items)  # type: ignore[arg-type]
            await serve(app, args.port, args.address)
    else:
        # The example's own settings (its main), with the benchmark's cache size.
        db = dal.AsyncDatabase(args.db, pool_size=10, pool_recycle=30, cache_size=args.cache_size)
        try:
            app = make_app(WithCpu(db), Items(db))  # type: ignore[arg-type]
            await serve(app, args.port, args.address)
        finally:
            await db.close()


VARIANTS = ("nodb", "raw", "dal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.httpserver", description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--db", help="async database URL (raw, dal)")
    parser.add_argument("--rows", type=int, default=1000, help="rows in memory (nodb)")
    parser.add_argument("--cache-size", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args(argv)
    # Every request logged would measure the log: errors only.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
