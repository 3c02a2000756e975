"""The bus with AsyncDatabase: its writes NOTIFY inside their transaction on asyncpg,
and other Databases' commits reach its cache through the same listener thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import text, update

import dal
from tests.aiohelp import Names, until
from tests.conftest import async_url
from tests.models import User, Users
from tests.test_bus import MakeDb, Messages, bus_stats, hit, make_bus_db, seed
from tests.test_bus_faults import terminate
from tests.waiting import wait_until

__all__ = ["make_bus_db"]  # a fixture, used here


@pytest.fixture
async def bus_adb(pg_db: dal.Database, postgres_url: str) -> AsyncIterator[dal.AsyncDatabase]:
    """An AsyncDatabase with ``invalidation="postgres"``, listening, on the test tables."""
    db = dal.AsyncDatabase(async_url(postgres_url), invalidation="postgres")
    await until(lambda: bus_stats(db)["state"] == "listening")  # type: ignore[arg-type]
    yield db
    assert db.stats()["pool"]["checked_out"] == 0
    await db.close()
    assert bus_stats(db)["state"] == "stopped"  # type: ignore[arg-type]


async def _session(db: dal.AsyncDatabase) -> None:
    async with db.session() as s:
        user = await s.get(User, 1)
        assert user is not None
        user.name = "async"


async def _write(db: dal.AsyncDatabase) -> None:
    await db._write(
        lambda conn: conn.execute(update(User).where(User.id == 1).values(name="async"))
    )


async def _core(db: dal.AsyncDatabase) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET name = 'async' WHERE id = 1"))


async def _autocommit(db: dal.AsyncDatabase) -> None:
    # Commits on its own: the NOTIFY must run alone, not in a transaction nobody commits.
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text("UPDATE users SET name = 'async' WHERE id = 1"))


WRITES: dict[str, Callable[[dal.AsyncDatabase], Awaitable[None]]] = {
    "session": _session,
    "write": _write,
    "core": _core,
    "autocommit": _autocommit,
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_an_async_write_reaches_another_databases_cache(
    bus_adb: dal.AsyncDatabase, make_bus_db: MakeDb, kind: str
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    users.get(1)
    assert hit(users, 1).name == "user1"
    sent = bus_stats(bus_adb)["messages_sent"]  # type: ignore[arg-type]

    await WRITES[kind](bus_adb)

    assert bus_stats(bus_adb)["messages_sent"] == sent + 1  # type: ignore[arg-type]
    wait_until(lambda: users.get(1).name == "async")


async def test_another_databases_commit_reaches_the_async_cache(
    bus_adb: dal.AsyncDatabase, make_bus_db: MakeDb
) -> None:
    b = make_bus_db()
    seed(Users(b))
    names = Names(bus_adb)
    assert await names.get(1) == "user1"

    Users(b).update(1, name="sync")

    await until(lambda: not names.cached(1))
    assert await names.get(1) == "sync"
    assert bus_stats(bus_adb)["messages_applied"] >= 1  # type: ignore[arg-type]


async def test_a_rolled_back_async_session_announces_nothing(
    bus_adb: dal.AsyncDatabase, make_bus_db: MakeDb
) -> None:
    a = make_bus_db()
    seed(Users(a))
    messages = Messages(a)
    with pytest.raises(RuntimeError):
        async with bus_adb.session() as s:
            await s.execute(update(User).where(User.id == 1).values(name="never"))
            raise RuntimeError("roll back")
    # Commits after the rollback, so it is delivered after anything the rollback sent.
    await bus_adb._write(lambda c: c.execute(update(User).where(User.id == 3).values(name="m")))

    messages.wait_for("users")
    assert [m.changes for m in messages.all] == [{"users": {(3,)}}]


async def test_losing_the_listener_clears_the_async_cache_and_pauses_it(
    bus_adb: dal.AsyncDatabase, make_bus_db: MakeDb, postgres_url: str
) -> None:
    b = make_bus_db()
    seed(Users(b))
    names = Names(bus_adb)
    assert await names.get(1) == "user1" and names.cached(1)

    terminate(postgres_url, bus_stats(bus_adb)["backend_pid"])  # type: ignore[arg-type]

    stats: Callable[[], Any] = bus_adb.stats
    await until(lambda: stats()["cache"]["paused"] == ["bus"])
    assert not names.cached(1)
    await until(lambda: stats()["bus"]["state"] == "listening")
    assert stats()["bus"]["reconnects"] == 1 and stats()["cache"]["paused"] == []
    assert await names.get(1) == "user1" and names.cached(1)


async def test_a_transaction_that_failed_commits_as_without_the_bus_and_announces_nothing(
    bus_adb: dal.AsyncDatabase, pg_db: dal.Database
) -> None:
    """A caught error aborts the transaction; its COMMIT rolls back without an error
    on asyncpg, the bus or not, and there is no write to announce."""
    seed(Users(pg_db))
    sent = bus_stats(bus_adb)["messages_sent"]  # type: ignore[arg-type]
    async with bus_adb.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET name = 'lost' WHERE id = 1"))
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await conn.execute(text("SELECT 1 / 0"))
    assert bus_stats(bus_adb)["messages_sent"] == sent  # type: ignore[arg-type]
    assert Users(pg_db).get(1).name == "user1"  # type: ignore[union-attr]


async def test_a_notify_on_a_killed_connection_is_the_drivers_error_wrapped_as_core_wraps_it(
    bus_adb: dal.AsyncDatabase, pg_db: dal.Database, postgres_url: str
) -> None:
    """The NOTIFY goes on asyncpg's own connection, past the adapter: its error is
    reported as the adapter reports it, so Core wraps it, and dal translates it."""
    seed(Users(pg_db))
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        async with bus_adb.engine.begin() as conn:
            await conn.execute(text("UPDATE users SET name = 'x' WHERE id = 1"))
            terminate(postgres_url, await conn.scalar(text("SELECT pg_backend_pid()")))
    with pytest.raises(dal.DatabaseError):
        await bus_adb._write(lambda conn: _written_then_killed(conn, postgres_url))


def _written_then_killed(conn: Any, postgres_url: str) -> None:
    conn.execute(update(User).where(User.id == 1).values(name="y"))
    terminate(postgres_url, conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
