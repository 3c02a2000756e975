"""When the listener cannot listen, the cache is cleared and caching pauses: never stale.

The listener's backend is killed for real (``pg_terminate_backend``); to hold it
down long enough to look, its reconnects go through a gate the test opens.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psycopg2
import pytest

import dal
import dal.bus
from tests.test_bus import MakeDb, Users, admin, bus_stats, hit, make_bus_db, seed
from tests.waiting import wait_until

__all__ = ["make_bus_db"]


class Gate:
    """A connect function that refuses while closed, as an unreachable server would."""

    def __init__(self, connect: Callable[[], Any], *, open: bool = True) -> None:
        self.connect = connect
        self.opened = threading.Event()
        if open:
            self.opened.set()
        self.refused = 0

    def __call__(self) -> Any:
        if not self.opened.is_set():
            self.refused += 1
            raise psycopg2.OperationalError("test: the server is unreachable")
        return self.connect()


def gate(db: dal.Database, monkeypatch: pytest.MonkeyPatch) -> Gate:
    assert db._bus is not None
    bus = db._bus
    monkeypatch.setattr(bus, "backoff_max", 0.05)
    door = Gate(bus._connect)
    monkeypatch.setattr(bus, "_connect", door)
    return door


def terminate(postgres_url: str, pid: int) -> None:
    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cur.fetchone() == (True,)
    finally:
        conn.close()


def test_a_killed_listener_clears_the_cache_and_pauses_it_until_it_is_back(
    make_bus_db: MakeDb,
    pg_db: dal.Database,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = make_bus_db()
    door = gate(a, monkeypatch)
    users = Users(a)
    seed(users)
    users.get(1)
    assert hit(users, 1).name == "user1"

    door.opened.clear()
    terminate(postgres_url, bus_stats(a)["backend_pid"])

    wait_until(lambda: bus_stats(a)["state"] == "reconnecting")
    assert a.stats()["cache"]["paused"] == ["bus"]
    assert users.cache_info().currsize == 0
    # Down: a write this process cannot hear of is read at once, and nothing is cached.
    Users(pg_db).update(1, name="while down")
    assert users.get(1).name == "while down"
    hits = users.cache_info().hits
    assert users.get(1).name == "while down"
    assert users.cache_info().hits == hits and users.cache_info().currsize == 0
    wait_until(lambda: door.refused >= 2)  # it keeps trying, backing off

    door.opened.set()

    wait_until(lambda: bus_stats(a)["state"] == "listening")
    stats = bus_stats(a)
    assert stats["reconnects"] == 1 and stats["errors"] >= 3
    assert a.stats()["cache"]["paused"] == []
    users.get(2)
    assert hit(users, 2).name == "user2"


def test_after_a_reconnect_messages_flow_again(make_bus_db: MakeDb, postgres_url: str) -> None:
    a, b = make_bus_db(), make_bus_db()
    users = Users(a)
    seed(users)
    old_pid = bus_stats(a)["backend_pid"]

    terminate(postgres_url, old_pid)

    wait_until(lambda: bus_stats(a)["reconnects"] == 1 and bus_stats(a)["state"] == "listening")
    assert bus_stats(a)["backend_pid"] != old_pid
    assert "terminat" in bus_stats(a)["last_error"]
    users.get(3)
    assert hit(users, 3).name == "user3"
    Users(b).update(3, name="after reconnect")
    wait_until(lambda: users.get(3).name == "after reconnect")


def test_caching_waits_for_the_first_listen(
    pg_db: dal.Database, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doors: list[Gate] = []
    real = dal.bus.connector

    def gated(engine: Any) -> Gate:
        doors.append(Gate(real(engine), open=False))
        return doors[-1]

    monkeypatch.setattr(dal.bus, "connector", gated)
    monkeypatch.setattr(dal.bus.Bus, "backoff_max", 0.05)
    a = dal.Database(postgres_url, invalidation="postgres")
    try:
        users = Users(a)
        seed(users)
        assert bus_stats(a)["state"] == "connecting"
        assert users.get(1).name == "user1"
        assert users.cache_info().currsize == 0  # a write now would reach no one

        doors[0].opened.set()

        wait_until(lambda: bus_stats(a)["state"] == "listening")
        assert bus_stats(a)["reconnects"] == 0
        users.get(1)
        assert hit(users, 1).name == "user1"
    finally:
        a.close()


def test_close_interrupts_the_backoff(
    make_bus_db: MakeDb, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_bus_db()
    door = gate(a, monkeypatch)
    assert a._bus is not None
    monkeypatch.setattr(a._bus, "backoff_min", 600.0)
    door.opened.clear()
    terminate(postgres_url, bus_stats(a)["backend_pid"])
    wait_until(lambda: door.refused == 1)  # now waiting 600 s before the next try

    started = time.monotonic()
    a.close()

    assert time.monotonic() - started < 30  # a bound on a hang, not a measurement
    assert bus_stats(a)["state"] == "stopped"
    assert not any(t.name == "dal-bus-listener" for t in threading.enumerate())


def _in_forked_child(db: dal.Database, pipe: Connection) -> None:
    try:
        db.engine.dispose(close=False)  # the pool's connections belong to the parent
        users = Users(db)
        wait_until(lambda: bus_stats(db)["state"] == "listening")
        pipe.send(("listening", bus_stats(db)["sender"]))
        assert users.get(1).name == "user1"
        pipe.send(("cached", None))
        wait_until(lambda: users.get(1).name == "from the parent")
        users.update(2, name="from the child")
        pipe.send(("done", None))
    except BaseException:
        pipe.send(("error", traceback.format_exc()))


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_forked_child_listens_for_itself(make_bus_db: MakeDb) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    users.get(2)
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    child = context.Process(target=_in_forked_child, args=(a, theirs), daemon=True)
    child.start()
    try:

        def expect(step: str) -> Any:
            assert mine.poll(60), f"the child did not report {step!r}"
            got, value = mine.recv()
            assert got == step, value
            return value

        # A new sender: the parent must not skip the child's messages as its own.
        assert expect("listening") != bus_stats(a)["sender"]
        expect("cached")
        users.update(1, name="from the parent")
        expect("done")
        wait_until(lambda: users.get(2).name == "from the child")
        child.join(60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    # The child never closed the listener connection it inherited.
    assert bus_stats(a)["reconnects"] == 0 and bus_stats(a)["state"] == "listening"
