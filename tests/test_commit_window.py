"""Promise 1 and 2 at the edges of a commit: reads while COMMIT is in flight, and
loads whose lease a commit revokes. Interleavings are forced with events."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, select, update

import dal
from tests.models import User, Users
from tests.waiting import wait_until


def _run(target: Any, start: bool = True) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()), daemon=True)
    if start:
        thread.start()
    return thread, results


def _hold_commit(db: dal.Database) -> tuple[threading.Event, threading.Event]:
    """Pause every COMMIT between SQLAlchemy's commit event and the COMMIT itself."""
    in_commit, release = threading.Event(), threading.Event()

    def hold(conn: Any) -> None:
        in_commit.set()
        assert release.wait(10)

    event.listen(db.engine, "commit", hold)
    return in_commit, release


def _read_held_after_select(
    db: dal.Database, read: Any
) -> tuple[threading.Thread, list[Any], threading.Event]:
    """Start ``read`` in a thread that pauses once it has read its row, before it stores it.

    The pause is at the pool's checkin: the query is done and its connection is
    going back. Returns the thread, its results, and the event that lets it go on.
    """
    loaded, proceed = threading.Event(), threading.Event()
    held: list[threading.Thread] = []

    def after_read(dbapi_connection: Any, record: Any) -> None:
        if held and threading.current_thread() is held[0]:
            loaded.set()
            assert proceed.wait(10)

    event.listen(db.engine, "checkin", after_read)
    thread, results = _run(read, start=False)
    held.append(thread)
    thread.start()
    assert loaded.wait(10)
    return thread, results, proceed


def _core_update(db: dal.Database, pk: int, name: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.id == pk).values(name=name))


def _orm_update(db: dal.Database, pk: int, name: str) -> None:
    with db.session() as session:
        user = session.get(User, pk)
        assert user is not None
        user.name = name


@pytest.mark.parametrize("write", [_core_update, _orm_update], ids=["core", "orm"])
def test_a_fill_while_commit_is_in_flight_does_not_outlive_the_commit(db, write) -> None:
    # ConnectionEvents.commit fires before COMMIT is sent. An implementation that
    # invalidated there would let this reader store the old row after the
    # invalidation and keep serving it: the last assertion catches that.
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    in_commit, release = _hold_commit(db)
    writer, _ = _run(lambda: write(db, pk, "new"))
    assert in_commit.wait(10)

    # The write is not committed: the reader loads the old row and caches it.
    assert users.get(pk).name == "old"
    assert users.get(pk).name == "old"
    assert db.stats()["cache"]["loads"] == 1  # the second read was a hit

    release.set()
    writer.join(10)
    assert not writer.is_alive()
    # The writer has returned: its commit is visible to every later read.
    assert users.get(pk).name == "new"


def test_a_load_that_read_before_the_commit_is_not_stored(db) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    loaded, proceed = threading.Event(), threading.Event()

    @dal.cached_query(db, depends_on=[User])
    def name_of(session: Any, user_id: int) -> str:
        name = session.scalar(select(User.name).where(User.id == user_id))
        if not proceed.is_set():
            loaded.set()
            assert proceed.wait(10)
        return str(name)

    reader, results = _run(lambda: name_of(pk))
    assert loaded.wait(10)
    users.update(pk, name="new")  # commits while the load holds the old name
    proceed.set()
    reader.join(10)

    assert results == ["old"]  # the concurrent read may see the old row ...
    cache = db.stats()["cache"]
    assert cache["stale_fills_prevented"] == 1  # ... but did not store it
    assert name_of(pk) == "new"


def test_a_repository_load_that_read_before_the_commit_is_not_stored(db) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    reader, results, proceed = _read_held_after_select(db, lambda: users.get(pk))
    users.update(pk, name="new")
    proceed.set()
    reader.join(10)

    assert [r.name for r in results] == ["old"]
    assert db.stats()["cache"]["stale_fills_prevented"] == 1
    assert users.get(pk).name == "new"


def test_a_batch_load_loses_the_lease_of_each_written_key_alone(db) -> None:
    # get_many leases all its misses as one flight; a commit revokes the keys it wrote,
    # and the batch still stores the others.
    users = Users(db)
    pks = [users.add(email=f"{n}@example.com", name="old").id for n in "abc"]
    reader, results, proceed = _read_held_after_select(db, lambda: users.get_many(pks))
    users.update(pks[1], name="new")

    assert users.get(pks[1]).name == "new"  # does not join the batch read before the commit
    proceed.set()
    reader.join(10)
    assert [results[0][pk].name for pk in pks] == ["old", "old", "old"]
    cache = db.stats()["cache"]
    assert cache["stale_fills_prevented"] == 1
    assert {pk: r.name for pk, r in users.get_many(pks).items()} == dict(
        zip(pks, ["old", "new", "old"], strict=True)
    )
    assert db.stats()["cache"]["loads"] == cache["loads"]  # all three were hits


def test_a_read_after_the_commit_does_not_join_a_load_from_before_it(db) -> None:
    # The revoked load is still running; a read that starts after the write
    # returned must run its own query instead of waiting for the old result.
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    slow, slow_results, proceed = _read_held_after_select(db, lambda: users.get(pk))
    users.update(pk, name="new")

    assert users.get(pk).name == "new"  # returned while the old load is still held
    proceed.set()
    slow.join(10)
    assert slow_results[0].name == "old"
    assert users.get(pk).name == "new"  # the old load did not overwrite the new entry


def test_a_rolled_back_write_while_a_reader_fills_leaves_the_committed_row(db) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(update(User).where(User.id == pk).values(name="uncommitted"))
        session.flush()
        # Another thread reads meanwhile: it must see (and cache) the committed row.
        _, results = _run(lambda: users.get(pk))
        wait_until(lambda: bool(results))
        assert results[0].name == "old"
        raise RuntimeError("roll back")
    assert users.get(pk).name == "old"
    assert db.stats()["cache"]["loads"] == 1  # still the entry the reader stored
