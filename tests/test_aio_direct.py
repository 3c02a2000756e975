"""The async miss's own machinery: reused greenlets (``dal.aio.greenlets``), loads
driven without a Task (``dal.aio.tasks.Detached``) and the primary-key read awaited
without a greenlet (``dal.aio.direct``). Each keeps the promises of the path it
replaces; these tests check what is particular to it, on real databases.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only, greenlet_spawn

import dal
from dal.aio import database as aio_database
from dal.aio import greenlets, loads
from dal.aio import tasks as tasks_module
from dal.aio.tasks import Detached, finish
from tests import tables
from tests.conftest import async_url
from tests.test_aio_repository import AUsers
from tests.waiting import turns_until

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


# -- reused greenlets ----------------------------------------------------------------------


async def test_run_sync_reuses_one_greenlet_and_await_only_works_inside() -> None:
    def twice(value: int) -> int:
        return await_only(asyncio.sleep(0, value)) * 2

    assert await greenlets.run_sync(twice, 4) == 8
    idle = list(greenlets._idle.workers)
    assert await greenlets.run_sync(twice, 5) == 10
    assert greenlets._idle.workers == idle  # the last one went out and came back


async def test_concurrent_calls_run_on_greenlets_of_their_own() -> None:
    release = asyncio.Event()

    def wait(value: int) -> int:
        await_only(release.wait())
        return value

    calls = [asyncio.create_task(greenlets.run_sync(wait, i)) for i in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2]
    assert len(greenlets._idle.workers) >= 3


async def test_an_error_inside_reaches_the_caller_and_the_greenlet_serves_again() -> None:
    def fail() -> None:
        await_only(asyncio.sleep(0))
        raise LookupError("inside")

    with pytest.raises(LookupError, match="inside"):
        await greenlets.run_sync(fail)
    assert await greenlets.run_sync(lambda: 3) == 3


async def test_context_variables_set_inside_are_the_callers_as_under_greenlet_spawn() -> None:
    def set_it() -> str:
        before = VAR.get()
        VAR.set("inside")
        return before

    VAR.set("caller")
    assert await greenlets.run_sync(set_it) == "caller"
    assert VAR.get() == "inside"


async def test_a_cancellation_at_an_await_inside_is_raised_there_and_the_caller_ends() -> None:
    reached, cleaned = asyncio.Event(), []

    def parked() -> None:
        reached.set()
        try:
            await_only(asyncio.Event().wait())
        finally:
            cleaned.append(await_only(asyncio.sleep(0, "cleaned")))

    call = asyncio.create_task(greenlets.run_sync(parked))
    await reached.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert cleaned == ["cleaned"]  # the cleanup inside could still await
    assert await greenlets.run_sync(lambda: "again") == "again"


class _Held:
    """A value or an error a test watches being collected."""


async def test_an_idle_greenlet_keeps_nothing_of_its_last_call_alive() -> None:
    value = await greenlets.run_sync(_Held)
    returned = weakref.ref(value)

    def fail() -> None:
        raise LookupError(_Held())

    with pytest.raises(LookupError) as caught:
        await greenlets.run_sync(fail)
    raised = weakref.ref(caught.value.args[0])
    del value, caught
    gc.collect()
    assert returned() is None and raised() is None


# -- Detached ----------------------------------------------------------------------------------


async def test_detached_runs_its_first_step_at_once_and_the_rest_from_its_futures() -> None:
    steps: list[str] = []
    gate = asyncio.get_running_loop().create_future()

    async def work() -> str:
        steps.append("first")
        await gate
        await asyncio.sleep(0)  # a bare yield too
        steps.append("last")
        return "done"

    ended: list[Detached[str]] = []
    run = Detached(work(), asyncio.get_running_loop(), ended.append).start()
    assert steps == ["first"] and not run.done  # before any turn of the loop
    gate.set_result(None)
    while not run.done:
        await asyncio.sleep(0)
    assert steps == ["first", "last"] and run.result() == "done" and ended == [run]


async def test_finish_raises_a_cancellation_only_once_the_cleanup_is_over() -> None:
    gate = asyncio.Event()
    over: list[str] = []

    async def cleanup() -> str:
        await gate.wait()
        over.append("over")
        return "value"

    async def caller() -> str:
        return await finish(cleanup())

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done() and over == []  # still waiting for its cleanup
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert over == ["over"]
    assert await finish(cleanup()) == "value"


# -- the primary-key miss without a greenlet ----------------------------------------------


class _Counted:
    """Counts the calls of ``dal.aio.database.run_sync``: the greenlet path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = aio_database.run_sync

        async def counted(*args: Any) -> Any:
            self.calls += 1
            return await real(*args)

        monkeypatch.setattr(aio_database, "run_sync", counted)


def _fetches(db: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The driver connections ``db``'s greenlet-free reads fetch on, one per read."""
    fetch, used = db._fetch, []
    assert fetch is not None

    def noted(adapted: Any, sql: str, parameters: Any) -> Any:
        used.append(adapted.driver_connection)
        return fetch(adapted, sql, parameters)

    monkeypatch.setattr(db, "_fetch", noted)
    return used


@contextmanager
def _users_locked(postgres_url: str) -> Iterator[Connection]:
    """A lock on ``users`` held in the server: every read of it waits until the
    yielded connection's ``rollback()``."""
    engine = create_engine(make_url(postgres_url), poolclass=NullPool)
    try:
        with engine.connect() as lock:
            lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            yield lock
    finally:
        engine.dispose()


async def _until_parked(lock: Connection) -> None:
    """Until a statement waits on ``lock`` in the server."""
    while not lock.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
        await asyncio.sleep(0)


async def test_a_miss_with_an_idle_connection_is_one_statement_and_no_greenlet(
    adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    sent = _fetches(adb, monkeypatch)
    greenlet_path = _Counted(monkeypatch)

    found = await users.get(pk)
    missing = await users.get(pk + 1000)

    assert found is not None and found.name == "A" and missing is None
    assert len(sent) == 2 and greenlet_path.calls == 0
    assert users.cache_info().misses == 2 and adb.stats()["pool"]["checked_out"] == 0


async def test_a_listener_on_checkout_sends_the_miss_through_the_pool_as_usual(
    adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    seen: list[int] = []
    event.listen(adb._engine.sync_engine, "checkout", lambda *args: seen.append(1))
    greenlet_path = _Counted(monkeypatch)

    assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]

    assert seen == [1] and greenlet_path.calls == 1


async def test_a_leader_cancelled_while_the_server_holds_its_select_cancels_only_itself(
    pg_adb: dal.AsyncDatabase, postgres_url: str
) -> None:
    """The SELECT is parked by a lock the test holds in the server (no listener, so
    the miss takes the direct path and its load runs Detached)."""
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    with _users_locked(postgres_url) as lock:
        leader = asyncio.create_task(users.get(pk))
        await _until_parked(lock)
        waiters = [asyncio.create_task(users.get(pk)) for _ in range(3)]
        while users.cache_info().misses < 4:
            await asyncio.sleep(0)
        leader.cancel()
        await asyncio.gather(leader, return_exceptions=True)
        (load,) = loads._running  # the load goes on, driven without a Task
        assert isinstance(load, Detached)
        lock.rollback()

    assert [r.name for r in await asyncio.gather(*waiters)] == ["A"] * 3  # type: ignore[union-attr]
    assert leader.cancelled()
    assert pg_adb.stats()["cache"]["loads"] == 1 and users.cache_info().currsize == 1
    assert pg_adb.stats()["pool"]["checked_out"] == 0


async def test_a_mysql_connection_left_in_autocommit_0_is_checked_out_through_the_greenlet(
    mysql_adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dal's MySQL checkout listener puts such a connection back in autocommit (an
    await): the miss cannot take the greenlet-free path, and reads the same."""
    url = mysql_adb.settings.url.render_as_string(hide_password=False)
    async with dal.AsyncDatabase(url, pool_size=1, max_overflow=0) as db:
        users = AUsers(db)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        async with db.engine.connect() as conn:
            serializable = await conn.execution_options(isolation_level="SERIALIZABLE")
            await serializable.exec_driver_sql("SELECT 1")
        # Back in the pool in autocommit=0 (SQLAlchemy's reset of the isolation level).
        greenlet_path = _Counted(monkeypatch)

        assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]

        assert greenlet_path.calls == 1
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT @@autocommit")) == 1


async def test_a_direct_read_returning_to_a_full_pool_closes_its_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overflow connection that comes back to a full pool is closed, which awaits:
    the direct read's return must not try that without a greenlet."""
    tables.fresh(postgres_url)
    adb = dal.AsyncDatabase(async_url(postgres_url), pool_size=1, max_overflow=1)
    try:
        users = AUsers(adb)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        used = _fetches(adb, monkeypatch)
        with _users_locked(postgres_url) as lock:
            reader = asyncio.create_task(users.get(pk))  # the idle connection, parked
            await _until_parked(lock)
            async with adb.engine.connect() as other:  # the overflow one, back to the pool
                await other.execute(text("SELECT 1"))
            lock.rollback()
        assert (await reader).name == "A"  # type: ignore[union-attr]

        assert len(used) == 1 and used[0].is_closed()  # closed, not dropped open
        assert adb.stats()["pool"]["checked_out"] == 0
    finally:
        await adb.close()


async def test_a_closed_aiosqlite_connection_in_the_pool_costs_a_direct_read_no_error(
    sqlite_adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite refuses a stopped connection with a ValueError its adapter reports as
    a disconnect: the direct read retries once on a fresh connection, as the greenlet
    path does, and the dead one leaves the pool."""
    users = AUsers(sqlite_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    async with sqlite_adb.engine.connect() as conn:  # the pool's one idle connection
        raw = await conn.get_raw_connection()
        stopped = raw.dbapi_connection.driver_connection  # type: ignore[union-attr]
        await stopped.stop()  # its thread ends; it goes back to the pool as if alive
        try:
            raw.dbapi_connection._handle_exception(ValueError("Connection closed"))  # type: ignore[union-attr]
        except sqlite_adb.engine.dialect.loaded_dbapi.OperationalError:
            pass
        except ValueError:  # SQLAlchemy 2.0.4: the greenlet path raises too
            pytest.skip("this SQLAlchemy's aiosqlite adapter reports no stopped connection")
    greenlet_path = _Counted(monkeypatch)

    assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]
    assert (await users.get(pk + 1)) is None

    assert greenlet_path.calls == 2  # the recovery and the retry, once
    assert sqlite_adb.stats()["pool"]["retries"] == 1


async def test_after_engine_dispose_direct_reads_use_the_new_pool_which_close_closes(
    pg_adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``engine.dispose()`` replaces the pool; a connection out at that moment goes back
    to the old one, which nothing closes: reads must not take it from there."""
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    used = _fetches(pg_adb, monkeypatch)
    old = pg_adb.engine.sync_engine.pool
    async with pg_adb.engine.connect() as conn:  # out while the pool is replaced
        await conn.execute(text("SELECT 1"))
        await pg_adb.engine.dispose()

    assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]
    assert (await users.get(pk + 1)) is None  # the new pool's idle connection: direct

    assert len(used) == 1 and pg_adb.stats()["pool"]["checked_in"] == 1
    await pg_adb.close()
    assert used[0].is_closed()
    await greenlet_spawn(old.dispose)  # SQLAlchemy's straggler, closed by hand


async def test_a_primary_key_read_after_another_client_altered_its_table_succeeds(
    pg_adb: dal.AsyncDatabase, postgres_url: str
) -> None:
    """asyncpg's prepared statement goes stale when a column's type changes; the
    adapter's cache kept it, and every later miss on that connection failed."""
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]  # prepared
    engine = create_engine(make_url(postgres_url), poolclass=NullPool)
    with engine.begin() as conn:  # a migration, by another program
        conn.execute(text("ALTER TABLE users ALTER COLUMN name TYPE varchar(300)"))
    engine.dispose()

    for _ in range(2):
        users.cache_clear()
        assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]


async def test_a_backend_killed_during_a_direct_read_costs_the_read_no_error(
    pg_adb: dal.AsyncDatabase, postgres_url: str
) -> None:
    """The server ends the connection while it holds the read (a table lock the test
    holds parks it): the read is retried once on a fresh connection."""
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    engine = create_engine(make_url(postgres_url), poolclass=NullPool)
    with engine.connect() as lock, engine.connect() as admin:
        lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        reader = asyncio.create_task(users.get(pk))
        waiting = text("SELECT pid FROM pg_locks WHERE NOT granted")
        while (pid := lock.scalar(waiting)) is None:
            await asyncio.sleep(0)
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        while lock.scalar(waiting) in (None, pid):  # the retry, parked in turn
            await asyncio.sleep(0)
        lock.rollback()
    engine.dispose()

    assert (await reader).name == "A"  # type: ignore[union-attr]
    assert pg_adb.stats()["pool"]["retries"] == 1


async def test_close_while_a_direct_read_is_parked_closes_its_connection_when_it_ends(
    pg_adb: dal.AsyncDatabase, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = AUsers(pg_adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    used = _fetches(pg_adb, monkeypatch)
    with _users_locked(postgres_url) as lock:
        reader = asyncio.create_task(users.get(pk))
        await _until_parked(lock)
        await pg_adb.close()
        lock.rollback()

    assert (await reader).name == "A"  # type: ignore[union-attr]
    assert used[0].is_closed()  # closed by its return, before the load ended
    assert pg_adb.stats()["pool"]["checked_out"] == 0


async def test_asyncmy_with_a_read_timeout_reads_and_commits_in_tasks(
    mysql_adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncmy waits for replies under ``wait_for`` once ``read_timeout`` is set, which
    from Python 3.12 binds to the current Task: run without one, in the caller's turn,
    its expiry would cancel the caller and leave the read waiting."""
    url = mysql_adb.settings.url.update_query_dict({"read_timeout": "30"})
    async with dal.AsyncDatabase(url.render_as_string(hide_password=False)) as db:
        users = AUsers(db)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        detached: list[object] = []

        class Noted(Detached[Any]):
            def start(self) -> Any:
                detached.append(self)
                return super().start()

        monkeypatch.setattr(tasks_module, "Detached", Noted)  # what finish() starts
        greenlet_path = _Counted(monkeypatch)

        assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]
        await users.update(pk, name="B")

        assert greenlet_path.calls == 2  # the read, then the write
        assert detached == []  # the COMMIT too, in a Task
        assert (await users.get(pk)).name == "B"  # type: ignore[union-attr]


async def test_a_leader_whose_greenlet_free_read_cannot_start_leaves_no_load_behind(
    adb: dal.AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader asks for the greenlet-free read before its load runs; if that raises
    (say, pool internals moved in a SQLAlchemy release), the key's flight must end
    with the error, not stay leased with nobody loading it."""
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()

    def moved(self: Any) -> bool:
        raise AttributeError("_queue")

    with monkeypatch.context() as patched:
        patched.setattr(type(adb._checkout), "ready", moved)
        with pytest.raises(AttributeError):
            await users.get(pk)

    found = await asyncio.wait_for(users.get(pk), 10)  # not waiting for a load forever
    assert found is not None and found.name == "A"


class _HeldClose:
    """A TCP proxy to the server that holds back the server's close: the client gets
    the server's last words (its FATAL) and its socket stays open until it sends
    anything more, as a close can reach a client later than the data before it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.closed_by_server = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.pumps: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream]
        gone = asyncio.Event()

        async def to_server() -> None:
            while (data := await reader.read(65536)) and not gone.is_set():
                upstream.write(data)
            writer.close()

        async def to_client() -> None:
            while data := await upstream_reader.read(65536):
                writer.write(data)
            upstream.close()
            gone.set()
            if self.closed_by_server.is_set():  # the one close held back is done
                writer.close()
            self.closed_by_server.set()

        self.pumps += [asyncio.create_task(to_server()), asyncio.create_task(to_client())]

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for pump in self.pumps:
            pump.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("read", ["get", "find"])
async def test_a_backend_the_server_ended_while_idle_costs_a_read_no_error(
    postgres_url: str, read: str
) -> None:
    """The server's FATAL reaches the idle connection before its close does (held
    here): asyncpg's next statement meets its own protocol error, which SQLAlchemy
    2.0.4's adapter does not translate (2.1 reports it as InternalClientError).
    ``get`` is the raw primary-key read, ``find`` a Core one."""
    tables.fresh(postgres_url)
    url = make_url(postgres_url)
    proxy = _HeldClose(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    adb = dal.AsyncDatabase(async_url(postgres_url).replace(f":{url.port}/", f":{port}/"))
    try:
        users = AUsers(adb)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        assert await users.get(pk) and await users.find(name="A")  # statements prepared
        users.cache_clear()
        async with adb.engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        engine.dispose()
        await proxy.closed_by_server.wait()
        for _ in range(20):  # asyncpg reads the FATAL; its socket stays open
            await asyncio.sleep(0)

        found = await users.get(pk) if read == "get" else (await users.find(name="A"))[0]
        assert found is not None and found.name == "A"
        assert adb.stats()["pool"]["retries"] == 1
    finally:
        await adb.close()
        await proxy.close()


async def test_a_connection_that_comes_back_goes_to_the_task_waiting_for_it_first(
    adb: dal.AsyncDatabase,
) -> None:
    """A full pool: a miss waits in it; the connection that comes back wakes it, and
    a greenlet-free read arriving before the waiter has run does not take it."""
    url = adb.settings.url.render_as_string(hide_password=False)
    async with dal.AsyncDatabase(url, pool_size=1, max_overflow=0) as db:
        users = AUsers(db)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        pool: Any = db._sync_engine.pool
        queue = pool._pool
        held = await greenlets.run_sync(pool.connect)  # the pool's only connection
        waiter = asyncio.create_task(users.get(pk))
        await turns_until(lambda: queue.waiting == 1)
        held.close()  # back in the pool in this turn: the waiter is woken, not yet run
        assert queue.qsize() == 1 and not db._checkout.ready()
        assert (await waiter).name == "A"  # type: ignore[union-attr]
        assert queue.waiting == 0 and db._checkout.ready()


@pytest.mark.parametrize("watcher", ["cursor event", "engine log"])
async def test_a_miss_is_seen_by_whoever_watches_statements(
    adb: dal.AsyncDatabase,
    watcher: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Watched, the miss leaves the greenlet-free path: its SELECT goes through Core,
    its cursor events and its statement log (promise 10)."""
    users = AUsers(adb)
    pk = (await users.add(email="a@example.com", name="A")).id
    users.cache_clear()
    sent = _fetches(adb, monkeypatch)
    seen: list[str] = []
    engine = adb._engine.sync_engine
    if watcher == "cursor event":
        event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: seen.append(sql))
    else:
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")

    assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]

    logged = [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
    selects = [s for s in (seen if watcher == "cursor event" else logged) if "FROM users" in s]
    assert len(selects) == 1 and sent == []


@pytest.mark.parametrize("setting", ["pool_pre_ping", "pool_recycle"])
async def test_a_pool_that_pings_or_recycles_hands_the_miss_its_connection_in_a_greenlet(
    adb: dal.AsyncDatabase, setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ping, or the reconnect of a connection older than ``pool_recycle``, awaits
    inside the checkout: such a miss is read on the greenlet path."""
    url = adb.settings.url.render_as_string(hide_password=False)
    extra: dict[str, Any] = {"pool_pre_ping": True} if setting == "pool_pre_ping" else {}
    async with dal.AsyncDatabase(url, pool_recycle=3600, **extra) as db:
        users = AUsers(db)
        pk = (await users.add(email="a@example.com", name="A")).id
        users.cache_clear()
        if setting == "pool_recycle":
            for record in db._sync_engine.pool._pool._queue._queue:  # idle, and as if old
                record.starttime -= 7200
        greenlet_path = _Counted(monkeypatch)

        assert (await users.get(pk)).name == "A"  # type: ignore[union-attr]

        assert greenlet_path.calls == 1 and db.stats()["pool"]["checked_out"] == 0
