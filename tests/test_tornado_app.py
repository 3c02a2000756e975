"""examples/tornado_app.py over real HTTP, on SQLite, PostgreSQL and MariaDB.

The app runs on a real port in the test's event loop and Tornado's HTTP client talks
to it; a last test starts it the way the README says and asks for ``/health``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tornado.netutil
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

import dal
from examples.tornado_app import CITIES, Base, create_items, make_app
from tests.aiohelp import join_aiosqlite_threads

ROOT = Path(__file__).resolve().parents[1]
ROWS = 30


class Client:
    """JSON requests to the app: (status, decoded body)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        response = await self.http.fetch(
            self.base + path, method=method, body=data, raise_error=False
        )
        assert response.headers["Content-Type"].startswith("application/json"), response.body
        return response.code, json.loads(response.body)

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def put(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body)


@asynccontextmanager
async def serving(db: dal.AsyncDatabase) -> AsyncIterator[Client]:
    """The app over ``db`` on a free port, and a client for it."""
    server = HTTPServer(make_app(db))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    try:
        yield Client(sockets[0].getsockname()[1])
    finally:
        server.stop()
        await server.close_all_connections()


@asynccontextmanager
async def running(url: str, **settings: Any) -> AsyncIterator[tuple[Client, dal.AsyncDatabase]]:
    """The app over a fresh ``AsyncDatabase`` with its items; no connection left out after."""
    db = dal.AsyncDatabase(url, **{"pool_size": 10, "pool_recycle": 30, **settings})
    try:
        await create_items(db, ROWS)
        async with serving(db) as client:
            yield client, db
        checked_out = db.stats()["pool"]["checked_out"]
        assert checked_out == 0, f"{checked_out} connection(s) still checked out"
    finally:
        await db.close()


@pytest.fixture
def service_url(adb_sync_url: str, adb_url: str) -> Iterator[str]:
    """The async URL of each backend in turn; the items table is dropped after the test."""
    yield adb_url
    engine = create_engine(adb_sync_url, poolclass=NullPool)
    try:
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def cache(db: dal.AsyncDatabase) -> tuple[int, int]:
    counters = db.stats()["cache"]
    return counters["hits"], counters["misses"]


async def test_reads_are_cached_and_fresh_after_an_update(service_url: str) -> None:
    async with running(service_url) as (client, db):
        assert await client.get("/items/9") == (
            200,
            {"id": 9, "name": "item 9", "city": "Quito", "price_cents": 90},
        )
        hits, misses = cache(db)
        assert (await client.get("/items/9"))[0] == 200
        assert cache(db) == (hits + 1, misses)  # served from memory

        status, found = await client.get("/items?city=Oslo")
        assert status == 200
        oslo = [i for i in range(1, ROWS + 1) if CITIES[i % len(CITIES)] == "Oslo"]
        assert [item["id"] for item in found["items"]] == oslo
        assert 9 not in oslo

        status, item = await client.put("/items/9", {"city": "Oslo", "price_cents": 1250})
        assert (status, item["city"], item["price_cents"]) == (200, "Oslo", 1250)
        # The very next reads, of the row and of the query, see the write.
        assert (await client.get("/items/9"))[1]["price_cents"] == 1250
        status, found = await client.get("/items?city=Oslo")
        assert [item["id"] for item in found["items"]] == sorted([*oslo, 9])


async def test_a_missing_item_is_a_json_404(service_url: str) -> None:
    async with running(service_url) as (client, _):
        assert await client.get(f"/items/{ROWS + 1}") == (404, {"error": f"no item {ROWS + 1}"})
        status, error = await client.put(f"/items/{ROWS + 1}", {"price_cents": 1})
        assert (status, error) == (404, {"error": f"no item {ROWS + 1}"})
        assert (await client.get("/items/99999999999"))[0] == 404  # no such route: JSON too
        assert (await client.get("/nothing"))[0] == 404


BAD_BODIES = [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "the body must be a non-empty JSON object"),
    ({}, "the body must be a non-empty JSON object"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"id": 8}, "unknown field 'id'"),
    ({"price_cents": "12"}, "price_cents must be an integer"),
    ({"price_cents": True}, "price_cents must be an integer"),
    ({"price_cents": 1.5}, "price_cents must be an integer"),
    ({"name": None}, "name must be a string"),
    ({"name": ""}, "name must have 1 to 100 characters"),
    ({"city": "x" * 101}, "city must have 1 to 100 characters"),
    ({"price_cents": -1}, "price_cents must be from 0 to 2**31 - 1"),
    ({"price_cents": 2**31}, "price_cents must be from 0 to 2**31 - 1"),
]


async def test_a_bad_body_is_a_400_and_writes_nothing(service_url: str) -> None:
    async with running(service_url) as (client, _):
        status, before = await client.get("/items/8")
        assert status == 200
        for body, message in BAD_BODIES:
            assert await client.put("/items/8", body) == (400, {"error": message}), body
        assert await client.get("/items/8") == (200, before)


async def test_stats_report_the_cache_and_the_pool(service_url: str) -> None:
    async with running(service_url) as (client, _):
        for _ in range(3):
            await client.get("/items/9")
        status, stats = await client.get("/stats")
        assert status == 200
        assert stats["cache"]["hits"] >= 2
        assert stats["cache"]["misses"] >= 1
        assert stats["pool"]["checked_out"] == 0
        assert stats["pool"]["size"] == 10


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/shop",  # nothing listens on port 1
        "sqlite+aiosqlite:////nonexistent/directory/shop.sqlite3",
    ],
)
async def test_an_unreachable_database_is_a_503(url: str) -> None:
    db = dal.AsyncDatabase(url)
    try:
        async with serving(db) as client:
            assert await client.get("/items/1") == (503, {"error": "Service Unavailable"})
            assert await client.get("/health") == (200, {"status": "ok"})
    finally:
        await db.close()
    join_aiosqlite_threads()


async def test_a_full_pool_is_a_503_after_pool_timeout(service_url: str) -> None:
    async with running(service_url, pool_size=1, max_overflow=0, pool_timeout=0.2) as (client, db):
        assert (await client.get("/items/10"))[0] == 200
        async with db.engine.connect() as held:  # the pool's only connection
            await held.exec_driver_sql("SELECT 1")
            assert await client.get("/items/11") == (503, {"error": "Service Unavailable"})
            assert (await client.get("/items/10"))[0] == 200  # a hit needs no connection
        assert (await client.get("/items/11"))[0] == 200


async def test_a_closed_database_is_a_503(service_url: str) -> None:
    async with running(service_url) as (client, db):
        await db.close()
        assert await client.get("/items/12") == (503, {"error": "Service Unavailable"})


def test_the_documented_command_serves(tmp_path: Path) -> None:
    # `python examples/tornado_app.py`, on a free port, in a directory of its own: the
    # embedded SQLite file is created there.
    env = {k: v for k, v in os.environ.items() if k != "DAL_DATABASE_URL"}
    command = [sys.executable, str(ROOT / "examples" / "tornado_app.py"), "--port", "0"]
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []
    started = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    with started as proc:

        def read() -> None:
            for line in proc.stderr or ():
                log.append(line)
                lines.put(line)
            lines.put(None)  # it exited

        reader = threading.Thread(target=read)
        reader.start()
        try:
            port = None
            while port is None:
                line = lines.get(timeout=60)
                assert line is not None, "".join(log)
                if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                    port = int(match[1])
            url = f"http://127.0.0.1:{port}"
            with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
                assert json.load(response) == {"status": "ok"}
            with urllib.request.urlopen(f"{url}/items/1", timeout=30) as response:
                assert json.load(response)["name"] == "item 1"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, "".join(log)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join()
    assert "Traceback" not in "".join(log)
    assert (tmp_path / "dal.sqlite3").exists()
