"""The bus between real processes: a commit in a spawned process invalidates this one.

The other process runs ``_serve``: it opens its own ``Database`` with the bus and
runs the commands this one sends it over a pipe, answering each.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import dal
from tests.models import User
from tests.test_bus import MakeDb, Messages, Users, bus_stats, hit, make_bus_db, seed
from tests.waiting import wait_until

__all__ = ["make_bus_db"]

#: Bounds a hang in the other process; never how long anything is expected to take.
REPLY_TIMEOUT = 60.0


class _Rollback(Exception):
    pass


def _serve(url: str, pipe: Connection) -> None:
    """The other process: a Database with the bus, driven over ``pipe``."""
    db = dal.Database(url, invalidation="postgres")
    users = Users(db)
    try:
        while True:
            command, args = pipe.recv()
            if command == "stop":
                return
            try:
                pipe.send(("ok", _COMMANDS[command](db, users, *args)))
            except Exception:
                pipe.send(("error", traceback.format_exc()))
    finally:
        db.close()


def _update(db: dal.Database, users: Users, pk: int, values: dict[str, Any]) -> None:
    users.update(pk, **values)


def _update_then_roll_back(db: dal.Database, users: Users, pk: int, values: dict[str, Any]) -> None:
    try:
        with db.session() as session:
            session.execute(update(User).where(User.id == pk).values(**values))
            session.flush()
            raise _Rollback
    except _Rollback:
        pass


def _get(db: dal.Database, users: Users, pk: int) -> Any:
    user = users.get(pk)
    return None if user is None else user.name


def _stats(db: dal.Database, users: Users) -> dict[str, Any]:
    return db.stats()


def _pid(db: dal.Database, users: Users) -> int:
    return os.getpid()


_COMMANDS: dict[str, Any] = {
    "update": _update,
    "update_then_roll_back": _update_then_roll_back,
    "get": _get,
    "stats": _stats,
    "pid": _pid,
}


class Peer:
    """This side of the pipe to a process running ``_serve``."""

    def __init__(self, pipe: Connection, process: Any) -> None:
        self.pipe = pipe
        self.process = process

    def call(self, command: str, *args: Any) -> Any:
        self.pipe.send((command, args))
        if not self.pipe.poll(REPLY_TIMEOUT):
            raise AssertionError(f"the other process did not answer {command!r}")
        status, value = self.pipe.recv()
        if status != "ok":
            raise AssertionError(f"the other process failed {command!r}:\n{value}")
        return value


@pytest.fixture
def peer(pg_db: dal.Database, postgres_url: str) -> Iterator[Peer]:
    """Another process with its own ``Database(invalidation="postgres")``."""
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(postgres_url, theirs), daemon=True)
    process.start()
    theirs.close()
    other = Peer(mine, process)
    try:
        assert other.call("pid") != os.getpid()
        yield other
        other.pipe.send(("stop", ()))
        process.join(REPLY_TIMEOUT)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        mine.close()


def test_a_commit_in_another_process_invalidates_a_row_and_a_query(
    make_bus_db: MakeDb, peer: Peer
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)

    @dal.cached_query(a, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    assert users.get(1).name == "user1"
    assert hit(users, 1).name == "user1"
    assert names() == ["user1", "user2", "user3"]
    assert names.cache_info().currsize == 1

    peer.call("update", 1, {"name": "renamed"})

    # The other process's update has committed: the new value is due within the bus lag.
    wait_until(lambda: users.get(1).name == "renamed")
    wait_until(lambda: names() == ["renamed", "user2", "user3"])
    wait_until(lambda: bus_stats(a)["messages_applied"] >= 1)
    assert peer.call("stats")["bus"]["messages_sent"] == 1


def test_a_rollback_in_another_process_sends_nothing(make_bus_db: MakeDb, peer: Peer) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    messages = Messages(a)
    users.get(1)

    peer.call("update_then_roll_back", 1, {"name": "never"})
    peer.call("update", 2, {"name": "marker"})

    # Notifications arrive in commit order: once the marker is here, a message
    # from the rolled-back transaction would be here too.
    messages.wait_for("users")
    assert [m.changes for m in messages.all] == [{"users": {(2,)}}]
    assert bus_stats(a)["messages_applied"] == 1
    assert hit(users, 1).name == "user1"
    assert peer.call("stats")["bus"]["messages_sent"] == 1


def test_the_other_process_is_invalidated_too(make_bus_db: MakeDb, peer: Peer) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    wait_until(lambda: peer.call("stats")["bus"]["state"] == "listening")
    assert peer.call("get", 3) == "user3"

    users.update(3, name="from the test process")

    wait_until(lambda: peer.call("get", 3) == "from the test process")
    stats = peer.call("stats")
    assert stats["bus"]["messages_applied"] >= 1
    assert stats["cache"]["hits"] + stats["cache"]["misses"] >= 2
