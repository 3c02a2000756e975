"""AsyncDatabase: sessions, writes and reads on asyncio drivers, each backend in turn.

Promises 1 and 3 through every kind of write an async caller makes (an AsyncSession
flush, Core on ``db.engine``, text SQL, ``_write``); the read paths the async front
ends use; ``stats()`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import dal
from dal.drivers.pkread import PkRead
from tests.aiohelp import Names
from tests.models import User


async def _seed(db: dal.AsyncDatabase, name: str = "old") -> int:
    async with db.session() as s:
        user = User(email="a@example.com", name=name)
        s.add(user)
    return user.id


async def test_a_session_commits_on_exit_and_invalidates_after_the_commit(
    adb: dal.AsyncDatabase,
) -> None:
    pk = await _seed(adb)
    names = Names(adb)
    assert await names.get(pk) == "old"
    async with adb.session() as s:
        user = await s.get(User, pk)
        assert user is not None
        user.name = "new"
        await s.flush()
        assert names.cached(pk)  # flushed, not committed: the cache keeps the committed row
    assert not names.cached(pk)
    assert await names.get(pk) == "new"


@pytest.mark.parametrize(
    "sql",
    [
        update(User).values(name="new"),
        text("UPDATE users SET name = 'new'"),
    ],
    ids=["core", "text"],
)
async def test_statements_on_the_engine_invalidate_after_their_commit(
    adb: dal.AsyncDatabase, sql: object
) -> None:
    pk = await _seed(adb)
    names = Names(adb)
    assert await names.get(pk) == "old"
    async with adb.engine.begin() as conn:
        await conn.execute(sql)  # type: ignore[call-overload]
        assert names.cached(pk)
    assert not names.cached(pk)
    assert await names.get(pk) == "new"


async def test_an_autocommit_statement_invalidates_at_once(adb: dal.AsyncDatabase) -> None:
    pk = await _seed(adb)
    names = Names(adb)
    assert await names.get(pk) == "old"
    async with adb.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text("UPDATE users SET name = 'new'"))
        assert not names.cached(pk)  # committed by the statement itself
    assert await names.get(pk) == "new"


async def test_a_rolled_back_session_leaves_the_cache_as_it_was(adb: dal.AsyncDatabase) -> None:
    pk = await _seed(adb)
    names = Names(adb)
    assert await names.get(pk) == "old"
    invalidations = adb.stats()["cache"]["invalidations"]
    with pytest.raises(RuntimeError, match="boom"):
        async with adb.session() as s:
            await s.execute(update(User).values(name="uncommitted"))
            assert adb._writing_session() is s  # reads in it must go through it
            raise RuntimeError("boom")
    assert adb._writing_session() is None
    assert names.cached(pk) and await names.get(pk) == "old"
    assert await names.fetch(pk) == "old"
    assert adb.stats()["cache"]["invalidations"] == invalidations


async def test_write_runs_alone_or_joins_the_tasks_session(adb: dal.AsyncDatabase) -> None:
    pk = await _seed(adb)
    names = Names(adb)

    def rename(name: str) -> object:
        return lambda conn: conn.execute(update(User).values(name=name)).rowcount

    assert await names.get(pk) == "old"
    assert await adb._write(rename("alone")) == 1
    assert not names.cached(pk)
    assert await names.get(pk) == "alone"

    with pytest.raises(RuntimeError):
        async with adb.session() as s:
            s.add(User(email="b@example.com", name="b"))
            await adb._write(rename("joined"))  # flushes the add first, in program order
            assert await s.scalar(select(User.name).where(User.id == pk)) == "joined"
            assert names.cached(pk)
            raise RuntimeError
    assert await names.get(pk) == "alone"  # rolled back with the session
    assert await adb._read(lambda conn: conn.execute(select(User.id)).all()) == [(pk,)]


async def test_a_nested_session_is_a_savepoint(adb: dal.AsyncDatabase) -> None:
    pk = await _seed(adb)
    names = Names(adb)
    assert await names.get(pk) == "old"
    async with adb.session() as outer:
        outer.add(User(email="b@example.com", name="kept"))
        with pytest.raises(RuntimeError):
            async with adb.session() as inner:
                assert inner is outer
                await inner.execute(update(User).where(User.id == pk).values(name="undone"))
                raise RuntimeError
        assert await outer.scalar(select(User.name).where(User.id == pk)) == "old"
    names_now = await adb._read(lambda c: c.execute(select(User.name).order_by(User.id)).all())
    assert names_now == [("old",), ("kept",)]


async def test_read_in_session_gives_an_async_session_outside_any_transaction(
    adb: dal.AsyncDatabase,
) -> None:
    pk = await _seed(adb)

    async def query(session: AsyncSession) -> str | None:
        # A nested read of this load shares its connection.
        inner = await adb._read(lambda conn: conn.execute(select(User.name)).scalar())
        outer = await session.scalar(select(User.name).where(User.id == pk))
        assert inner == outer
        return outer

    assert await adb._read_in_session(query) == "old"
    assert adb.stats()["pool"]["connects"] == 1


async def test_a_raw_primary_key_read_returns_what_core_returns(adb: dal.AsyncDatabase) -> None:
    pk = await _seed(adb)
    columns = list(User.__table__.columns)
    reader = PkRead(adb.engine.dialect, columns, [User.__table__.c.id])
    row = await adb._read_raw(reader, lambda cursor: reader.run(cursor, (pk,)))
    assert row is not None and row[:3] == (pk, "a@example.com", "old")
    assert await adb._read_raw(reader, lambda cursor: reader.run(cursor, (pk + 1,))) is None

    many = await adb._read_raw(reader, lambda cursor: reader.run_many(cursor, [pk, pk + 1]))
    assert many == [row]

    seen: list[str] = []
    # Somebody listens: the same read goes through Core's events.
    event.listen(adb.engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    assert await adb._read_raw(reader, lambda cursor: reader.run(cursor, (pk,))) == row
    assert seen == [reader.sql]


async def test_stats_have_the_shape_of_database_stats(
    adb: dal.AsyncDatabase, sqlite_url: str
) -> None:
    await _seed(adb)
    with dal.Database(sqlite_url) as other:
        sync = other.stats()
    stats = adb.stats()
    assert set(stats) == set(sync)
    assert set(stats["cache"]) == set(sync["cache"])
    assert set(stats["pool"]) == set(sync["pool"])
    assert stats["pool"]["connects"] == 1 and stats["pool"]["checked_out"] == 0


async def test_a_closed_database_refuses_every_call(adb: dal.AsyncDatabase) -> None:
    await _seed(adb)
    await adb.close()
    assert "closed" in repr(adb)
    with pytest.raises(dal.DatabaseClosed):
        await adb._read(lambda conn: conn.execute(select(User.id)).all())
    with pytest.raises(dal.DatabaseClosed):
        await adb._write(lambda conn: conn.execute(insert(User).values(email="x", name="x")))
    with pytest.raises(dal.DatabaseClosed):
        async with adb.session():
            pass
    with pytest.raises(dal.DatabaseClosed):
        adb.engine  # noqa: B018
    await adb.close()  # again: nothing to do


async def test_it_is_an_async_context_manager(adb_url: str) -> None:
    async with dal.AsyncDatabase(adb_url) as db:
        assert await db._read(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1
    assert "closed" in repr(db)


def test_a_second_event_loop_gets_a_config_error(adb_url: str) -> None:
    db = dal.AsyncDatabase(adb_url)

    def one(conn: Connection) -> object:
        return conn.execute(text("SELECT 1")).scalar()

    async def read() -> object:
        return await db._read(one)

    async def engine() -> object:
        return db.engine

    async def session() -> None:
        async with db.session():
            pass

    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(read()) == 1
        for call in (read, engine, session, db.close):
            with pytest.raises(dal.ConfigError, match="one AsyncDatabase per event loop"):
                asyncio.run(call())
        assert first.run_until_complete(read()) == 1  # still fine on its own loop
    finally:
        first.run_until_complete(db.close())
        first.close()


async def test_database_errors_are_dal_errors(adb: dal.AsyncDatabase) -> None:
    await _seed(adb)
    with pytest.raises(dal.IntegrityError) as caught:
        async with adb.session() as s:
            s.add(User(email="a@example.com", name="duplicate"))
    assert caught.value.__cause__ is not None
    with pytest.raises(dal.DatabaseError):
        await adb._read(lambda conn: conn.execute(text("SELECT nothing FROM nowhere")).all())


async def test_reads_run_outside_any_transaction(adb: dal.AsyncDatabase) -> None:
    # The driver's read mode: no BEGIN before a read (a snapshot older than the read,
    # and a ROLLBACK round trip on its return), whichever path it takes.
    pk = await _seed(adb)
    probe = adb._driver.in_transaction

    def after_a_select(conn: Connection) -> bool:
        conn.execute(select(User.name).where(User.id == pk)).all()
        return probe(conn.connection.dbapi_connection)

    assert await adb._read(after_a_select) is False

    async def in_session(session: AsyncSession) -> bool:
        await session.scalar(select(User.name))
        conn = await session.connection()
        return probe((await conn.get_raw_connection()).dbapi_connection)

    assert await adb._read_in_session(in_session) is False
    async with adb.session() as s:  # a session is a transaction, as it should be
        await s.execute(update(User).values(name="new"))
        assert await in_session(s) is True


async def test_a_raw_read_that_fails_is_a_database_error(adb: dal.AsyncDatabase) -> None:
    reader = PkRead(adb.engine.dialect, list(User.__table__.columns), [User.__table__.c.id])
    async with adb.engine.begin() as conn:
        await conn.execute(text("DROP TABLE orders"))
        await conn.execute(text("DROP TABLE users"))
    with pytest.raises(dal.DatabaseError) as caught:
        await adb._read_raw(reader, lambda cursor: reader.run(cursor, (1,)))
    assert isinstance(caught.value.__cause__, sqlalchemy.exc.DBAPIError)


async def test_a_loop_in_another_thread_gets_a_config_error(adb: dal.AsyncDatabase) -> None:
    def one(conn: Connection) -> object:
        return conn.execute(text("SELECT 1")).scalar()

    assert await adb._read(one) == 1  # this test's loop, running meanwhile
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            asyncio.run(adb._read(one))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert len(errors) == 1 and isinstance(errors[0], dal.ConfigError), errors
    assert await adb._read(one) == 1


def test_without_the_async_extra_dal_imports_and_async_database_says_what_to_install() -> None:
    # greenlet (and the asyncio drivers) come with the async extra only.
    script = (
        "import sys; sys.modules['greenlet'] = None\n"
        "import dal\n"
        "try:\n"
        "    dal.AsyncDatabase()\n"
        "except dal.ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "greenlet" in done.stdout and "sqlalchemy-dal[async]" in done.stdout
