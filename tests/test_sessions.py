"""Promise 3 inside ``db.session()``: every read sees the transaction's writes, in every
column, including ORM objects the caller holds; nested blocks join the outer one; and a
failure the caller caught never lets the block exit as if its writes had committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

import dal
from tests.models import User, Users


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    for pk in (1, 2):
        repo.add(id=pk, email=f"u{pk}@example.com", name=f"user{pk}", balance=10 * pk)
    assert repo.get(1).name == "user1"  # cached
    return repo


def _elsewhere(read: Callable[[], Any]) -> Any:
    """``read()`` in another thread: outside this context's session."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(read()))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return results[0]


def _held(session: Session, pk: int) -> User:
    """The session's object for user ``pk``, which the test then holds."""
    held = session.get(User, pk)
    assert held is not None
    assert held.name == f"user{pk}"
    return held


def _names(db: dal.Database) -> Callable[[], list[str]]:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    return names


# --- reads see the session's writes -----------------------------------------------------------


def test_a_repository_write_is_seen_by_every_read_and_by_held_objects(
    db: dal.Database, users: Users
) -> None:
    names = _names(db)
    with db.session() as s:
        held = _held(s, 1)

        users.update(1, name="new", balance=7)

        assert users.get(1).name == "new"
        assert users.get_many([1, 2])[1].balance == 7
        assert users.find(id=1)[0].name == "new"
        assert users.find_one(name="new").balance == 7
        assert names() == ["new", "user2"]
        assert (held.name, held.balance) == ("new", 7)
        assert s.get(User, 1) is held
        assert s.scalars(select(User.balance).where(User.id == 1)).one() == 7
        assert _elsewhere(lambda: users.get(1).name) == "user1"  # not committed yet

    assert users.get(1).name == "new"


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.execute(text("UPDATE users SET name = 'x', balance = 5 WHERE id = 1")),
        lambda s: s.execute(update(User.__table__).where(User.id == 1).values(name="x", balance=5)),
        lambda s: s.connection().execute(text("UPDATE users SET name = 'x', balance = 5")),
        lambda s: s.connection().exec_driver_sql("UPDATE users SET name = 'x', balance = 5"),
    ],
    ids=["session-text", "session-core", "connection-text", "driver-sql"],
)
def test_text_and_core_writes_are_seen_by_reads_and_held_objects(
    db: dal.Database, users: Users, write: Callable[[Session], Any]
) -> None:
    with db.session() as s:
        held = _held(s, 1)

        write(s)

        assert [(u.id, u.name) for u in users.find(name="x")][:1] == [(1, "x")]
        assert users.get(1).balance == 5
        assert (held.name, held.balance) == ("x", 5)

    assert users.get(1).name == "x"


def test_unflushed_changes_of_a_held_object_survive_a_core_write(
    db: dal.Database, users: Users
) -> None:
    """A statement sent past the ORM (no autoflush) expires only the other columns."""
    with db.session() as s:
        held = _held(s, 1)
        held.name = "mine"  # not flushed
        s.connection().execute(update(User.__table__).where(User.id == 1).values(balance=99))

        assert (held.name, held.balance) == ("mine", 99)
        assert users.get(1).name == "mine"

    assert (users.get(1).name, users.get(1).balance) == ("mine", 99)


def test_a_repository_write_follows_the_callers_earlier_changes(
    db: dal.Database, users: Users
) -> None:
    with db.session() as s:
        held = _held(s, 1)
        held.name = "first"
        users.update(1, name="second")

        assert held.name == "second"

    assert users.get(1).name == "second"


def test_a_repository_delete_is_seen_by_every_read(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        assert s.get(User, 1) is not None
        assert users.delete(1)

        assert users.get(1) is None
        assert users.find(id=1) == []
        assert 1 not in users.get_many([1, 2])
        assert s.get(User, 1) is None

    assert users.get(1) is None


# --- nested sessions join the outer one --------------------------------------------------------


def test_a_nested_session_is_the_same_session_and_sees_the_outer_writes(
    db: dal.Database, users: Users
) -> None:
    with db.session() as outer:
        users.update(1, name="outer")
        with db.session() as inner:
            assert inner is outer
            assert users.get(1).name == "outer"
            users.update(2, name="inner")
        assert users.get(2).name == "inner"
        # Nothing commits before the outermost block does.
        assert _elsewhere(lambda: (users.get(1).name, users.get(2).name)) == ("user1", "user2")

    assert (users.get(1).name, users.get(2).name) == ("outer", "inner")


class Abort(Exception):
    """Raised by a test to leave a block with an error."""


def test_an_error_leaving_a_nested_session_rolls_back_only_its_writes(
    db: dal.Database, users: Users
) -> None:
    with db.session() as s:
        held = _held(s, 2)
        users.update(1, name="outer")
        with pytest.raises(Abort), db.session():
            users.update(2, name="inner")
            assert held.name == "inner"
            raise Abort
        assert users.get(2).name == "user2"
        assert held.name == "user2"  # the held object shows the rollback too
        assert users.get(1).name == "outer"

    assert (users.get(1).name, users.get(2).name) == ("outer", "user2")


def test_a_nested_session_commits_nothing_if_the_outer_one_fails(
    db: dal.Database, users: Users
) -> None:
    """The outer block has not written when the inner one starts (pysqlite has not begun)."""
    with pytest.raises(Abort), db.session():
        with db.session():
            users.update(1, name="inner")
        raise Abort

    assert users.get(1).name == "user1"
    assert _elsewhere(lambda: users.find(name="inner")) == []


# --- a caught failure never exits as if committed ----------------------------------------------


def _broken_read(db: dal.Database) -> Callable[[], Any]:
    @dal.cached_query(db, depends_on=[User])
    def broken(session: Session) -> Any:
        return session.execute(text("SELECT * FROM no_such_table")).all()

    return broken


def test_a_caught_failed_read_makes_the_exit_raise_and_commits_nothing(
    db: dal.Database, users: Users
) -> None:
    broken = _broken_read(db)

    with pytest.raises(dal.DatabaseError, match="nothing was committed") as raised, db.session():
        users.update(1, name="lost?")
        with pytest.raises(dal.DatabaseError, match="no_such_table"):
            broken()

    assert "no_such_table" in str(raised.value)
    assert raised.value.__cause__ is not None
    assert users.get(1).name == "user1"


def test_a_caught_failure_makes_an_explicit_commit_raise(db: dal.Database, users: Users) -> None:
    broken = _broken_read(db)

    with pytest.raises(dal.DatabaseError, match="nothing was committed"), db.session() as s:
        users.update(1, name="lost?")
        with pytest.raises(dal.DatabaseError):
            broken()
        s.commit()

    assert users.get(1).name == "user1"


def test_a_failed_find_on_postgres_makes_the_exit_raise(pg_db: dal.Database) -> None:
    """PostgreSQL aborts the transaction; its COMMIT would quietly roll back."""
    users = Users(pg_db)
    users.add(id=1, email="a@example.com", name="A")

    with pytest.raises(dal.DatabaseError, match="nothing was committed"), pg_db.session():
        users.update(1, name="lost?")
        with pytest.raises(dal.DatabaseError, match="abc"):
            users.find(balance="abc")

    assert users.get(1).name == "A"


def test_a_failure_undone_by_a_savepoint_lets_the_session_commit(
    db: dal.Database, users: Users
) -> None:
    broken = _broken_read(db)

    with db.session() as s:
        users.update(1, name="kept")
        with pytest.raises(dal.DatabaseError), s.begin_nested():
            broken()
        with pytest.raises(dal.DatabaseError), db.session():  # a nested block: the same
            broken()
        users.update(2, name="kept too")

    assert (users.get(1).name, users.get(2).name) == ("kept", "kept too")


def test_a_caught_failure_inside_a_nested_session_rolls_it_back_and_raises(
    db: dal.Database, users: Users
) -> None:
    broken = _broken_read(db)

    with db.session():
        users.update(1, name="kept")
        with pytest.raises(dal.DatabaseError, match="nothing was committed"), db.session():
            users.update(2, name="undone")
            with pytest.raises(dal.DatabaseError):
                broken()
        assert users.get(2).name == "user2"

    assert (users.get(1).name, users.get(2).name) == ("kept", "user2")


def test_after_a_rollback_the_session_goes_on(db: dal.Database, users: Users) -> None:
    broken = _broken_read(db)

    with db.session() as s:
        users.update(1, name="undone")
        with pytest.raises(dal.DatabaseError):
            broken()
        s.rollback()
        users.update(2, name="committed")

    assert (users.get(1).name, users.get(2).name) == ("user1", "committed")
