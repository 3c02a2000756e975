"""Adversarial interleavings of the async front end: each test forces one ordering
(events, a COMMIT parked in the server, loop steps) and checks a promise there.

- A task cancelled while its COMMIT is in the server: the COMMIT may still take
  effect after the task stopped waiting; no reader may cache the old row for good.
- A load that raises a BaseException of its own (not a cancellation) reaches its
  leader instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_only

import dal
from dal.aio import loads
from dal.store.cache import Store
from tests.aiohelp import Names, until
from tests.models import User
from tests.test_aio_repository import AUsers
from tests.test_commit_parked import LOCK, Parking, at_commit

# -- a COMMIT cancelled while the server runs it ----------------------------------------

#: Waits at COMMIT for the test's advisory lock, and keeps waiting if the client's
#: cancel request arrives meanwhile: the server then completes the COMMIT after the
#: writer stopped waiting, as it does whenever a cancel request comes too late.
STUBBORN = (
    f"BEGIN PERFORM pg_advisory_xact_lock({LOCK}); "
    f"EXCEPTION WHEN query_canceled THEN PERFORM pg_advisory_xact_lock({LOCK}); END"
)


@contextmanager
def stubborn_commit(db: dal.AsyncDatabase) -> Iterator[Parking]:
    with at_commit(db, STUBBORN) as conn:  # type: ignore[arg-type]
        park = Parking(conn)
        try:
            yield park
        finally:
            park.release()


async def test_a_write_cancelled_in_its_commit_leaves_no_stale_row_cached(
    pg_adb: dal.AsyncDatabase,
) -> None:
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    store = pg_adb._store
    ns = store.namespace(("review", "names"), "names", ["users"], None)
    statement = update(User).where(User.id == 1).values(name="new")

    async def name() -> Any:
        """users.name of row 1 through the store: a lease-checked, single-flight load."""

        async def load() -> Any:
            return await pg_adb._read(
                lambda conn: conn.exec_driver_sql("SELECT name FROM users WHERE id = 1").scalar()
            )

        return await loads.get_or_load(store, ns, (ns, 1), load)

    with stubborn_commit(pg_adb) as park:
        writer = asyncio.create_task(pg_adb._write(lambda conn: conn.execute(statement)))
        await until(park.parked)
        writer.cancel()
        await asyncio.sleep(0)  # one loop step: the writer takes its cancellation
        # The COMMIT is still in the server: the old row is what is committed.
        assert await name() == "old"
    with pytest.raises(asyncio.CancelledError):
        await writer
    # The server has answered the COMMIT: it took effect, the cancellation came too late.
    await _committed(pg_adb)
    assert await name() == "new"
    assert pg_adb.stats()["pool"]["checked_out"] == 0


async def test_a_write_cancelled_while_its_commit_is_queued_on_aiosqlite_caches_nothing_stale(
    sqlite_adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite runs a COMMIT its caller stopped waiting for all the same: queued on
    the connection's thread behind a job the test holds, it lands after the
    cancellation. A read made meanwhile caches the old row, so the invalidation must
    come after the COMMIT, not at the cancellation."""
    async with sqlite_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    names = Names(sqlite_adb)
    real_commit = aiosqlite.Connection.commit
    held, queued = threading.Event(), asyncio.Event()
    holding: list[asyncio.Future[Any]] = []

    async def commit_behind_a_held_job(self: Any) -> None:
        holding.append(asyncio.ensure_future(self._execute(held.wait)))  # the thread waits
        commit = asyncio.ensure_future(real_commit(self))  # queued behind it
        queued.set()
        await commit

    monkeypatch.setattr(aiosqlite.Connection, "commit", commit_behind_a_held_job)
    statement = update(User).where(User.id == 1).values(name="new")
    writer = asyncio.create_task(sqlite_adb._write(lambda conn: conn.execute(statement)))
    await queued.wait()
    monkeypatch.setattr(aiosqlite.Connection, "commit", real_commit)
    writer.cancel()
    await asyncio.sleep(0)  # one loop step: the writer takes its cancellation
    try:
        assert await names.get(1) == "old"  # the COMMIT has not run: cached
    finally:
        held.set()
    with pytest.raises(asyncio.CancelledError):
        await writer
    await holding[0]
    assert await names.fetch(1) == "new"  # it landed after the cancellation
    assert await names.get(1) == "new"  # and the cache was dropped after it


async def _committed(db: dal.AsyncDatabase) -> None:
    """Until the server shows the write (the COMMIT is answered once the lock is free)."""
    sql = "SELECT name FROM users WHERE id = 1"
    for _ in range(1000):
        if await db._read(lambda conn: conn.exec_driver_sql(sql).scalar()) == "new":
            return
    raise AssertionError("the parked COMMIT never took effect")


# -- a load's own BaseException -----------------------------------------------------------


class Stop(BaseException):
    """Neither an Exception nor a cancellation (as pytest's ``fail`` raises)."""


def _loop_errors(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    """Everything the loop reports to its exception handler ("never retrieved", ...)."""
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    return seen


def _stopping_load() -> tuple[list[int], Any]:
    calls = [0]

    async def load() -> Any:
        calls[0] += 1
        await asyncio.sleep(0)
        raise Stop

    return calls, load


async def test_a_load_raising_a_base_exception_of_its_own_reaches_its_callers() -> None:
    store = Store(100)
    ns = store.namespace("ns", "rows.get", ["t"], None)
    seen = _loop_errors(asyncio.get_running_loop())
    calls, load = _stopping_load()
    callers = [asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load)) for _ in range(3)]
    done, _ = await asyncio.wait(callers, timeout=10)  # bounds a hang only
    assert len(done) == 3, f"callers still retrying after {calls[0]} loads"
    assert all(isinstance(c.exception(), Stop) for c in callers)
    # Each caller met it in a load it led: none retried a load that raised it.
    assert calls[0] <= 3
    assert store.stats()["in_flight"] == 0 and not loads._running
    assert seen == []


async def test_a_load_raising_cancelled_error_uncancelled_is_not_retried_forever() -> None:
    store = Store(100)
    ns = store.namespace("ns", "rows.get", ["t"], None)
    calls = [0]

    async def load() -> Any:
        calls[0] += 1
        gone = asyncio.get_running_loop().create_future()
        gone.cancel()
        return await gone  # something the load awaited was cancelled, not the load

    caller = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load))
    done, _ = await asyncio.wait([caller], timeout=10)  # bounds a hang only
    assert done, f"still retrying after {calls[0]} loads"
    assert caller.cancelled() and calls[0] == 1
    assert store.stats()["in_flight"] == 0


# -- a task started inside a load outlives it ----------------------------------------------


async def test_a_task_started_inside_a_read_reads_on_its_own_after_that_read_ended(
    adb: dal.AsyncDatabase,
) -> None:
    # A miss inside a load reads on the load's connection (the context says which).
    # A task started there copies that context, and may run long after the load
    # returned its connection to the pool: it must read on a connection of its own.
    async with adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    later = asyncio.Event()

    async def name() -> Any:
        sql = "SELECT name FROM users WHERE id = 1"
        return await adb._read(lambda conn: conn.exec_driver_sql(sql).scalar())

    async def background() -> Any:
        await later.wait()
        return await name()

    async def query(session: AsyncSession) -> asyncio.Task[Any]:
        return asyncio.create_task(background())

    task = await adb._read_in_session(query)
    assert adb.stats()["pool"]["checked_out"] == 0  # the load's connection is back
    later.set()
    assert await task == "old"
    assert adb.stats()["pool"]["checked_out"] == 0


# -- a cached function's load never reads through a caller's session ------------------------


async def test_a_cached_load_started_in_a_session_never_caches_that_sessions_writes(
    adb: dal.AsyncDatabase,
) -> None:
    # The load of a cached function is shared by every caller and stored: it reads
    # committed rows only. Started by a task inside an unwritten session(), its Task
    # copies that task's context; the session then writes (here a sibling task of
    # gather, as with any timeout that lets the caller go on), and a repository read
    # inside the function must not see, and cache, that uncommitted write.
    users = AUsers(adb)
    await users.add(id=1, email="a@example.com", name="old")
    entered, written = asyncio.Event(), asyncio.Event()

    @dal.cached_query(adb, depends_on=[User])
    async def name_of(session: AsyncSession, pk: int) -> str:
        entered.set()
        await written.wait()
        found = await users.get(pk)
        assert found is not None
        return found.name

    async def write() -> None:
        await entered.wait()
        await users.update(1, name="uncommitted")
        written.set()

    with pytest.raises(RuntimeError):
        async with adb.session():
            await asyncio.gather(name_of(1), write())
            raise RuntimeError("roll back")
    # Rolled back: neither the function's cached result nor the row says otherwise.
    assert await name_of(1) == "old"
    assert (await users.get(1)).name == "old"  # type: ignore[union-attr]


async def test_a_write_cancelled_in_a_commit_that_then_fails_still_ends_cancelled(
    pg_adb: dal.AsyncDatabase,
) -> None:
    # The COMMIT runs to its end for a cancelled task (see above); when it fails (a
    # deferred constraint), the task still ends with its cancellation, not swallowed
    # into the COMMIT's error, and nothing it wrote is cached or counted committed.
    async with pg_adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    failing = (
        f"PERFORM pg_advisory_xact_lock({LOCK}); "
        "RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'"
    )
    statement = update(User).where(User.id == 1).values(name="new")
    with at_commit(pg_adb, failing) as conn:  # type: ignore[arg-type]
        park = Parking(conn)
        try:
            writer = asyncio.create_task(pg_adb._write(lambda conn: conn.execute(statement)))
            await until(park.parked)
            writer.cancel()
            await asyncio.sleep(0)  # one loop step: the writer takes its cancellation
        finally:
            park.release()
        with pytest.raises(asyncio.CancelledError):
            await writer
    assert writer.cancelled()
    sql = "SELECT name FROM users WHERE id = 1"
    assert await pg_adb._read(lambda conn: conn.exec_driver_sql(sql).scalar()) == "old"
    assert pg_adb.stats()["pool"]["checked_out"] == 0


# -- a task started inside a session() outlives its block --------------------------------


async def test_a_task_started_in_a_session_writes_on_its_own_once_the_block_ended(
    adb: dal.AsyncDatabase,
) -> None:
    # The task copies the context, where the block's session is active. Once the
    # block has committed and closed, a write there must commit on its own: not
    # in a new transaction of the closed session that nobody commits, lost with
    # its connection held out of the pool.
    users = AUsers(adb)
    await users.add(id=1, email="a@example.com", name="old")
    ended = asyncio.Event()

    async def background() -> None:
        await ended.wait()
        await users.update(1, name="later")
        async with adb.session() as s:  # an outermost session of its own
            user = await s.get(User, 1)
            assert user is not None
            user.email = "later@example.com"

    async with adb.session():
        await users.update(1, name="in the block")
        task = asyncio.create_task(background())
    ended.set()
    await task

    assert adb.stats()["pool"]["checked_out"] == 0
    sql = "SELECT name, email FROM users WHERE id = 1"
    row = await adb._read(lambda conn: tuple(conn.exec_driver_sql(sql).one()))
    assert row == ("later", "later@example.com")
    assert (await users.get(1)).name == "later"  # type: ignore[union-attr]


# -- close() while calls are in flight -----------------------------------------------------


async def test_close_while_a_session_and_a_load_run_closes_their_connections_after_them(
    adb: dal.AsyncDatabase,
) -> None:
    # Both go on to their end; the connections they hold come back to the pool
    # close() disposed, which must close them (an asyncio driver's connection left
    # to garbage collection is never closed: "unclosed transport" at exit).
    users = AUsers(adb)
    await users.add(id=1, email="a@example.com", name="old")
    users.cache_clear()
    inside, go = asyncio.Event(), asyncio.Event()
    reading, read = asyncio.Event(), asyncio.Event()

    async def body() -> None:
        async with adb.session() as s:
            await s.execute(update(User).where(User.id == 1).values(name="new"))
            inside.set()
            await go.wait()

    def park(*args: Any) -> None:  # the load, at its SELECT
        if not reading.is_set():
            reading.set()
            await_only(read.wait())

    session = asyncio.create_task(body())
    await inside.wait()
    event.listen(adb._engine.sync_engine, "before_cursor_execute", park)
    load = asyncio.create_task(users.get(1))
    await reading.wait()
    assert adb.stats()["pool"]["checked_out"] == 2
    disconnects = adb.stats()["pool"]["disconnects"]

    await adb.close()
    go.set()
    read.set()
    await session
    assert await load is not None
    assert adb.stats()["pool"]["disconnects"] == disconnects + 2  # both closed on return
    assert adb.stats()["cache"]["currsize"] == 0  # nothing cached once closed
    with pytest.raises(dal.DatabaseClosed):
        await users.get(1)
