"""Promise 1 at the real COMMIT: invalidation follows the database's answer to COMMIT.

``test_commit_window`` holds a commit at SQLAlchemy's ``commit`` event, before the
driver sends COMMIT; a version that invalidated just before the DBAPI commit would
pass it. Here PostgreSQL itself holds the COMMIT: a deferred constraint trigger runs
at COMMIT and waits on an advisory lock the test holds, so the writer's COMMIT is in
flight inside the server while another thread reads and caches the old row. If dal
invalidated before the COMMIT returned, that cached old row would outlive the write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, update

import dal
from tests import pgserver
from tests.models import User, Users
from tests.waiting import wait_until

#: The advisory lock the trigger waits on (advisory locks are per database, and the
#: database is this test run's own).
LOCK = 730_117

#: A trigger function run at COMMIT; BODY is its PL/pgSQL.
DEFERRED = """
CREATE OR REPLACE FUNCTION dal_test_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {body};
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER dal_test_at_commit AFTER UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dal_test_at_commit();
"""

UNDO = """
DROP TRIGGER IF EXISTS dal_test_at_commit ON users;
DROP FUNCTION IF EXISTS dal_test_at_commit();
"""

#: A session waiting for LOCK: the writer, parked in its COMMIT.
WAITING = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND objid = %s
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@contextmanager
def at_commit(db: dal.Database, body: str) -> Iterator[Any]:
    """Run ``body`` in the server at the COMMIT of every UPDATE of users; yields a
    plain connection of the test's own (autocommit), outside dal."""
    conn = pgserver.connect(db.settings.url)
    try:
        with conn.cursor() as cur:
            cur.execute(DEFERRED.format(body=body))
        yield conn
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute(UNDO)
        finally:
            conn.close()


class Parking:
    """Holds LOCK on ``conn``: every COMMIT of an UPDATE to users waits for it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        self.held = True

    def parked(self) -> bool:
        with self._conn.cursor() as cur:
            cur.execute(WAITING, (LOCK,))
            row = cur.fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        if self.held:
            with self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
            self.held = False


@contextmanager
def parking(db: dal.Database) -> Iterator[Parking]:
    with at_commit(db, f"PERFORM pg_advisory_xact_lock({LOCK})") as conn:
        park = Parking(conn)
        try:
            yield park
        finally:
            park.release()


def _repository_update(db: dal.Database, pk: int, name: str) -> None:
    Users(db).update(pk, name=name)


def _orm_update(db: dal.Database, pk: int, name: str) -> None:
    with db.session() as session:
        user = session.get(User, pk)
        assert user is not None
        user.name = name


def _core_update(db: dal.Database, pk: int, name: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.id == pk).values(name=name))


Write = Callable[[dal.Database, int, str], None]


@pytest.mark.parametrize(
    "write", [_repository_update, _orm_update, _core_update], ids=["repository", "orm", "core"]
)
def test_a_row_cached_while_commit_is_in_the_server_is_dropped_when_it_returns(
    pg_db: dal.Database, write: Write
) -> None:
    users = Users(pg_db)
    pk = users.add(email="a@example.com", name="old").id
    committing = threading.Event()
    event.listen(pg_db.engine, "commit", lambda conn: committing.set())
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write(pg_db, pk, "new")
        except BaseException as exc:
            errors.append(exc)

    with parking(pg_db) as park:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        # Past SQLAlchemy's commit event, and waiting inside the server's COMMIT.
        wait_until(park.parked)
        assert committing.is_set() and thread.is_alive()

        # COMMIT has not returned: this thread reads the old row and caches it.
        assert users.get(pk).name == "old"
        assert users.get(pk).name == "old"
        assert pg_db.stats()["cache"]["loads"] == 1  # the second read was a hit

        park.release()
        thread.join(10)
        assert not thread.is_alive()
    assert errors == []
    # The writer has returned, so its COMMIT has: no later read may see the old row.
    assert users.get(pk).name == "new"


def test_a_failed_commit_still_invalidates(pg_db: dal.Database) -> None:
    # A COMMIT that fails may or may not have taken effect (a connection lost
    # mid-COMMIT): dal drops what the transaction wrote either way.
    users = Users(pg_db)
    pk = users.add(email="a@example.com", name="old").id
    assert users.get(pk).name == "old"
    with at_commit(pg_db, "RAISE EXCEPTION 'refused at commit'"):
        with pytest.raises(dal.DatabaseError, match="refused at commit"):
            users.update(pk, name="new")
        loads = pg_db.stats()["cache"]["loads"]
        assert users.get(pk).name == "old"  # rolled back, and read again
        assert pg_db.stats()["cache"]["loads"] == loads + 1
