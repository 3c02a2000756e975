"""AsyncDatabase: an ``AsyncEngine`` and ``AsyncSession``s over the core ``Database`` uses.

Every read and write runs the core's sync path in one greenlet on
``AsyncEngine.sync_engine`` (``dal.aio.greenlets``): the driver's awaits happen on the
event loop, nothing blocks it, and the tracking seam, the retry and the error
boundary are the sync ones. An AsyncDatabase belongs to the first event loop that
uses it (its pooled connections do); another loop gets a ConfigError.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from threading import get_ident
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only

from ..core import Core
from ..drivers import Driver, adapters, reads
from ..drivers import engine as engines
from ..drivers.pkread import PkRead, PkRun
from ..errors import ConfigError
from . import direct
from .greenlets import run_sync
from .tasks import finish

if TYPE_CHECKING:  # at run time imported where used: it needs greenlet (the async extra)
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = ["AsyncDatabase"]

T = TypeVar("T")

#: The key, in a ``session()``'s sync Session ``info``, of the AsyncSession around it.
_ASYNC = "dal_async_session"


class AsyncDatabase(Core):
    """``Database`` for asyncio: the same settings, cache and guarantees, awaited."""

    is_async = True
    _engine: AsyncEngine

    def _create_engine(self, driver: Driver) -> Engine:
        self._engine = engines.create_async(
            self.settings, driver, self._tracker, self._pool_counters
        )
        #: Checkouts without awaiting, for the greenlet-free read (``_direct``).
        self._checkout = direct.Checkout(self._engine.sync_engine, driver.checkout_quiet)
        #: The event loop this database's connections belong to: the first that used it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        #: The thread that loop runs in, and its ``is_running``: see ``_check_loop``.
        self._loop_thread: int | None = None
        self._loop_running: Callable[[], bool] = lambda: False
        #: The driver's own primary-key fetch, awaited without a greenlet (``_read_raw``).
        self._fetch: direct.Fetch | None = getattr(driver.raw_cursor, "fetch", None)
        return self._engine.sync_engine

    # -- public -------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy ``AsyncEngine``; its pool is the connection pool."""
        self._check_loop()
        self._check_open()
        return self._engine

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ``AsyncSession``: commits on exit, rolls back on error, invalidates after
        the commit, and joins an outer ``session()`` of the same task (a SAVEPOINT)
        as ``Database.session`` does. Reads of this task inside it see its writes."""
        self._check_loop()
        self._check_open()
        outer = self._open_session()
        if outer is not None:
            async with self._savepoint(outer):
                yield outer.info[_ASYNC]
            return
        from sqlalchemy.ext.asyncio import AsyncSession

        session = AsyncSession(
            self._engine, expire_on_commit=False, sync_session_class=self._sessions.class_
        )
        session.sync_session.info[_ASYNC] = session
        token = self._session_opened(session.sync_session)
        try:
            with self._boundary():
                try:
                    yield session
                    with self._boundary(os_errors=True):
                        await session.commit()  # raises if a caught failure lost it
                except BaseException:
                    # To its end even if this task is cancelled meanwhile: a rollback
                    # cut short leaves the connection out of the pool.
                    await finish(session.rollback())
                    raise
        finally:
            self._session_ended(token)
            await finish(session.close())

    async def close(self) -> None:
        """Drop the cache and close every pooled connection; later calls raise."""
        self._check_loop()
        if self._closing():
            await self._engine.dispose()

    async def __aenter__(self) -> AsyncDatabase:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- for the async repositories and cached queries ----------------------------------

    def _check_loop(self) -> None:
        """Raise ConfigError on any event loop but this database's (cheap: hit paths).

        One loop at most runs in a thread: in the loop's own thread, while it runs,
        the caller is on it. That is two cheap calls; asking for the running loop
        costs several times both, so only other cases do (``_bind_loop``).
        """
        if get_ident() != self._loop_thread or not self._loop_running():
            self._bind_loop()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop: this database's, once ``_check_loop`` passed, known
        without asking asyncio (on Python 3.11 each ask is a ``getpid`` system call)."""
        loop = self._loop
        if loop is not None and get_ident() == self._loop_thread and self._loop_running():
            return loop
        return asyncio.get_running_loop()

    def _bind_loop(self) -> None:
        loop = asyncio._get_running_loop()
        if loop is None:  # called outside any loop: nothing of the pool is touched
            return
        with self._loop_lock:
            if self._loop is None:
                self._loop = loop
                self._loop_thread, self._loop_running = get_ident(), loop.is_running
            first = self._loop
        if first is not loop:
            raise ConfigError(
                f"{self!r} was first used on event loop {first!r} and its pooled "
                f"connections belong to it; it cannot be used on {loop!r}. Make one "
                "AsyncDatabase per event loop (e.g. inside the function asyncio.run runs)"
            )

    async def _read(self, query: Callable[[Connection], T]) -> T:
        """``Database._read``: a sync Core read (``query(connection)``) on a pooled
        connection in read mode, outside any transaction, retried once if the
        connection was dead, errors translated."""
        self._check_loop()
        return await run_sync(self._read_sync, query)

    async def _read_raw(self, reader: PkRead, run: Callable[[Any], T]) -> T:
        """``Database._read_raw``: ``run(cursor)`` on a pooled DBAPI connection (Core's
        events when somebody listens)."""
        self._check_loop()
        return await run_sync(self._read_raw_sync, reader, run)

    def _direct(self, run: PkRun[T]) -> Coroutine[Any, Any, T | None] | None:
        """``run``'s read awaited without a greenlet (``dal.aio.direct``), or None when
        it cannot be had at once: somebody listens, the read is inside another, or
        the pool would have to await. The coroutine checks out its connection in its
        first step, which must run in the same turn."""
        fetch = self._fetch
        if fetch is None or self._closed or self._watch.watched() or self._outer_read():
            return None
        if not self._checkout.ready():
            return None
        return self._read_direct(fetch, run)

    async def _read_direct(self, fetch: direct.Fetch, run: PkRun[T]) -> T | None:
        """``run``'s read. Only the driver's fetch is awaited here, as this may run
        without a Task (``loads``); anything else (a failure's handling, which tells
        the pool and may retry, connect or wait under ``asyncio.timeout``) runs in one."""
        loop = self._running_loop()  # no getpid: see there
        # In the turn ``_direct`` found the pool ready: the loads start it at once.
        pooled = self._checkout.now()
        owed = True  # whether this read still returns the connection (else _recover does)
        fetching = False  # whether an error is the driver's, which its adapter reports
        try:
            parameters = run.parameters()
            with self._read_mode(pooled):
                fetching = True
                rows, description = await fetch(pooled.dbapi_connection, run.reader.sql, parameters)
                fetching = False
            found = run.answer(rows, description)
        except Exception as error:
            if not fetching and not isinstance(error, ValueError):
                raise  # not the database's (nor a refused value): as the sync read
            owed = False
            return await loop.create_task(self._recover(pooled, run, error, fetching))
        finally:
            if owed:
                if direct.returns_now(pooled._pool):
                    pooled.close()
                else:  # a listener on the return (close() adds one) may await
                    await loop.create_task(run_sync(pooled.close))
        return found

    async def _recover(
        self, pooled: PoolProxiedConnection, run: PkRun[Any], error: Exception, fetching: bool
    ) -> Any:
        """A direct read's failure, as ``_retrying`` meets it: translated, the pool told
        of a disconnect, and a read on a fresh connection once if it was one."""
        with self._boundary(os_errors=True):
            try:
                await run_sync(self._direct_failed, pooled, run.reader.sql, error, fetching)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            self._pool_counters.retries += 1
            return await run_sync(self._read_raw_once, run.reader, run)

    def _direct_failed(
        self, pooled: PoolProxiedConnection, sql: str, error: Exception, fetching: bool
    ) -> None:
        """In a greenlet: ``error`` raised as ``reads.fetch`` raises it, the connection
        returned (or, dead, discarded: closing it may await). An error of the fetch
        is reported by the adapter first, as its cursor reports it: aiosqlite's
        stopped connection is a ValueError that the adapter makes a disconnect."""
        engine, adapted = self._sync_engine, cast(Any, pooled.dbapi_connection)
        try:
            if fetching:
                try:
                    adapters.raise_reported(adapted, error)
                except engine.dialect.loaded_dbapi.Error as translated:
                    error = translated
            raise reads.failed(engine, pooled, adapted, None, sql, error) from error
        finally:
            pooled.close()

    async def _write(self, statement: Callable[[Connection], T]) -> T:
        """``Database._write``: ``statement(connection)`` in its own transaction, or in
        the task's open ``session()``; invalidation follows the real commit."""
        self._check_loop()
        return await run_sync(self._write_sync, statement)

    async def _read_in_session(self, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``_read`` for code that wants an ``AsyncSession`` (an async cached query)."""
        self._check_loop()

        def run(conn: Connection) -> T:
            return await_only(self._on_session(conn, query))

        return await run_sync(self._read_sync, run)

    async def _on_session(
        self, conn: Connection, query: Callable[[AsyncSession], Awaitable[T]]
    ) -> T:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

        session = AsyncSession(bind=AsyncConnection(self._engine, conn), expire_on_commit=False)
        # What ``query`` reads is cached for every caller: no read inside it may go
        # through the session() of the task that started it (a load's Task copied its
        # context), whose writes, made meanwhile by a sibling task, are uncommitted.
        token = self._active.set(None)
        try:
            return await query(session)
        finally:
            self._active.reset(token)
            await finish(session.close())

    def _writing_session(self) -> AsyncSession | None:
        """The task's open ``session()`` if it has written anything, else None."""
        session = self._writing_sync_session()
        return None if session is None else session.info[_ASYNC]

    @asynccontextmanager
    async def _savepoint(self, outer: Session) -> AsyncIterator[None]:
        """A nested ``session()``: a SAVEPOINT in the outer one's transaction."""
        session: AsyncSession = outer.info[_ASYNC]
        with self._boundary(os_errors=True):
            nested, depth = await session.run_sync(self._open_savepoint)
            try:
                yield
            except BaseException:
                await finish(session.run_sync(self._close_savepoint, nested, depth, True))
                raise
            await session.run_sync(self._close_savepoint, nested, depth, False)
