"""Promise 7 under cancellation: a task cancelled at any await inside dal leaves no
connection checked out, no transaction half done, and the database working.

``Pause`` parks the task at an exact point (a SQLAlchemy event, which runs in the
task's greenlet, awaiting there as the driver would); the test cancels it while it
is parked there. No sleeps: the test waits for the task to reach the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import dal
from dal.drivers.pkread import PkRead
from tests.aiohelp import Pause
from tests.models import User


async def _read(db: dal.AsyncDatabase) -> Any:
    return await db._read(lambda conn: conn.execute(select(User.name)).all())


async def _read_raw(db: dal.AsyncDatabase) -> Any:
    reader = PkRead(db.engine.dialect, list(User.__table__.columns), [User.__table__.c.id])
    return await db._read_raw(reader, lambda cursor: reader.run(cursor, (1,)))


async def _read_in_session(db: dal.AsyncDatabase) -> Any:
    async def query(session: AsyncSession) -> Any:
        return await session.scalar(select(User.name))

    return await db._read_in_session(query)


async def _write(db: dal.AsyncDatabase) -> Any:
    return await db._write(lambda conn: conn.execute(update(User).values(name="new")))


async def _session(db: dal.AsyncDatabase) -> Any:
    async with db.session() as s:
        await s.execute(update(User).values(name="new"))


CALLS: dict[str, Callable[[dal.AsyncDatabase], Awaitable[Any]]] = {
    "read": _read,
    "read_raw": _read_raw,
    "read_in_session": _read_in_session,
    "write": _write,
    "session": _session,
}

#: Where to park: (event target, event name); "engine" is ``db.engine.sync_engine``.
POINTS = {
    "connect": ("engine", "do_connect"),
    "checkout": ("engine", "checkout"),
    "statement": ("engine", "before_cursor_execute"),
    "after-statement": ("engine", "after_cursor_execute"),
    "commit": ("engine", "commit"),
}

#: The points each call passes (a raw read sends no cursor events while nobody
#: listens; the listener that parks it makes it take Core's path, which does).
PASSES = {
    "read": ["connect", "checkout", "statement", "after-statement"],
    "read_raw": ["connect", "checkout", "statement", "after-statement"],
    "read_in_session": ["connect", "checkout", "statement", "after-statement"],
    "write": ["connect", "checkout", "statement", "after-statement", "commit"],
    "session": ["connect", "checkout", "statement", "after-statement", "commit"],
}


async def _cancel_at(db: dal.AsyncDatabase, call: str, point: str) -> None:
    if point == "connect":  # an empty pool: the call opens a connection
        await db.engine.dispose()
    pause = Pause()
    _, name = POINTS[point]
    target = db.engine.sync_engine
    event.listen(target, name, pause.hook)
    try:
        task = asyncio.create_task(CALLS[call](db))
        await asyncio.wait_for(pause.reached.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        event.remove(target, name, pause.hook)


@pytest.mark.parametrize(
    ("call", "point"), [(c, p) for c, points in PASSES.items() for p in points]
)
async def test_a_task_cancelled_inside_a_call_leaves_nothing_behind(
    adb: dal.AsyncDatabase, call: str, point: str
) -> None:
    async with adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))

    await _cancel_at(adb, call, point)

    assert adb.stats()["pool"]["checked_out"] == 0
    # Nothing half done: the cancelled write did not commit, and the next calls work.
    names = await adb._read(lambda conn: conn.execute(select(User.name)).scalars().all())
    assert names == ["old"]
    await CALLS[call](adb)
    assert adb.stats()["pool"]["checked_out"] == 0


async def _write_and_wait(adb: dal.AsyncDatabase, inside: asyncio.Event) -> None:
    """A session that writes, sets ``inside``, then waits until it is cancelled."""
    async with adb.session() as s:
        await s.execute(update(User).values(name="never"))
        inside.set()
        await asyncio.Event().wait()


async def test_a_task_cancelled_in_a_session_body_rolls_back(adb: dal.AsyncDatabase) -> None:
    async with adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    inside = asyncio.Event()

    task = asyncio.create_task(_write_and_wait(adb, inside))
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adb.stats()["pool"]["checked_out"] == 0
    assert adb._writing_session() is None and adb._sessions_open == 0
    assert await adb._read(lambda conn: conn.execute(select(User.name)).scalar()) == "old"


async def test_cancelled_again_during_its_cleanup_a_session_still_ends_cleanly(
    adb: dal.AsyncDatabase,
) -> None:
    # Cancelled in the body, again in its ROLLBACK, and again while its connection
    # is reset on the way back to the pool: the cleanup runs to its end regardless,
    # so the connection goes back whole, not invalidated as one cut short would be.
    async with adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    inside = asyncio.Event()
    rolling_back, resetting = Pause(), Pause()
    event.listen(adb.engine.sync_engine, "rollback", rolling_back.hook)
    event.listen(adb.engine.sync_engine.pool, "reset", resetting.hook)
    disconnects = adb.stats()["pool"]["disconnects"]

    task = asyncio.create_task(_write_and_wait(adb, inside))
    await inside.wait()
    for pause in (rolling_back, resetting):
        task.cancel()
        await pause.reached.wait()
        pause.release()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adb.stats()["pool"]["checked_out"] == 0
    assert adb.stats()["pool"]["disconnects"] == disconnects
    assert await adb._read(lambda conn: conn.execute(select(User.name)).scalar()) == "old"


async def test_a_task_cancelled_inside_a_cached_querys_body_returns_the_connection(
    adb: dal.AsyncDatabase,
) -> None:
    inside = asyncio.Event()

    async def query(session: AsyncSession) -> Any:
        await session.scalar(select(User.name))
        inside.set()
        await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(adb._read_in_session(query))
    await inside.wait()
    assert adb.stats()["pool"]["checked_out"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adb.stats()["pool"]["checked_out"] == 0
    assert await _read(adb) == []
