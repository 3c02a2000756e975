"""The http workload's load generator counts what a client sees, over real HTTP.

The example app runs in the test's event loop on the benchmark's in-memory items:
once as they are, once with reads that never see a write (a cache without
invalidation). The checker must find no stale read in the first and some in the second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.netutil
from tornado.httpserver import HTTPServer

from benchmarks import loadgen
from benchmarks.httpserver import MemoryItems, NoStats, Row, seeded
from examples.tornado_app import make_app

ROWS = 1_000


class NeverInvalidated(MemoryItems):
    """Writes land, reads keep answering what the rows held at the start."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.first = seeded(rows)

    async def get(self, pk: int) -> Row | None:
        return self.first.get(pk)


def drive(items: MemoryItems, *extra: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        server = HTTPServer(make_app(NoStats(), items))  # type: ignore[arg-type]
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        argv = ["--port", str(port), "--rows", str(ROWS), "--requests", "3000"]
        args = loadgen.parser().parse_args(
            [*argv, "--seconds", "120", "--put-share", "0.2", *extra]
        )
        try:
            return await loadgen.drive(args)
        finally:
            server.stop()

    return asyncio.run(run())


def test_a_fresh_server_shows_no_stale_read() -> None:
    items = MemoryItems(ROWS)
    result = drive(items)
    assert result["requests"] == 3000
    assert result["puts"] >= 3000 * 0.2 * 0.5  # a PUT of an item in flight turns into a GET
    assert result["gets"] + result["puts"] == 3000
    assert result["errors"] == 0
    assert result["stale_reads"] == 0
    assert len(result["latencies_ns"]) == 3000
    # every PUT landed: the hottest rows now carry the client's prices
    assert max(row.price_cents for row in items.rows.values()) >= loadgen.FIRST_PRICE


def test_reads_that_miss_writes_are_counted_stale() -> None:
    result = drive(NeverInvalidated(ROWS))
    assert result["errors"] == 0
    assert result["stale_reads"] > 0


def test_the_load_stops_at_its_time_bound() -> None:
    result = drive(MemoryItems(ROWS), "--seconds", "0")
    assert result["requests"] == 0
