"""AsyncDatabase errors: every path raises dal errors; a dead pool costs a read no error.

asyncpg lets a refused connect out as the socket's ``ConnectionRefusedError``; dal
makes it the driver's OperationalError, so it reaches callers as ``dal.DatabaseError``
chained to Core's error, like every other driver's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import dal
from dal.drivers.pkread import PkRead, PkRun
from tests import mysqlserver, pgserver
from tests.aiohelp import Names, join_aiosqlite_threads
from tests.models import User
from tests.test_recovery import _terminate_all


async def _session(db: dal.AsyncDatabase) -> Any:
    async with db.session() as s:
        return (await s.execute(text("SELECT 1"))).all()


async def _read_in_session(db: dal.AsyncDatabase) -> Any:
    async def query(session: AsyncSession) -> Any:
        return await session.scalar(select(User.name))

    return await db._read_in_session(query)


async def _read_raw(db: dal.AsyncDatabase) -> Any:
    reader = PkRead(db.engine.dialect, list(User.__table__.columns), [User.__table__.c.id])
    return await db._read_raw(reader, lambda cursor: reader.run(cursor, (1,)))


#: How many ``_read_pk`` calls took the greenlet-free path (``AsyncDatabase._direct``).
DIRECT: list[int] = []


async def _read_pk(db: dal.AsyncDatabase) -> Any:
    """A repository's primary-key miss: awaited without a greenlet when it can be."""
    reader = PkRead(db.engine.dialect, list(User.__table__.columns), [User.__table__.c.id])
    run = PkRun(reader, (1,), tuple)
    direct = db._direct(run)
    if direct is None:
        return await db._read_raw(reader, run)
    DIRECT.append(1)
    return await direct


CALLS: dict[str, Callable[[dal.AsyncDatabase], Awaitable[Any]]] = {
    "read": lambda db: db._read(lambda conn: conn.execute(select(User.name)).all()),
    "read_raw": _read_raw,
    "read_pk": _read_pk,
    "read_in_session": _read_in_session,
    "write": lambda db: db._write(lambda conn: conn.execute(update(User).values(name="x"))),
    "session": _session,
}


def _unreachable(kind: str, tmp_path: Path) -> tuple[str, type[BaseException]]:
    if kind == "closed-port":
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{pgserver.free_port()}/none"
        return url, OSError
    if kind == "missing-directory":
        return f"sqlite+aiosqlite:///{tmp_path}/missing/dal.db", sqlite3.Error
    return f"sqlite+aiosqlite:///{tmp_path}", sqlite3.Error  # a directory


@pytest.mark.parametrize("kind", ["closed-port", "missing-directory", "directory"])
@pytest.mark.parametrize("call", list(CALLS))
async def test_a_database_that_cannot_be_reached_is_a_database_error(
    kind: str, call: str, tmp_path: Path
) -> None:
    url, driver_error = _unreachable(kind, tmp_path)
    async with dal.AsyncDatabase(url) as db:
        with pytest.raises(dal.DatabaseError) as caught:
            await CALLS[call](db)
        cause = caught.value.__cause__
        assert isinstance(cause, sqlalchemy.exc.DBAPIError), repr(cause)
        # The driver's own error at the end of the chain: the socket's, for asyncpg.
        root: BaseException | None = cause
        while root is not None and not isinstance(root, driver_error):
            root = root.__cause__
        assert root is not None, repr(cause)
        assert db.stats()["pool"]["checked_out"] == 0
    join_aiosqlite_threads()


async def _fill_pool(db: dal.AsyncDatabase, n: int) -> None:
    conns = [await db.engine.connect() for _ in range(n)]
    for conn in conns:
        await conn.exec_driver_sql("SELECT 1")
    for conn in conns:
        await conn.close()
    assert db.stats()["pool"]["checked_in"] == n


@pytest.mark.parametrize("call", ["read", "read_raw", "read_pk", "read_in_session"])
async def test_every_read_after_the_server_dropped_the_pool_succeeds(
    pg_adb: dal.AsyncDatabase, call: str
) -> None:
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="a"))
    await _fill_pool(pg_adb, 3)
    before, direct = pg_adb.stats()["pool"], len(DIRECT)
    _terminate_all(pg_adb)  # type: ignore[arg-type]

    results = [await CALLS[call](pg_adb) for _ in range(3)]  # no error

    if call == "read_pk":
        # The first meets a dead idle connection directly and recovers; the pool
        # must then connect again, which only the greenlet path does.
        assert len(DIRECT) - direct == 1

    assert results[0] == results[1] == results[2]
    after = pg_adb.stats()["pool"]
    assert after["retries"] - before["retries"] == 1  # the first read only
    assert after["disconnects"] - before["disconnects"] == 1


@pytest.mark.parametrize("call", ["read", "read_raw", "read_pk", "read_in_session"])
async def test_after_a_mysql_restart_every_read_succeeds(
    mysql_adb: dal.AsyncDatabase, mysql_url: str, call: str
) -> None:
    async with mysql_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="a"))
    held = [await mysql_adb.engine.connect() for _ in range(3)]
    ids = [await conn.scalar(text("SELECT CONNECTION_ID()")) for conn in held]
    for conn in held:
        await conn.close()
    admin = mysqlserver.connect(mysql_url)
    try:
        with admin.cursor() as cur:
            for session_id in ids:  # every pooled connection ends, as in a server restart
                cur.execute(f"KILL {int(session_id)}")
    finally:
        admin.close()
    before = mysql_adb.stats()["pool"]["retries"]

    results = [await CALLS[call](mysql_adb) for _ in range(3)]  # no error

    assert results[0] == results[1] == results[2]
    assert mysql_adb.stats()["pool"]["retries"] - before == 1  # the first read only


async def test_a_write_on_a_dropped_connection_raises_and_the_next_one_works(
    pg_adb: dal.AsyncDatabase,
) -> None:
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    names = Names(pg_adb)
    assert await names.get(1) == "old"
    await _fill_pool(pg_adb, 3)
    _terminate_all(pg_adb)  # type: ignore[arg-type]
    with pytest.raises(dal.DatabaseError):
        await CALLS["write"](pg_adb)
    await CALLS["write"](pg_adb)
    assert await names.get(1) == "x"
