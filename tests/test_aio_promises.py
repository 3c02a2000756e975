"""Promises 2, 4, 7 and 11 for AsyncRepository and async cached queries, on a real
database: a hit never suspends, a miss never blocks the loop, one load per key across
coroutines, a failed load reaches every waiter and is not cached, a cancelled caller
cancels only itself, no connection leaks, and a commit during a load leaves no stale
fill. Loads are parked at exact points inside dal by SQLAlchemy events (``Park``) or
by a lock the server holds, never by sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only

import dal
from dal.aio import loads
from tests.models import User
from tests.sqllog import StatementLog
from tests.test_aio_repository import AUsers
from tests.waiting import turns_until

COROUTINES = 50


class Park:
    """A SQLAlchemy event hook that parks the first ``times`` callers (inside their
    greenlet, so at an await of the event loop) until ``release()``."""

    def __init__(self, times: int = 1) -> None:
        self.reached = asyncio.Event()
        self._go = asyncio.Event()
        self.left = times

    def hook(self, *args: Any, **kwargs: Any) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        self.reached.set()
        await_only(self._go.wait())

    def release(self) -> None:
        self._go.set()


def _park(adb: dal.AsyncDatabase, at: str, times: int = 1) -> Park:
    park = Park(times)
    event.listen(adb._engine.sync_engine, at, park.hook)
    return park


def _cache(adb: dal.AsyncDatabase) -> dict[str, Any]:
    return adb.stats()["cache"]  # type: ignore[no-any-return]


# -- promise 11: a hit never suspends; a miss never blocks the loop ----------------------------


async def test_a_thousand_awaited_hits_let_no_other_callback_run(adb: dal.AsyncDatabase) -> None:
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id

    @dal.cached_query(adb, depends_on=[User])
    async def count(session: AsyncSession) -> int:
        return len(list(await session.scalars(text("SELECT id FROM users"))))

    await users.get(pk)
    await users.find(name="A")
    await count()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "callback")

    for _ in range(1000):
        await users.get(pk)
        await users.find(name="A")
        await count()

    assert ran == []  # no await yielded to the loop
    await asyncio.sleep(0)
    assert ran == ["callback"]
    assert users.cache_info().hits == 2000 and count.cache_info().hits == 1000


async def test_a_slow_miss_does_not_block_the_loop(
    pg_adb: dal.AsyncDatabase, postgres_url: str
) -> None:
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    engine = create_engine(make_url(postgres_url), poolclass=NullPool)
    with engine.connect() as lock:
        lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        miss = asyncio.create_task(users.get(pk))
        # The miss's SELECT waits in the server, on the lock this test holds.
        while not lock.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
            await asyncio.sleep(0)
        ticks = 0
        while ticks < 1000 and not miss.done():  # the loop keeps serving others
            ticks += 1
            await asyncio.sleep(0)
        assert ticks == 1000 and not miss.done()
        lock.rollback()  # releases the lock: the miss completes
    engine.dispose()
    assert (await miss).name == "A"  # type: ignore[union-attr]


# -- promise 4: one load per key; failure shared and not cached; cancellation ----------------------


async def test_concurrent_misses_on_one_row_issue_one_select(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    park = _park(adb, "checkout")
    adb_statements.clear()

    tasks = [asyncio.create_task(users.get(pk)) for _ in range(COROUTINES)]
    await turns_until(lambda: _cache(adb)["misses"] == COROUTINES)
    park.release()
    results = await asyncio.gather(*tasks)

    assert {r.name for r in results} == {"A"} and len(results) == COROUTINES  # type: ignore[union-attr]
    assert len(adb_statements.selects()) == 1 and _cache(adb)["loads"] == 1


async def test_concurrent_calls_of_a_cached_function_run_it_once(adb: dal.AsyncDatabase) -> None:
    await AUsers(adb).add(email="a@example.com", name="A")
    calls: list[int] = []
    go = asyncio.Event()

    @dal.cached_query(adb, depends_on=[User])
    async def names(session: AsyncSession) -> list[str]:
        calls.append(1)
        await go.wait()
        return list(await session.scalars(text("SELECT name FROM users")))

    tasks = [asyncio.create_task(names()) for _ in range(COROUTINES)]
    await turns_until(lambda: names.cache_info().misses == COROUTINES)
    go.set()
    assert await asyncio.gather(*tasks) == [["A"]] * COROUTINES
    assert calls == [1]


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached(
    adb: dal.AsyncDatabase,
) -> None:
    calls: list[int] = []
    go = asyncio.Event()

    @dal.cached_query(adb, depends_on=[User])
    async def broken(session: AsyncSession) -> Any:
        calls.append(1)
        await go.wait()
        return (await session.execute(text("SELECT * FROM no_such_table"))).all()

    tasks = [asyncio.create_task(broken()) for _ in range(10)]
    await turns_until(lambda: broken.cache_info().misses == 10)
    go.set()
    errors = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(e, dal.DatabaseError) for e in errors), errors
    assert len({id(e) for e in errors}) == 1 and calls == [1]  # one load, its one error
    assert broken.cache_info().currsize == 0
    with pytest.raises(dal.DatabaseError):
        await broken()
    assert calls == [1, 1]  # not cached: the next call loads again


@pytest.mark.parametrize("cancelled", ["leader", "waiter"])
async def test_a_cancelled_caller_cancels_only_itself(
    adb: dal.AsyncDatabase, adb_statements: StatementLog, cancelled: str
) -> None:
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    park = _park(adb, "after_cursor_execute")  # the SELECT is sent, its answer pending
    adb_statements.clear()

    leader = asyncio.create_task(users.get(pk))
    await park.reached.wait()
    others = [asyncio.create_task(users.get(pk)) for _ in range(3)]
    await turns_until(lambda: _cache(adb)["misses"] == 4)
    victim = leader if cancelled == "leader" else others[0]
    victim.cancel()
    await asyncio.gather(victim, return_exceptions=True)
    park.release()

    rest = [t for t in (leader, *others) if t is not victim]
    assert [r.name for r in await asyncio.gather(*rest)] == ["A"] * 3  # type: ignore[union-attr]
    assert victim.cancelled()
    assert await users.get(pk) is not None
    assert len(adb_statements.selects()) == 1  # the load went on, and its value was stored
    assert _cache(adb)["in_flight"] == 0


WRITE_POINTS = ["checkout", "before_cursor_execute", "after_cursor_execute", "commit"]
READ_POINTS = ["checkout", "before_cursor_execute", "after_cursor_execute"]


@pytest.mark.parametrize("at", READ_POINTS)
async def test_a_read_cancelled_at_any_await_leaks_no_connection(
    adb: dal.AsyncDatabase, at: str
) -> None:
    """The caller, and then the load itself (as at loop shutdown), cancelled where the
    load is parked: every connection is back in the pool (the fixture checks too)."""
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    for target in ("caller", "load"):
        users.cache_clear()
        park = _park(adb, at)
        caller = asyncio.create_task(users.get(pk))
        await park.reached.wait()
        (load,) = loads._running
        (caller if target == "caller" else load).cancel()
        park.release()
        result = await asyncio.gather(caller, return_exceptions=True)
        await turns_until(lambda: not loads._running)
        event.remove(adb._engine.sync_engine, at, park.hook)
        if target == "load":  # its caller loaded again, unparked
            assert result[0].name == "A"  # type: ignore[union-attr]
        assert adb.stats()["pool"]["checked_out"] == 0, (target, at)


@pytest.mark.parametrize("at", WRITE_POINTS)
async def test_a_write_cancelled_at_any_await_leaks_no_connection(
    adb: dal.AsyncDatabase, at: str
) -> None:
    users = AUsers(adb)
    park = _park(adb, at)
    writer = asyncio.create_task(users.add(email="a@example.com", name="A"))
    await park.reached.wait()
    writer.cancel()
    park.release()
    await asyncio.gather(writer, return_exceptions=True)
    await turns_until(lambda: adb.stats()["pool"]["checked_out"] == 0)
    assert len(await users.find()) in (0, 1)  # committed or not, never half-done


# -- promise 2: no stale fills --------------------------------------------------------------------


async def test_a_commit_during_a_load_leaves_no_stale_fill(adb: dal.AsyncDatabase) -> None:
    """The load reads the old row, a write commits, then the load tries to store: its
    lease was revoked, so the old row is returned to its caller but never cached."""
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="old")).id
    park = _park(adb, "after_cursor_execute")  # the SELECT has read the old row

    reader = asyncio.create_task(users.get(pk))
    await park.reached.wait()
    await users.update(pk, name="new")  # commits (and invalidates) while the load is parked
    park.release()

    assert (await reader).name == "old"  # type: ignore[union-attr]
    assert _cache(adb)["stale_fills_prevented"] == 1
    assert (await users.get(pk)).name == "new"  # type: ignore[union-attr]
