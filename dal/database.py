"""Database: the engine and its pool, the cache, sessions, and the way reads and writes run."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import sessions
from .config import Settings, resolve_url
from .drivers import engine as engines
from .drivers import reads
from .drivers.pkread import PkRead
from .errors import ConfigError, DatabaseClosed, PoolTimeout, refused_value, translate
from .store import forks
from .store.cache import Store
from .tracking.invalidation import Tracker

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """A database behind a connection pool and an in-process cache that writes keep fresh."""

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
            url=resolve_url(url),
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
        driver = engines.driver_of(self.settings)
        self._tracker = Tracker(self._store, driver)
        self._pool_counters = engines.PoolCounters()
        self._engine = engines.create(self.settings, driver, self._tracker, self._pool_counters)
        # Reads run in the driver's read mode: one round trip, no BEGIN/ROLLBACK around them.
        self._read_mode = driver.read_mode
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        #: The innermost ``session()`` of the running context, whose writes reads must see.
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
        forks.watch(self)  # a forked child gets its own locks, cache and connections
        # dispose() leaves a fresh pool behind: after close() it must open nothing.
        event.listen(self._engine, "do_connect", self._refuse_when_closed)
        event.listen(self._engine, "handle_error", refused_value)
        sessions.track(self._sessions, self._engine, self._active)
        # After dal's own cursor-event listeners: they do not count as somebody watching.
        self._watch = reads.Watch(self._engine)
        #: The cross-process bus (invalidation="postgres"); it starts with caching paused.
        self._bus: Bus | None = None
        if self.settings.invalidation == "postgres":
            from .bus import Bus, connector

            self._bus = Bus(connector(self._engine), self._store, self.settings.redact)
            self._tracker.before_commit = self._bus.publish
            self._bus.start()
            # A Database dropped without close() must not leave its listener running.
            weakref.finalize(self, self._bus.stop)

    # -- public -------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine; its pool is the connection pool."""
        self._check_open()
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session: commits on exit, rolls back on error, invalidates after commit.

        Inside it, repository and cached-query reads of this context see the
        session's own uncommitted writes (they bypass the cache once it has written).
        A ``session()`` inside another one of the same context joins it: it yields the
        same Session inside a SAVEPOINT, which an error leaving the inner block rolls
        back; only the outermost commits.
        """
        self._check_open()
        outer = self._active.get()
        if outer is not None:
            with self._savepoint(outer):
                yield outer
            return
        session = self._sessions()
        token = self._active.set(session)
        with self._sessions_lock:
            self._sessions_open += 1
        try:
            with self._boundary():
                try:
                    yield session
                    session.commit()  # raises if a caught failure lost the transaction
                except BaseException:
                    session.rollback()
                    raise
        finally:
            with self._sessions_lock:
                self._sessions_open -= 1
            self._active.reset(token)
            session.close()

    def install_triggers(self, *models: Any) -> None:
        """PostgreSQL: make writes by any client to these tables invalidate every dal cache.

        Takes models, Tables or table names; idempotent. See ``dal.bus.triggers``.
        """
        self._change_triggers(models, install=True)

    def uninstall_triggers(self, *models: Any) -> None:
        """Drop the triggers ``install_triggers`` created on these tables."""
        self._change_triggers(models, install=False)

    def cache_clear(self) -> None:
        """Forget every cached row and result; loads in flight lose their lease."""
        self._store.clear()

    def stats(self) -> dict[str, Any]:
        """Cache counters and pool gauges, for dashboards and tests."""
        pool: Any = self._engine.pool
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

    def close(self) -> None:
        """Drop the cache and close every pooled connection; later calls raise."""
        if self._closed:
            return
        self._closed = True
        self._store.pause("closed")
        if self._bus is not None:
            self._bus.stop()
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        url = self.settings.url.render_as_string(hide_password=True)
        return f"<dal.Database {url!r} cache_size={self.settings.cache_size}{state}>"

    def _after_fork(self) -> None:
        """In a forked child (``dal.store.forks``): fresh locks, an empty cache, the pool's
        connections left to the parent, and the bus listening again if it was on."""
        self._sessions_lock = threading.Lock()
        self._tracker.relations._lock = threading.Lock()
        self._store.after_fork()
        if self._closed:
            return
        # SQLAlchemy's advice for a child: forget the pooled connections without
        # closing them, which would end the parent's sessions on the same sockets.
        self._engine.dispose(close=False)
        if self._bus is not None:
            self._bus._after_fork()

    # -- for repositories and cached queries ------------------------------------------

    def _change_triggers(self, models: tuple[Any, ...], *, install: bool) -> None:
        self._check_open()
        if self.settings.backend != "postgresql":
            raise ConfigError(f"triggers need a PostgreSQL database, not {self.settings.backend!r}")
        from .bus import triggers

        sender = "admin" if self._bus is None else self._bus.sender
        with self._boundary():
            covered = triggers.change(self._engine, models, install=install, sender=sender)
        if self._bus is not None:
            self._bus.covered = covered  # now, not when the listener hears of it

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosed(f"{self!r} is closed")

    @contextmanager
    def _boundary(self) -> Iterator[None]:
        """Translate SQLAlchemy errors to dal errors, once, where they leave dal."""
        try:
            yield
        except SQLAlchemyError as exc:
            cause = exc
        else:
            return
        error = translate(cause, self.settings.pool_limits, self.settings.redact)
        if isinstance(error, PoolTimeout):
            self._pool_counters.timeouts += 1
        raise error from cause

    def _read(self, query: Callable[[Connection], T]) -> T:
        """Run a Core read on an autocommit connection (see ``_retrying``)."""
        return self._retrying(lambda: self._read_once(query))

    def _read_raw(self, reader: PkRead, run: Callable[[Any], T]) -> T:
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
        with self._boundary():
            try:
                return attempt()
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            self._pool_counters.retries += 1
            return attempt()

    def _read_once(self, query: Callable[[Connection], T]) -> T:
        outer = self._reading.get()
        if outer is not None:
            return query(outer)
        with self._engine.connect() as conn, self._read_mode(conn.connection):
            token = self._reading.set(conn)
            try:
                return query(conn)
            finally:
                self._reading.reset(token)

    def _read_raw_once(self, reader: PkRead, run: Callable[[Any], T]) -> T:
        if self._watch.watched():  # somebody listens: the same SQL through Core's events
            return self._read_once(lambda conn: reads.evented(conn, run))
        outer = self._reading.get()
        if outer is not None:  # inside a load: read on its connection
            dbapi = outer.connection.dbapi_connection
            return reads.fetch(self._engine, None, dbapi, reader.sql, run)
        pooled = reads.raw_connection(self._engine)
        try:
            with self._read_mode(pooled):
                return reads.fetch(self._engine, pooled, pooled.dbapi_connection, reader.sql, run)
        finally:
            pooled.close()

    @contextmanager
    def _savepoint(self, session: Session) -> Iterator[None]:
        """A nested ``session()``: a SAVEPOINT in the outer one's transaction."""
        with self._boundary():
            connection = session.connection()
            dbapi = connection.connection.dbapi_connection
            if self.settings.backend == "sqlite" and not getattr(dbapi, "in_transaction", True):
                # pysqlite begins only before a write: a SAVEPOINT would open the
                # transaction itself, and its RELEASE would commit the outer's work.
                connection.exec_driver_sql("BEGIN")
            nested = session.begin_nested()
            session.connection()  # sends the SAVEPOINT now, before the block's statements
            state = sessions.state_of(session)
            depth = state.savepoints if state is not None else 0
            try:
                yield
                if state is not None:
                    state.check(depth)  # a caught failure inside: roll back, and say so
                nested.commit()
            except BaseException:
                if nested.is_active:
                    nested.rollback()
                raise

    def _refuse_when_closed(self, *args: Any) -> None:
        """``DialectEvents.do_connect``: no new connection once closed."""
        self._check_open()

    def _read_in_session(self, query: Callable[[Session], T]) -> T:
        """``_read`` for code that wants an ORM session."""

        def run(conn: Connection) -> T:
            with Session(bind=conn, expire_on_commit=False) as session:
                return query(session)

        return self._read(run)

    def _write(self, statement: Callable[[Connection], T]) -> T:
        """Run ``statement`` in its own transaction; invalidation follows its commit.

        Inside ``session()`` it joins the session's transaction instead, and commits
        or rolls back with it: a write of its own would wait on the session's row
        locks, which the session cannot release while it waits for the write.
        """
        self._check_open()
        session = self._active.get()
        with self._boundary():
            if session is not None:
                session.flush()  # the caller's earlier changes first, in program order
                return statement(session.connection())
            with self._engine.begin() as conn:
                return statement(conn)

    def _writing_session(self) -> Session | None:
        """The context's open ``session()`` if it has written anything, else None."""
        session = self._active.get()
        if session is None:
            return None
        state = sessions.state_of(session)
        if (state is not None and state.wrote) or session.new or session.dirty or session.deleted:
            return session
        return None
