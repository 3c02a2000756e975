"""Promise 7: a database restart costs readers no errors.

The pool is filled with idle connections, then PostgreSQL ends every one of them
(``pg_terminate_backend``, as a restart or a failover does). The first read meets a
dead connection and is retried once; the retry, and every read after it, must get a
fresh connection, not another dead one from the pool. A write is not retried: it
raises ``dal.DatabaseError``, nothing is cached for it, and the next write works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import func, select

import dal
from tests import pgserver
from tests.models import User, Users
from tests.waiting import wait_until

#: Idle connections in the pool when the server drops them.
IDLE = 5

OTHERS = """
SELECT {what} FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND application_name IS DISTINCT FROM %s
"""


def _fill_pool(db: dal.Database, n: int) -> None:
    """Leave ``n`` connections idle in the pool, each of which has talked to the server."""
    conns = [db.engine.connect() for _ in range(n)]
    for conn in conns:
        conn.exec_driver_sql("SELECT 1").all()
    for conn in conns:
        conn.close()
    assert db.stats()["pool"]["checked_in"] == n


def _terminate_all(db: dal.Database, keep: str | None = None) -> None:
    """End every other session of the test's database but those of application ``keep``,
    and wait until they are gone."""
    admin = pgserver.connect(db.settings.url)
    try:
        with admin.cursor() as cur:
            cur.execute(OTHERS.format(what="pg_terminate_backend(pid)"), (keep,))

        def gone() -> bool:
            with admin.cursor() as cur:
                cur.execute(OTHERS.format(what="count(*)"), (keep,))
                row = cur.fetchone()
            return row is not None and row[0] == 0

        wait_until(gone)
    finally:
        admin.close()


def _rows(db: dal.Database, n: int) -> list[int]:
    users = Users(db)
    pks = [users.add(email=f"u{i}@example.com", name=f"user {i}").id for i in range(n)]
    db.cache_clear()  # every read below is a miss
    return pks


Read = Callable[[dal.Database, int], Any]


def _cached_name(db: dal.Database) -> Callable[[int], Any]:
    @dal.cached_query(db, depends_on=[User])
    def name_of(session: Any, pk: int) -> Any:
        return session.scalar(select(User.name).where(User.id == pk))

    return name_of


READS: dict[str, Callable[[dal.Database], Callable[[int], Any]]] = {
    "get": lambda db: lambda pk: Users(db).get(pk).name,  # type: ignore[union-attr]
    "get_many": lambda db: lambda pk: Users(db).get_many([pk])[pk].name,
    "find": lambda db: lambda pk: Users(db).find(id=pk)[0].name,
    "count": lambda db: lambda pk: Users(db).count(User.id == pk),
    "cached_query": _cached_name,
}


def _in_session(db: dal.Database, pk: int) -> Any:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(User).where(User.id == pk))


@pytest.mark.parametrize("kind", list(READS))
def test_every_read_after_the_server_dropped_the_pool_succeeds(
    pg_db: dal.Database, kind: str
) -> None:
    read = READS[kind](pg_db)
    pks = _rows(pg_db, 5)
    expected = [read(pk) for pk in pks]
    pg_db.cache_clear()
    _fill_pool(pg_db, IDLE)
    before = pg_db.stats()["pool"]
    _terminate_all(pg_db)

    assert [read(pk) for pk in pks] == expected  # five misses, no error

    after = pg_db.stats()["pool"]
    assert after["retries"] - before["retries"] == 1  # the first read only
    assert after["disconnects"] - before["disconnects"] == 1


def test_a_session_meets_the_dead_pool_once_and_then_works(pg_db: dal.Database) -> None:
    # A session's statements are the caller's transaction: dal cannot repeat them.
    pk = _rows(pg_db, 1)[0]
    _fill_pool(pg_db, IDLE)
    _terminate_all(pg_db)
    with pytest.raises(dal.DatabaseError):
        _in_session(pg_db, pk)
    assert [_in_session(pg_db, pk) for _ in range(IDLE)] == [1] * IDLE


def test_a_write_on_a_dropped_connection_raises_and_the_next_one_works(
    pg_db: dal.Database,
) -> None:
    users = Users(pg_db)
    pk = _rows(pg_db, 1)[0]
    assert users.get(pk).name == "user 0"  # type: ignore[union-attr]
    _fill_pool(pg_db, IDLE)
    _terminate_all(pg_db)

    with pytest.raises(dal.DatabaseError) as caught:
        users.update(pk, name="lost")
    assert caught.value.__cause__ is not None
    # Nothing was written; the cached row stays right, or is reloaded.
    assert users.get(pk).name == "user 0"  # type: ignore[union-attr]
    assert pg_db.stats()["pool"]["retries"] == 0  # a write is never repeated

    assert users.update(pk, name="kept").name == "kept"
    assert users.get(pk).name == "kept"  # type: ignore[union-attr]


def test_with_the_bus_a_write_on_a_dropped_connection_is_a_database_error(
    pg_db: dal.Database,
) -> None:
    # The failed write's connection is closed: announcing it on that connection
    # fails too, and must not replace the write's own error with a raw driver one.
    db = dal.Database(pg_db.settings.url, invalidation="postgres")
    try:
        wait_until(lambda: db.stats()["bus"]["state"] == "listening")
        users = Users(db)
        pk = _rows(db, 1)[0]
        _fill_pool(db, IDLE)
        _terminate_all(db, keep="dal listener")

        with pytest.raises(dal.DatabaseError) as caught:
            users.update(pk, name="lost")
        assert isinstance(caught.value.__cause__, sqlalchemy.exc.DBAPIError)
        assert users.update(pk, name="kept").name == "kept"
        assert db.stats()["pool"]["checked_out"] == 0
    finally:
        db.close()
