"""dal logs through ``logging.getLogger("dal")``: listener drops, reconnects, clears.

Levels: WARNING when the bus listener loses its connection (caching pauses), INFO when
it is back (caching resumes), DEBUG for cache clears and invalidations. Nothing is
logged on the hit path, and nothing while the store's lock is held.
"""

from __future__ import annotations

import logging
import threading

import pytest

import dal
from tests.models import Users
from tests.test_bus import MakeDb, bus_stats, hit, make_bus_db, seed
from tests.test_bus_faults import gate, terminate
from tests.waiting import wait_until

__all__ = ["make_bus_db"]


class LockProbe(logging.Handler):
    """Records, for every record, whether the store's lock was free when it was emitted."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(logging.DEBUG)
        self.store_lock = lock  # not ``self.lock``: that is the handler's own
        self.held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.store_lock.acquire(blocking=False):
            self.store_lock.release()
        else:
            self.held.append(record.getMessage())


def messages(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_clears_and_invalidations_are_logged_at_debug(
    sqlite_db: dal.Database, caplog: pytest.LogCaptureFixture
) -> None:
    users = Users(sqlite_db)
    seed(users)
    users.get(1)
    caplog.set_level(logging.DEBUG, logger="dal")

    users.update(1, name="renamed")
    sqlite_db._store.clear()  # what a bus clear and db.cache_clear() run

    debug = messages(caplog, "dal.cache", logging.DEBUG)
    assert any(m.startswith("invalidated users (1 row(s))") for m in debug), debug
    assert "cache cleared" in debug
    # Nothing above DEBUG: these are routine.
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name.startswith("dal"))


def test_a_cached_query_clear_names_the_function(
    sqlite_db: dal.Database, caplog: pytest.LogCaptureFixture
) -> None:
    @dal.cached_query(sqlite_db, depends_on=["users"])
    def answer(session: object, n: int) -> int:
        return n

    answer(1)
    caplog.set_level(logging.DEBUG, logger="dal")
    answer.invalidate(1)
    answer.cache_clear()

    debug = messages(caplog, "dal.cache", logging.DEBUG)
    assert any("answer" in m and "one entry invalidated" in m for m in debug), debug
    assert any("answer" in m and m.endswith("cleared") for m in debug), debug


def test_hits_log_nothing(sqlite_db: dal.Database, caplog: pytest.LogCaptureFixture) -> None:
    users = Users(sqlite_db)
    seed(users)
    users.get(1)
    users.get_many([1, 2])
    caplog.set_level(logging.DEBUG, logger="dal")

    for _ in range(3):
        hit(users, 1)
        users.get_many([1, 2])

    assert [r for r in caplog.records if r.name.startswith("dal")] == []


def test_nothing_is_logged_under_the_store_lock(
    sqlite_db: dal.Database, caplog: pytest.LogCaptureFixture
) -> None:
    # A handler that blocks (a full queue, a slow disk) must not stall every cache user.
    probe = LockProbe(sqlite_db._store.lock)
    logger = logging.getLogger("dal")
    logger.addHandler(probe)
    caplog.set_level(logging.DEBUG, logger="dal")
    try:
        users = Users(sqlite_db)
        seed(users)
        users.get(1)
        users.update(1, name="x")
        users.delete(2)
        sqlite_db._store.clear()  # what a bus clear and db.cache_clear() run
        sqlite_db.close()
    finally:
        logger.removeHandler(probe)
    assert len([r for r in caplog.records if r.name.startswith("dal")]) >= 4
    assert probe.held == []


def test_a_dropped_listener_warns_and_its_return_is_info(
    make_bus_db: MakeDb,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = make_bus_db()
    door = gate(a, monkeypatch)
    caplog.set_level(logging.DEBUG, logger="dal")

    door.opened.clear()
    terminate(postgres_url, bus_stats(a)["backend_pid"])
    wait_until(lambda: bus_stats(a)["state"] == "reconnecting")
    wait_until(lambda: door.refused >= 2)

    warnings = messages(caplog, "dal.bus", logging.WARNING)
    assert len(warnings) == 1, warnings  # once per outage, not once per retry
    assert "lost its connection" in warnings[0]
    assert "terminat" in warnings[0]  # the error itself
    assert "caching paused" in warnings[0]
    assert messages(caplog, "dal.bus", logging.INFO) == []
    assert any("caching paused (bus)" in m for m in messages(caplog, "dal.cache", logging.DEBUG))

    door.opened.set()
    wait_until(lambda: bus_stats(a)["state"] == "listening")
    wait_until(lambda: bool(messages(caplog, "dal.bus", logging.INFO)))

    (back,) = messages(caplog, "dal.bus", logging.INFO)
    assert "caching resumes" in back
    assert str(bus_stats(a)["backend_pid"]) in back
    assert len(messages(caplog, "dal.bus", logging.WARNING)) == 1


def test_a_listener_that_cannot_connect_at_start_warns_once(
    pg_db: dal.Database,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import dal.bus
    from tests.test_bus_faults import Gate

    doors: list[Gate] = []
    real = dal.bus.connector

    def gated(engine: object) -> Gate:
        doors.append(Gate(real(engine), open=False))  # type: ignore[arg-type]
        return doors[-1]

    monkeypatch.setattr(dal.bus, "connector", gated)
    monkeypatch.setattr(dal.bus.Bus, "backoff_max", 0.05)
    caplog.set_level(logging.INFO, logger="dal")
    a = dal.Database(postgres_url, invalidation="postgres")
    try:
        wait_until(lambda: doors[0].refused >= 2)
        (warning,) = messages(caplog, "dal.bus", logging.WARNING)
        assert "cannot listen" in warning and "unreachable" in warning
        doors[0].opened.set()
        wait_until(lambda: bool(messages(caplog, "dal.bus", logging.INFO)))
        assert "caching resumes" in messages(caplog, "dal.bus", logging.INFO)[0]
    finally:
        a.close()
