"""The ``http`` workload's moving parts: the items table, a server process, a load process.

Each measurement starts ``python -m benchmarks.httpserver`` in one variant, waits for
its port, runs ``python -m benchmarks.loadgen`` against it, and stops the server with
SIGTERM: three processes, so that the server's figures are its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, inspect

from .httpserver import async_url, seeded
from .stats import Sample

__all__ = ["HttpLoad", "create_items", "drop_items", "measure", "running_server"]

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 60.0
_CHUNK = 10_000


def _item() -> Any:
    from examples.tornado_app import Item  # imports dal's async API: only when run

    return Item


def create_items(engine: Engine, rows: int) -> None:
    """The example's items table with ``rows`` rows; an existing one is not touched."""
    table = _item().__table__
    if inspect(engine).has_table(table.name):
        raise RuntimeError(
            f"the http workload needs the table {table.name!r}, which exists in "
            f"{engine.url.render_as_string()}; run it on another database"
        )
    table.create(engine)
    values = [row._asdict() for row in seeded(rows).values()]
    with engine.begin() as conn:
        for start in range(0, len(values), _CHUNK):
            conn.execute(insert(table), values[start : start + _CHUNK])


def drop_items(engine: Engine) -> None:
    _item().__table__.drop(engine, checkfirst=True)


@contextmanager
def running_server(variant: str, url: str, *, rows: int, cache_size: int) -> Iterator[int]:
    """A server process of ``variant``, its port while it runs; stopped with SIGTERM."""
    command = [sys.executable, "-m", "benchmarks.httpserver", "--variant", variant]
    command += ["--db", async_url(url), "--rows", str(rows), "--cache-size", str(cache_size)]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    listening = threading.Event()
    port: list[int] = []

    def read() -> None:  # drains stderr for as long as the server lives
        for line in proc.stderr or ():
            log.append(line)
            if match := re.search(r"listening on http://[^:]+:(\d+)", line):
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpLoad:
    """What the load process sends: its bounds and its mix."""

    rows: int
    requests: int
    seconds: float
    connections: int
    zipf: float
    put_share: float
    seed: int
    #: GETs before measuring, to fill a cache (sent to the dal variant only).
    warm: int

    def run(self, port: int) -> dict[str, Any]:
        """The load process's figures (see ``benchmarks.loadgen``)."""
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


def measure(variant: str, url: str, load: HttpLoad, *, cache_size: int) -> Sample:
    """One run of ``load`` against a fresh server of ``variant``."""
    if variant != "dal":  # no cache to fill
        load = dataclasses.replace(load, warm=0)
    with running_server(variant, url, rows=load.rows, cache_size=cache_size) as port:
        result = load.run(port)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests to the {variant} server failed")
    return Sample(
        ops=result["requests"],
        wall_ns=result["wall_ns"],
        latencies_ns=result["latencies_ns"],
        reads=result["cache_reads"],
        stale_reads=result["stale_reads"],
        misses=result["cache_misses"],
    )
