"""``python -m benchmarks.loadgen``: HTTP/1.1 keep-alive load on a local server, as JSON.

Run as a process of its own so that the server measured has a core to itself (as far
as two cores allow) and pays nothing for the client. Each connection sends one request,
reads the response, and sends the next (a closed loop); all of them draw from one
sequence of Zipf-distributed item ids, a share of them PUTs. It stops after
``--requests`` requests or ``--seconds`` seconds, whichever comes first.

Stale reads: the client knows what it wrote. Each PUT writes a price no one wrote
before (a counter), and at most one PUT per item is in flight, so an item's price only
grows. A GET sent after a PUT's response arrived that returns a lower price is stale.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

from .data import KeySpace

__all__ = ["FIRST_PRICE", "drive", "main", "parser"]

#: Prices PUTs write: above every price the example's data starts with.
FIRST_PRICE = 100_000_000


class Connection:
    """One keep-alive HTTP/1.1 connection: one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                return status, await self.reader.readexactly(int(value))
        raise ValueError(f"a response without Content-Length: {header!r}")

    async def get_json(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body!r}")
        return json.loads(body)

    def close(self) -> None:
        self.writer.close()


class Load:
    """The requests, the client's record of its own writes, and what it saw."""

    def __init__(
        self, ids: Iterator[int], *, requests: int, put_every: int, deadline: float = math.inf
    ) -> None:
        self.ids = ids
        self.left = requests
        self.put_every = put_every  # every n-th request is a PUT; 0: none
        self.deadline = deadline
        self.prices = itertools.count(FIRST_PRICE)
        #: id -> the highest price whose PUT response has arrived.
        self.acked: dict[int, int] = {}
        self.writing: set[int] = set()
        self.latencies_ns: list[int] = []
        self.gets = self.puts = self.stale = self.errors = 0

    async def run(self, conn: Connection) -> None:
        clock = time.perf_counter_ns
        while self.left > 0 and time.monotonic() < self.deadline:
            self.left -= 1
            item = next(self.ids)
            put = self.put_every and self.left % self.put_every == 0
            if put and item not in self.writing:
                price = next(self.prices)
                self.writing.add(item)
                body = json.dumps({"price_cents": price}).encode()
                started = clock()
                status, _ = await conn.request("PUT", f"/items/{item}", body)
                self.latencies_ns.append(clock() - started)
                self.writing.discard(item)
                self.puts += 1
                if status == 200:
                    self.acked[item] = max(price, self.acked.get(item, 0))
                else:
                    self.errors += 1
                continue
            floor = self.acked.get(item, 0)
            started = clock()
            status, body = await conn.request("GET", f"/items/{item}")
            self.latencies_ns.append(clock() - started)
            self.gets += 1
            if status != 200:
                self.errors += 1
            elif json.loads(body)["price_cents"] < floor:
                self.stale += 1


def _counters(stats: dict[str, Any]) -> tuple[int, int, int]:
    """Cache hits, misses and server CPU ns from ``/stats`` (0 where it has none)."""
    cache = stats.get("cache", {})
    return cache.get("hits", 0), cache.get("misses", 0), stats.get("server", {}).get("cpu_ns", 0)


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Warm the connections (and, with ``--warm``, the cache), then measure."""
    keys = KeySpace(args.rows, args.seed)
    conns = [await Connection.open(args.host, args.port) for _ in range(args.connections)]
    try:
        # pools and statements on keys no measurement reads; then the cache, on a Zipf
        # sequence of its own, towards the hit ratio of a server that has been running
        warm = itertools.cycle(keys.warm)
        for conn in conns:
            for _ in range(4):
                await conn.get_json(f"/items/{next(warm)}")
        reads = Load(keys.zipf_stream(args.zipf, "http:warm"), requests=args.warm, put_every=0)
        await asyncio.gather(*(reads.run(conn) for conn in conns))
        hits, misses, cpu_ns = _counters(await conns[0].get_json("/stats"))
        load = Load(
            keys.zipf_stream(args.zipf, "http"),
            requests=args.requests,
            put_every=round(1 / args.put_share) if args.put_share else 0,
            deadline=time.monotonic() + args.seconds,
        )
        started = time.perf_counter_ns()
        await asyncio.gather(*(load.run(conn) for conn in conns))
        wall_ns = time.perf_counter_ns() - started
        after = _counters(await conns[0].get_json("/stats"))
    finally:
        for conn in conns:
            conn.close()
    return {
        "requests": load.gets + load.puts,
        "gets": load.gets,
        "puts": load.puts,
        "wall_ns": wall_ns,
        "latencies_ns": load.latencies_ns,
        "stale_reads": load.stale,
        "errors": load.errors + reads.errors,
        "cache_reads": (after[0] - hits) + (after[1] - misses),
        "cache_misses": after[1] - misses,
        "server_cpu_ns": after[2] - cpu_ns,
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, required=True)
    add("--rows", type=int, required=True, help="ids 1..rows exist")
    add("--requests", type=int, required=True, help="stop after this many requests")
    add("--seconds", type=float, required=True, help="or after this many seconds")
    add("--connections", type=int, default=16)
    add("--zipf", type=float, default=1.1)
    add("--put-share", type=float, default=0.05, help="share of requests that are PUTs")
    add("--warm", type=int, default=0, help="GETs before measuring, to fill a cache")
    add("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    json.dump(asyncio.run(drive(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
