"""What ``Database`` and ``AsyncDatabase`` share: settings, the store, write tracking,
the bus, stats, the error boundary, and the read and write paths.

The paths are sync code on a sync ``Engine``. ``Database`` runs them as they are;
``AsyncDatabase`` runs the same code on its ``AsyncEngine.sync_engine`` inside one
greenlet per call (SQLAlchemy's own way to drive an asyncio driver from sync code),
so retries, read modes, the raw primary-key read and the error boundary are one
implementation for both.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from . import sessions
from .config import Settings, resolve_url
from .drivers import Driver, reads
from .drivers import engine as engines
from .drivers.pkread import PkRead
from .errors import DalError, DatabaseClosed, DatabaseError, PoolTimeout, refused_value, translate
from .store.cache import Store
from .tracking.invalidation import Tracker

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["Core"]

T = TypeVar("T")

#: Set in a ``session()``'s Session ``info`` once its block has ended.
_ENDED = "dal.session_ended"


class Core:
    """The engine-independent half of a Database; subclasses make the engine."""

    #: Whether the URL names an asyncio driver (``AsyncDatabase``).
    is_async = False

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        pool_size: int = 5,
        max_overflow: int | None = 10,
        pool_timeout: float | None = 30.0,
        pool_recycle: float | None = 1800,
        pool_pre_ping: bool = False,
        cache_size: int = 10_000,
        cache_bytes: int | None = None,
        ttl: float | None = 300.0,
        invalidation: str | None = None,
    ) -> None:
        self.settings = Settings(
            url=resolve_url(url, is_async=self.is_async),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=pool_pre_ping,
            cache_size=cache_size,
            cache_bytes=cache_bytes,
            ttl=ttl,
            invalidation=invalidation,
        )
        self._store = Store(cache_size, cache_bytes)
        driver = self._driver = engines.driver_of(self.settings)
        self._tracker = Tracker(self._store, driver)
        self._pool_counters = engines.PoolCounters()
        #: The sync engine every path runs on (``AsyncEngine.sync_engine`` for async).
        self._sync_engine: Engine = self._create_engine(driver)
        # Reads run in the driver's read mode: one round trip, no BEGIN/ROLLBACK around them.
        self._read_mode = driver.read_mode
        self._raw_cursor = driver.raw_cursor
        self._sessions = sessionmaker(self._sync_engine, expire_on_commit=False)
        #: The innermost ``session()`` of the running context, whose writes reads must
        #: see (for ``AsyncDatabase``, its AsyncSession's ``sync_session``).
        self._active: ContextVar[Session | None] = ContextVar(
            f"dal_session_{id(self)}", default=None
        )
        #: The connection a load of this context is reading on: a miss inside a load
        #: (a cached function calling a repository) reads there, not on a second one.
        self._reading: ContextVar[Connection | None] = ContextVar(
            f"dal_reading_{id(self)}", default=None
        )
        #: How many ``session()`` blocks are open, in any thread or task. Changed under
        #: ``_sessions_lock``, read by hit paths without it: 0 means no context has a
        #: session, so they skip the ContextVar lookup. A context's own session was
        #: counted before its body runs (program order, or the hand-off that copied the
        #: context to another thread), so a stale read can only miss sessions of other
        #: contexts, which do not concern the reader.
        self._sessions_open = 0
        self._sessions_lock = threading.Lock()
        self._parts: dict[Any, Any] = {}  # per-class state of repositories and queries
        self._closed = False
        engine = self._sync_engine
        # dispose() leaves a fresh pool behind: after close() it must open nothing.
        event.listen(engine, "do_connect", self._refuse_when_closed)
        event.listen(engine, "handle_error", refused_value)
        sessions.track(self._sessions, engine, self._active)
        # After dal's own cursor-event listeners: they do not count as somebody watching.
        self._watch = reads.Watch(engine)
        #: The cross-process bus (invalidation="postgres"); it starts with caching paused.
        self._bus: Bus | None = None
        if self.settings.invalidation == "postgres":
            from .bus import Bus, connector, senders

            self._bus = Bus(
                connector(self.settings.url),
                self._store,
                self.settings.redact,
                notify=senders.for_driver(driver.driver),
            )
            self._tracker.before_commit = self._bus.publish
            self._bus.start()
            # A Database dropped without close() must not leave its listener running.
            weakref.finalize(self, self._bus.stop)

    def _create_engine(self, driver: Driver) -> Engine:
        """Make the subclass's engine; returns the sync engine the paths run on."""
        raise NotImplementedError

    # -- shared public ----------------------------------------------------------------

    def cache_clear(self) -> None:
        """Forget every cached row and result; loads in flight lose their lease."""
        self._store.clear()

    def stats(self) -> dict[str, Any]:
        """Cache counters and pool gauges, for dashboards and tests."""
        pool: Any = self._sync_engine.pool
        counters = self._pool_counters
        stats: dict[str, Any] = {
            "cache": self._store.stats(),
            "pool": {
                "size": pool.size(),
                "checked_out": pool.checkedout(),
                "checked_in": pool.checkedin(),
                "overflow": max(0, pool.overflow()),
                "max_overflow": self.settings.max_overflow,
                "connects": counters.connects,
                "disconnects": counters.disconnects,
                "retries": counters.retries,
                "timeouts": counters.timeouts,
            },
        }
        if self._bus is not None:
            stats["bus"] = self._bus.stats()
        return stats

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        url = self.settings.url.render_as_string(hide_password=True)
        name = type(self).__name__
        return f"<dal.{name} {url!r} cache_size={self.settings.cache_size}{state}>"

    def _closing(self) -> bool:
        """Start ``close()``: False if already closed, else pause caching and the bus."""
        if self._closed:
            return False
        self._closed = True
        self._store.pause("closed")
        if self._bus is not None:
            self._bus.stop()
        # Connections out at close() (a session, a load in flight) come back to the
        # pool being disposed, which would keep them open until garbage collection:
        # never closed, for an asyncio driver (its close must be awaited).
        event.listen(self._sync_engine.pool, "checkin", _close_returned)
        return True

    # -- the boundary ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosed(f"{self!r} is closed")

    def _refuse_when_closed(self, *args: Any) -> None:
        """``DialectEvents.do_connect``: no new connection once closed."""
        self._check_open()

    @contextmanager
    def _boundary(self, os_errors: bool = False) -> Iterator[None]:
        """Translate SQLAlchemy errors to dal errors, once, where they leave dal.

        ``os_errors``: also a socket error an asyncio driver let out raw (asyncpg
        raises them as they are); only around dal's own calls, never a caller's code.
        """
        try:
            yield
        except SQLAlchemyError as exc:
            cause: BaseException = exc
            error: DalError = translate(exc, self.settings.pool_limits, self.settings.redact)
        except OSError as exc:
            if not os_errors:
                raise
            cause = exc
            error = DatabaseError(self.settings.redact(f"{type(exc).__name__}: {exc}"))
        else:
            return
        if isinstance(error, PoolTimeout):
            self._pool_counters.timeouts += 1
        raise error from cause

    # -- sessions ---------------------------------------------------------------------

    def _session_opened(self, session: Session) -> Token[Session | None]:
        """Count an outermost ``session()`` and make it the context's active one."""
        token = self._active.set(session)
        with self._sessions_lock:
            self._sessions_open += 1
        return token

    def _session_ended(self, token: Token[Session | None]) -> None:
        session = self._active.get()
        if session is not None:
            # Tasks (or copied contexts) started inside the block still name it.
            session.info[_ENDED] = True
        with self._sessions_lock:
            self._sessions_open -= 1
        self._active.reset(token)

    def _open_session(self) -> Session | None:
        """The context's ``session()`` while its block runs, else None.

        A task started inside the block copies the context and may run on after the
        block ended: its writes then commit on their own, not in a new transaction
        of the finished session that nobody would commit (and whose connection
        nobody would return).
        """
        session = self._active.get()
        if session is None or session.info.get(_ENDED):
            return None
        return session

    def _open_savepoint(self, session: Session) -> tuple[SessionTransaction, int]:
        """A nested ``session()``: a SAVEPOINT in the outer one's transaction, sent now."""
        connection = session.connection()
        dbapi = connection.connection.dbapi_connection
        if self.settings.backend == "sqlite" and not self._driver.in_transaction(dbapi):
            # SQLite begins only before a write: a SAVEPOINT would open the
            # transaction itself, and its RELEASE would commit the outer's work.
            connection.exec_driver_sql("BEGIN")
        nested = session.begin_nested()
        session.connection()  # sends the SAVEPOINT now, before the block's statements
        state = sessions.state_of(session)
        return nested, state.savepoints if state is not None else 0

    @staticmethod
    def _close_savepoint(
        session: Session, nested: SessionTransaction, depth: int, failed: bool
    ) -> None:
        """Release the savepoint, or roll it back if the block failed (or a caught
        failure inside it lost its work, which then raises)."""
        try:
            if not failed:
                state = sessions.state_of(session)
                if state is not None:
                    state.check(depth)
                nested.commit()
                return
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        if nested.is_active:
            nested.rollback()

    def _writing_sync_session(self) -> Session | None:
        """The context's open ``session()`` if it has written anything, else None."""
        session = self._open_session()
        if session is None:
            return None
        return session if sessions.wrote(session) else None

    # -- reads and writes (sync code; AsyncDatabase runs it in a greenlet) -------------

    def _read_sync(self, query: Callable[[Connection], T]) -> T:
        """Run a Core read on an autocommit connection (see ``_retrying``)."""
        return self._retrying(lambda: self._read_once(query))

    def _read_raw_sync(self, reader: PkRead, run: Callable[[Any], T]) -> T:
        """Run ``run(cursor)``, a read by ``reader``, on a pooled DBAPI connection.

        See ``_retrying``; ``reader.sql`` names the read in errors.
        """
        return self._retrying(lambda: self._read_raw_once(reader, run))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run a read; once more if its pooled connection turned out to be dead.

        Pre-pinging every checkout would cost a round trip on every miss; a read is
        safe to repeat, so a dead pooled connection (a database restart) costs one
        retry instead of an error.
        """
        self._check_open()
        with self._boundary(os_errors=self.is_async):
            try:
                return attempt()
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            self._pool_counters.retries += 1
            return attempt()

    def _outer_read(self) -> Connection | None:
        """The connection a load of this context reads on, while that read lasts.

        A task started inside a load copies its context and may outlive the load;
        by then that connection is back in the pool (closed here), maybe serving
        another caller's transaction: such a task reads on a connection of its own.
        """
        outer = self._reading.get()
        return None if outer is None or outer.closed else outer

    def _read_once(self, query: Callable[[Connection], T]) -> T:
        outer = self._outer_read()
        if outer is not None:
            return query(outer)
        with self._sync_engine.connect() as conn, self._read_mode(conn.connection):
            token = self._reading.set(conn)
            try:
                return query(conn)
            finally:
                self._reading.reset(token)

    def _read_raw_once(self, reader: PkRead, run: Callable[[Any], T]) -> T:
        engine = self._sync_engine
        if self._watch.watched():  # somebody listens: the same SQL through Core's events
            return self._read_once(lambda conn: reads.evented(conn, run))
        outer = self._outer_read()
        if outer is not None:  # inside a load: read on its connection
            dbapi = outer.connection.dbapi_connection
            return reads.fetch(engine, None, dbapi, reader.sql, run, self._raw_cursor)
        pooled = reads.raw_connection(engine)
        try:
            with self._read_mode(pooled):
                dbapi = pooled.dbapi_connection
                return reads.fetch(engine, pooled, dbapi, reader.sql, run, self._raw_cursor)
        finally:
            pooled.close()

    def _write_sync(self, statement: Callable[[Connection], T]) -> T:
        """Run ``statement`` in its own transaction; invalidation follows its commit.

        Inside ``session()`` it joins the session's transaction instead, and commits
        or rolls back with it: a write of its own would wait on the session's row
        locks, which the session cannot release while it waits for the write.
        """
        self._check_open()
        session = self._open_session()
        with self._boundary(os_errors=self.is_async):
            if session is not None:
                session.flush()  # the caller's earlier changes first, in program order
                return statement(session.connection())
            with self._sync_engine.begin() as conn:
                return statement(conn)


def _close_returned(dbapi_connection: Any, record: Any) -> None:
    """``PoolEvents.checkin`` of a closed database's pool: close what comes back."""
    if dbapi_connection is not None:
        record.invalidate()
