"""``invalidation``: time from a commit in one process to another process's cache dropping the key.

PostgreSQL only (the bus is LISTEN/NOTIFY). This process (A) holds a ``Database``
with ``invalidation="postgres"`` and the key cached; a spawned process (B) updates
the row through its own ``Database``. Each latency runs from B starting its commit
(SQLAlchemy's ``commit`` event, before the NOTIFY and the COMMIT go out) to A's
listener having applied the message, read on one monotonic clock that both
processes share (``CLOCK_MONOTONIC`` is system-wide). One write at a time, so the
figure is the bus's lag, not a queue's.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from .base import Case, Competitor, Workload, workload
from .competitors import repository_class
from .config import Env
from .data import TABLE_NAME
from .results import Rule, Sample, stale

__all__: list[str] = []

#: A write not seen by then is a failure, not a slow sample.
_TIMEOUT_S = 10.0


@workload
class Invalidation(Workload):
    name = "invalidation"
    summary = "PostgreSQL: from another process's commit to this cache dropping the key"
    rules = (
        Rule(
            "dal: p99 from another process's commit to the key dropped here",
            lambda rows: None if rows["dal"].p99_us is None else rows["dal"].p99_us / 1000,
            "<=",
            20.0,
            unit="ms",
        ),
        Rule("dal serves no stale read after the drop", stale("dal"), "==", 0, "stale reads"),
    )

    def cases(self) -> list[Case]:
        if make_url(self.env.url).get_backend_name() != "postgresql":
            # The bus is PostgreSQL's LISTEN/NOTIFY: there is nothing to measure.
            print(
                "skipping invalidation: it needs PostgreSQL (--db postgresql+psycopg2://...)",
                file=sys.stderr,
                flush=True,
            )
            return []
        writes = min(2_000, max(200, self.env.config.requests // 100))
        keys = self.env.keys.uniform(self.env.keys.ranked, writes, "invalidation")

        def measure(competitor: Competitor, rep: int) -> Sample:
            # The competitor's own Database has no bus; this workload opens its own two.
            return _measure(self.env, keys, first_version=(rep + 1) * 10**9)

        return [
            Case(
                workload=self.name,
                name="",
                describe=(
                    f"{writes:,} updates by another process, one at a time, each to a key "
                    "cached here; latency = its commit to this cache dropping the key"
                ),
                threads=1,
                competitors=("dal",),
                measure=measure,
                prepare=_nothing,
            )
        ]


def _nothing(competitor: Competitor) -> None:
    """No warming: the measured Databases are opened by ``_measure``."""


def _measure(env: Env, keys: list[int], first_version: int) -> Sample:
    import dal

    context = multiprocessing.get_context("spawn")
    pipe, theirs = context.Pipe()
    writer = context.Process(target=_writer, args=(env.url, theirs), daemon=True)
    writer.start()
    theirs.close()
    db = dal.Database(env.url, invalidation="postgres", cache_size=env.config.cache_size)
    try:
        items = repository_class()(db)
        watch = _Watch(db)
        _answer(pipe, writer)  # B is ready
        bus = db._bus
        assert bus is not None  # invalidation="postgres" made one
        if not bus.wait_listening(_TIMEOUT_S):  # A's cache is on only once it listens
            raise RuntimeError(f"A's listener was not listening within {_TIMEOUT_S} s")
        latencies: list[int] = []
        stale = 0
        started = time.perf_counter_ns()
        for i, key in enumerate(keys):
            version = first_version + i
            items.get(key)
            watch.arm(key)
            pipe.send((key, version))
            commit_started: int = _answer(pipe, writer)
            latencies.append(watch.wait() - commit_started)
            if items.get(key).version != version:
                stale += 1
        wall = time.perf_counter_ns() - started
        pipe.send(None)
        writer.join(_TIMEOUT_S)
    finally:
        if writer.is_alive():
            writer.kill()
            writer.join()
        pipe.close()
        db.close()
    return Sample(ops=len(keys), wall_ns=wall, latencies_ns=latencies, reads=0, stale_reads=stale)


class _Watch:
    """Notes when A's listener has applied a message that drops the watched key."""

    def __init__(self, db: Any) -> None:
        self._key: tuple[int] | None = None
        self._at = 0
        self._done = threading.Event()
        # The bus's hook for instruments: called in the listener thread after applying.
        db._bus.observer = self._applied

    def arm(self, key: int) -> None:
        self._done.clear()
        self._key = (key,)

    def _applied(self, message: Any) -> None:
        pks = message.changes.get(TABLE_NAME, ())
        if pks is None or self._key in pks:
            self._at = time.monotonic_ns()
            self._done.set()

    def wait(self) -> int:
        """The monotonic time the key was dropped."""
        if not self._done.wait(_TIMEOUT_S):
            raise RuntimeError(f"a committed write was not seen within {_TIMEOUT_S} s")
        return self._at


def _answer(pipe: Connection, writer: Any) -> Any:
    if not pipe.poll(_TIMEOUT_S * 6):
        raise RuntimeError(f"the writer process did not answer (exit code {writer.exitcode})")
    return pipe.recv()


def _writer(url: str, pipe: Connection) -> None:
    """Process B: update each key it is sent; answer with when its commit started."""
    import dal

    db = dal.Database(url, invalidation="postgres")
    items = repository_class()(db)
    commit_started = [0]

    def on_commit(conn: Any) -> None:
        commit_started[0] = time.monotonic_ns()

    # ConnectionEvents.commit fires before the NOTIFY and the COMMIT are sent.
    event.listen(db.engine, "commit", on_commit)
    try:
        pipe.send("ready")
        while (request := pipe.recv()) is not None:
            key, version = request
            items.update(key, version=version)
            pipe.send(commit_started[0])
    finally:
        db.close()
