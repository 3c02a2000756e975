"""Promise 1 at the real COMMIT on asyncpg: invalidation follows the server's answer.

As ``test_commit_parked``: a deferred constraint trigger makes PostgreSQL wait, inside
the writer's COMMIT, on an advisory lock the test holds. While that COMMIT is in
flight another task reads the old row and caches it; once the writer's commit has
returned, the entry must be gone. Code inside ``do_commit`` runs in the writer's
greenlet, so the seam is the sync one: this proves it holds for the asyncio adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import event, text, update

import dal
from tests.aiohelp import Names, until
from tests.models import User
from tests.test_commit_parked import parking


async def _session(db: dal.AsyncDatabase, pk: int) -> None:
    async with db.session() as s:
        user = await s.get(User, pk)
        assert user is not None
        user.name = "new"


async def _write(db: dal.AsyncDatabase, pk: int) -> None:
    await db._write(lambda conn: conn.execute(update(User).where(User.id == pk).values(name="new")))


async def _core(db: dal.AsyncDatabase, pk: int) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(update(User).where(User.id == pk).values(name="new"))


async def _text(db: dal.AsyncDatabase, pk: int) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET name = 'new' WHERE id = :pk"), {"pk": pk})


WRITES: dict[str, Callable[[dal.AsyncDatabase, int], Awaitable[None]]] = {
    "session": _session,
    "write": _write,
    "core": _core,
    "text": _text,
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_a_row_cached_while_commit_is_in_the_server_is_dropped_when_it_returns(
    pg_adb: dal.AsyncDatabase, kind: str
) -> None:
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    names = Names(pg_adb)
    committing = asyncio.Event()
    event.listen(pg_adb.engine.sync_engine, "commit", lambda conn: committing.set())

    with parking(pg_adb) as park:  # type: ignore[arg-type]
        writer = asyncio.create_task(WRITES[kind](pg_adb, 1))
        # Past SQLAlchemy's commit event, and waiting inside the server's COMMIT.
        await until(park.parked)
        assert committing.is_set() and not writer.done()

        # COMMIT has not returned: this task reads the old row and caches it.
        assert await names.get(1) == "old"
        assert names.cached(1)

        park.release()
        await asyncio.wait_for(writer, 10)
    # The writer has returned, so its COMMIT has: no later read may see the old row.
    assert not names.cached(1)
    assert await names.get(1) == "new"


async def test_a_writer_cancelled_inside_its_commit_leaves_nothing_stale_or_checked_out(
    pg_adb: dal.AsyncDatabase,
) -> None:
    # The COMMIT's outcome is the server's business (asyncpg cancels the statement);
    # whatever it is, the cache must not contradict it and the connection comes back.
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    names = Names(pg_adb)
    assert await names.get(1) == "old"

    with parking(pg_adb) as park:  # type: ignore[arg-type]
        writer = asyncio.create_task(_write(pg_adb, 1))
        await until(park.parked)
        writer.cancel()
        park.release()
        with pytest.raises(asyncio.CancelledError):
            await writer

    assert pg_adb.stats()["pool"]["checked_out"] == 0
    assert not names.cached(1)  # dropped at the COMMIT, whatever came of it
    assert await names.get(1) == await names.fetch(1)
