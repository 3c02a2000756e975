"""A Tornado service over dal: items read from memory, fresh after every write.

Run it (an embedded SQLite file, nothing else needed)::

    python examples/tornado_app.py
    curl localhost:8888/items/1
    curl -X PUT -d '{"price_cents": 1250}' localhost:8888/items/1
    curl 'localhost:8888/items?city=Lisbon'

or on a server: ``--db mysql+asyncmy://root@127.0.0.1/shop`` (MariaDB, MySQL) or
``--db postgresql+asyncpg://postgres@127.0.0.1/shop``. It creates its items table and
fills it if the table is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from http import HTTPStatus
from typing import Any

import tornado.netutil
import tornado.web
from sqlalchemy import String, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tornado.httpserver import HTTPServer

import dal

CITIES = ("Lisbon", "Oslo", "Porto", "Quito", "Tunis", "Turin")


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    city: Mapped[str] = mapped_column(String(100), index=True)
    price_cents: Mapped[int]


class Items(dal.AsyncRepository[Item]):
    pass


#: What a PUT may change, and the JSON type of each.
EDITABLE = {"name": str, "city": str, "price_cents": int}

#: dal's errors that say the database cannot serve now (unreachable, failing, the pool
#: full for pool_timeout seconds, shutting down): a 503 tells clients to come back later.
#: Any other error is a bug here: a 500.
UNAVAILABLE = (dal.DatabaseError, dal.PoolTimeout, dal.DatabaseClosed)


class Handler(tornado.web.RequestHandler):
    """Errors as JSON: ``{"error": "..."}``."""

    @property
    def items(self) -> Items:
        items: Items = self.settings["items"]
        return items

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        message = None
        if isinstance(error, tornado.web.HTTPError):
            message = error.log_message
        elif isinstance(error, UNAVAILABLE):  # the details go to the server's log only
            status_code = 503
            self.set_status(status_code)
        self.finish({"error": message or HTTPStatus(status_code).phrase})


class ItemHandler(Handler):
    async def get(self, item_id: str) -> None:
        item = await self.items.get(int(item_id))
        if item is None:
            raise tornado.web.HTTPError(404, f"no item {item_id}")
        self.write(item._asdict())

    async def put(self, item_id: str) -> None:
        changes = self.parse_changes()
        try:
            item = await self.items.update(int(item_id), **changes)  # commits, then returns
        except dal.NotFoundError:
            raise tornado.web.HTTPError(404, f"no item {item_id}") from None
        self.write(item._asdict())

    def parse_changes(self) -> dict[str, Any]:
        """The body's fields, or a 400 saying what is wrong with it."""
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(body, dict) or not body:
            raise tornado.web.HTTPError(400, "the body must be a non-empty JSON object")
        for field, value in body.items():
            kind = EDITABLE.get(field)
            if kind is None:
                raise tornado.web.HTTPError(400, f"unknown field {field!r}")
            # bool is an int to Python, not to a JSON client
            if not isinstance(value, kind) or isinstance(value, bool):
                json_type = "a string" if kind is str else "an integer"
                raise tornado.web.HTTPError(400, f"{field} must be {json_type}")
            # what the columns hold: past it the database would refuse the write
            if isinstance(value, str) and not 0 < len(value) <= 100:
                raise tornado.web.HTTPError(400, f"{field} must have 1 to 100 characters")
            if isinstance(value, int) and not 0 <= value < 2**31:
                raise tornado.web.HTTPError(400, f"{field} must be from 0 to 2**31 - 1")
        return body


class ItemsHandler(Handler):
    async def get(self) -> None:
        city = self.get_query_argument("city", None)
        where: dict[str, Any] = {} if city is None else {"city": city}
        found = await self.items.find(order_by="id", limit=100, **where)
        self.write({"items": [item._asdict() for item in found]})


class NotFoundHandler(Handler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no such resource")


class HealthHandler(Handler):
    def get(self) -> None:
        self.write({"status": "ok"})


class StatsHandler(Handler):
    def get(self) -> None:
        self.write(self.settings["db"].stats())  # cache hits and misses, pool gauges


def make_app(db: dal.AsyncDatabase, items: Items | None = None) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/items/([0-9]{1,9})", ItemHandler),
            (r"/items", ItemsHandler),
            (r"/health", HealthHandler),
            (r"/stats", StatsHandler),
        ],
        default_handler_class=NotFoundHandler,
        db=db,
        items=items if items is not None else Items(db),
    )


def sample_items(rows: int) -> list[dict[str, Any]]:
    """Items 1 to ``rows``: "item 1" in Oslo at 10 cents, "item 2" in Porto at 20, ..."""
    return [
        {"id": i, "name": f"item {i}", "city": CITIES[i % len(CITIES)], "price_cents": i * 10}
        for i in range(1, rows + 1)
    ]


async def create_items(db: dal.AsyncDatabase, rows: int) -> None:
    """Create the items table, and fill it with ``rows`` items if it is empty."""
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with db.session() as session:
        if not await session.scalar(select(func.count()).select_from(Item)):
            await session.execute(insert(Item), sample_items(rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A Tornado service over dal.")
    parser.add_argument("--db", help="database URL (default: the embedded SQLite file)")
    parser.add_argument("--port", type=int, default=8888, help="0: any free port")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--rows", type=int, default=1000, help="items to create if none")
    return parser.parse_args(argv)


async def serve(app: tornado.web.Application, port: int, address: str) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then finish the requests in flight."""
    server = HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, address)
    server.add_sockets(sockets)
    logging.info("listening on http://%s:%d", address, sockets[0].getsockname()[1])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The seed's tornado_mysql.pools.Pool(max_idle_connections=10, max_recycle_sec=30):
    # 10 connections kept open, each replaced after 30 s. Unlike the seed's pool, dal's
    # is bounded (max_overflow=10 more under load, then pool_timeout=30 s of waiting and
    # a 503) rather than opening connections without limit.
    db = dal.AsyncDatabase(args.db, pool_size=10, pool_recycle=30)
    try:
        await create_items(db, args.rows)
        await serve(make_app(db), args.port, args.address)
    finally:
        await db.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(main())
