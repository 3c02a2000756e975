"""``http``: examples/tornado_app.py under HTTP load from another process, three ways.

The same Tornado app (handlers, routes, JSON) serves the same Zipf-distributed GETs
and PUTs of ``/items/<id>`` with no database work (the ceiling), on a raw async driver
pool with a query per request (the seed's way), and on dal. Each measurement starts
``python -m benchmarks.httpserver`` in one variant, waits for its port, runs
``python -m benchmarks.loadgen`` against it over loopback, and stops the server with
SIGTERM: the server has the process to itself, and its figures are its own.

Its throughput targets come with the most any cache could reach on the same run
(``free_cache``): the ceiling and the raw app say what a request and a trip to the
database cost, dal's hit ratio and the PUT share how many requests must still make it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Table, insert, inspect

from .base import COMPETITORS, Case, Competitor, Kind, Unavailable, Workload, competitor, workload
from .config import Env
from .results import Limit, Rows, Rule, Sample, stale, throughput_ratio

__all__ = ["HttpLoad", "free_cache", "measure", "reaching_database", "running_server"]

ROOT = Path(__file__).resolve().parents[1]
#: How long a server may take to listen, or to stop, before the run fails.
STARTUP_S = 60.0
PUT_SHARE = 0.05
_CHUNK = 10_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpLoad:
    """What the load process sends: its bounds and its mix (see ``benchmarks.loadgen``)."""

    rows: int
    requests: int
    seconds: float
    connections: int
    zipf: float
    put_share: float
    seed: int
    #: GETs before measuring, to fill a cache (sent to a caching variant only).
    warm: int

    def run(self, port: int) -> dict[str, Any]:
        command = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port)]
        for field in dataclasses.fields(self):
            command.append(f"--{field.name.replace('_', '-')}={getattr(self, field.name)}")
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=self.seconds + STARTUP_S
        )
        if done.returncode != 0:
            raise RuntimeError(f"the load generator failed:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@contextmanager
def running_server(variant: str, url: str, *, rows: int, cache_size: int) -> Iterator[int]:
    """A server process of ``variant``, its port while it runs; stopped with SIGTERM."""
    from .httpserver import async_url

    command = [sys.executable, "-m", "benchmarks.httpserver", "--variant", variant]
    command += ["--db", async_url(url), "--rows", str(rows), "--cache-size", str(cache_size)]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    port: list[int] = []
    listening = threading.Event()

    def read() -> None:  # drains stderr for as long as the server lives
        for line in proc.stderr or ():
            log.append(line)
            if not port and (match := re.search(r"listening on http://[^:]+:(\d+)", line)):
                port.append(int(match[1]))
                listening.set()
        listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not listening.wait(STARTUP_S) or not port:
            raise RuntimeError(f"the {variant} server did not start:\n{''.join(log)}")
        yield port[0]
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=STARTUP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        reader.join()
    if code != 0:
        raise RuntimeError(f"the {variant} server exited with {code}:\n{''.join(log)}")


def measure(variant: str, url: str, load: HttpLoad, *, cache_size: int) -> dict[str, Any]:
    """One run of ``load`` against a fresh server of ``variant``: the load's figures."""
    with running_server(variant, url, rows=load.rows, cache_size=cache_size) as port:
        result = load.run(port)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests to the {variant} server failed")
    return result


def reaching_database(hit_ratio: float, put_share: float) -> float:
    """The share of requests a cache with ``hit_ratio`` (over its GETs) still sends to
    the database: every PUT, and the GETs it misses."""
    return put_share + (1 - put_share) * (1 - hit_ratio)


def free_cache(over: str, *, put_share: float) -> Callable[[Rows], Limit | None]:
    """The throughput over ``over``'s row of a cache whose hits and misses cost nothing
    beyond the app and the database, at dal's hit ratio: the most dal could reach.

    On a CPU-bound server a request costs the ceiling's time, 1/C, and a trip to the
    database the raw app's extra time, d = 1/R - 1/C; such a cache still sends a share f
    of requests to the database, so it spends at least 1/C + f*d per request. None where
    a row is missing or the run shows no cost for a trip (the raw app as fast as the
    ceiling, within noise), where the model says nothing.
    """

    def limit(rows: Rows) -> Limit | None:
        names = ("tornado-nodb", "tornado-raw", "tornado-dal", over)
        ceiling, raw, dal, reference = (rows.get(name) for name in names)
        if not (ceiling and raw and dal and reference) or dal.hit_ratio is None:
            return None
        request_s = 1 / ceiling.ops_per_s
        trip_s = 1 / raw.ops_per_s - request_s
        if trip_s <= 0:
            return None
        share = reaching_database(dal.hit_ratio, put_share)
        best_s = request_s + share * trip_s
        return Limit(
            value=(1 / reference.ops_per_s) / best_s,
            text=f"a cache costing nothing at this run's {share:.0%} share of requests "
            "reaching the database",
        )

    return limit


class _ItemsTable:
    """The example's items table in the run's database: made by the first server that
    needs it, filled as the example fills it, dropped when the case is over."""

    def __init__(self) -> None:
        self.made_for: Env | None = None

    @staticmethod
    def _table() -> Table:
        from examples.tornado_app import Item

        table = Item.__table__
        assert isinstance(table, Table)
        return table

    def ensure(self, env: Env) -> None:
        if self.made_for is env:
            return
        from .httpserver import seeded

        table = self._table()
        if inspect(env.engine).has_table(table.name):
            raise RuntimeError(
                f"the http workload needs a table {table.name!r} of its own, and "
                f"{env.engine.url.render_as_string()} has one: run it on another database"
            )
        table.create(env.engine)
        self.made_for = env
        values = [row._asdict() for row in seeded(env.config.rows).values()]
        with env.engine.begin() as conn:
            for start in range(0, len(values), _CHUNK):
                conn.execute(insert(table), values[start : start + _CHUNK])

    def drop(self, env: Env) -> None:
        if self.made_for is env:
            self._table().drop(env.engine)
            self.made_for = None


_ITEMS = _ItemsTable()


class _Server(Competitor):
    """A variant of the example app, served by a process of its own per measurement."""

    variant: ClassVar[str]
    only = frozenset({"http"})
    library = "tornado"

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.missed = 0

    @classmethod
    def check_available(cls) -> None:
        try:
            import examples.tornado_app  # noqa: F401  (tornado, dal's async API)
        except ImportError as exc:
            raise Unavailable(f"the Tornado example does not import: {exc}") from None

    def reset(self) -> None:
        if self.variant != "nodb":
            _ITEMS.ensure(self.env)

    def warm(self, threads: int) -> None:
        """The load generator warms the server it is sent to."""

    @property
    def queries(self) -> int:
        """Not counted: the statements are sent by another process."""
        return 0

    @property
    def misses(self) -> int:
        return self.missed

    def close(self) -> None:
        _ITEMS.drop(self.env)


@competitor
class TornadoNoDb(_Server):
    name = "tornado-nodb"
    label = "the Tornado app on a dict in memory: no database work (the ceiling)"
    kind = Kind.HIT_FLOOR
    variant = "nodb"
    colour = "#7f7f7f"


@competitor
class TornadoRaw(_Server):
    name = "tornado-raw"
    label = "the Tornado app on a raw async driver pool, a query per request (the seed's way)"
    kind = Kind.NO_CACHE
    variant = "raw"
    colour = "#1f77b4"


@competitor
class TornadoDal(_Server):
    name = "tornado-dal"
    label = "the Tornado app on dal.AsyncRepository (examples/tornado_app.py)"
    kind = Kind.CACHE
    variant = "dal"
    colour = "#d62728"


@workload
class Http(Workload):
    name = "http"
    summary = (
        "the Tornado example under HTTP load from another process: no database, "
        "a raw async pool, dal"
    )
    rules = (
        Rule(
            "dal at least 3x the app on a raw async pool",
            throughput_ratio("tornado-dal", "tornado-raw"),
            ">=",
            3.0,
            limit=free_cache("tornado-raw", put_share=PUT_SHARE),
        ),
        Rule(
            "dal at least 80% of the no-database ceiling",
            throughput_ratio("tornado-dal", "tornado-nodb"),
            ">=",
            0.8,
            limit=free_cache("tornado-nodb", put_share=PUT_SHARE),
        ),
        Rule("dal: no stale read", stale("tornado-dal"), "==", 0, "stale reads"),
    )

    def cases(self) -> list[Case]:
        config = self.env.config
        load = HttpLoad(
            rows=config.rows,
            requests=max(200, min(config.requests // 10, 20_000)),
            seconds=10.0 if config.quick else 30.0,
            connections=4 if config.quick else 16,
            zipf=config.zipf,
            put_share=PUT_SHARE,
            seed=config.seed,
            warm=max(200, min(config.requests // 10, 20_000)),
        )

        cpu: dict[str, list[float]] = {}  # server CPU µs per request, per run

        def run(server: Competitor, rep: int) -> Sample:
            assert isinstance(server, _Server)
            sent = load if server.kind is Kind.CACHE else dataclasses.replace(load, warm=0)
            result = measure(server.variant, self.env.url, sent, cache_size=config.cache_size)
            server.missed += result["cache_misses"]
            per_request = result["server_cpu_ns"] / 1e3 / max(result["requests"], 1)
            cpu.setdefault(server.name, []).append(per_request)
            return Sample(
                ops=result["requests"],
                wall_ns=result["wall_ns"],
                latencies_ns=result["latencies_ns"],
                reads=result["cache_reads"],
                stale_reads=result["stale_reads"],
            )

        return [
            Case(
                workload=self.name,
                name="",
                describe=(
                    f"at most {load.requests:,} requests or {load.seconds:.0f} s over "
                    f"{load.connections} keep-alive connections, Zipf s={load.zipf} ids, "
                    f"{PUT_SHARE:.0%} PUTs; dal's cache warmed by {load.warm:,} GETs; "
                    "server pools of 10 connections (the example's); latency as the client "
                    "sees it; queries not counted (another process)"
                ),
                threads=load.connections,
                competitors=tuple(  # the app's variants, not the in-process competitors
                    name
                    for name in self.competitors(Kind.HIT_FLOOR, Kind.NO_CACHE, Kind.CACHE)
                    if issubclass(COMPETITORS[name], _Server)
                ),
                measure=run,
                reference="tornado-dal",
                counts="stale_reads",
                finish=lambda rows: [
                    dataclasses.replace(
                        r, extra={**r.extra, "server_cpu_us": statistics.median(cpu[r.competitor])}
                    )
                    for r in rows
                ],
            )
        ]
