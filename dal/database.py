"""Database: the sync engine and its pool, sessions, triggers; the rest is ``dal.core``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from .core import Core
from .drivers import Driver
from .drivers import engine as engines
from .errors import ConfigError
from .store import forks

__all__ = ["Database"]

T = TypeVar("T")


class Database(Core):
    """A database behind a connection pool and an in-process cache that writes keep fresh."""

    _engine: Engine

    def _create_engine(self, driver: Driver) -> Engine:
        self._engine = engines.create(self.settings, driver, self._tracker, self._pool_counters)
        forks.watch(self)  # a forked child gets its own locks, cache and connections
        return self._engine

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
        outer = self._open_session()
        if outer is not None:
            with self._savepoint(outer):
                yield outer
            return
        session = self._sessions()
        token = self._session_opened(session)
        try:
            with self._boundary():
                try:
                    yield session
                    session.commit()  # raises if a caught failure lost the transaction
                except BaseException:
                    session.rollback()
                    raise
        finally:
            self._session_ended(token)
            session.close()

    def install_triggers(self, *models: Any) -> None:
        """PostgreSQL: make writes by any client to these tables invalidate every dal cache.

        Takes models, Tables or table names; idempotent. See ``dal.bus.triggers``.
        """
        self._change_triggers(models, install=True)

    def uninstall_triggers(self, *models: Any) -> None:
        """Drop the triggers ``install_triggers`` created on these tables."""
        self._change_triggers(models, install=False)

    def close(self) -> None:
        """Drop the cache and close every pooled connection; later calls raise."""
        if self._closing():
            self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    _read = Core._read_sync
    _read_raw = Core._read_raw_sync
    _write = Core._write_sync
    _writing_session = Core._writing_sync_session

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

    @contextmanager
    def _savepoint(self, session: Session) -> Iterator[None]:
        """A nested ``session()``: a SAVEPOINT in the outer one's transaction."""
        with self._boundary():
            nested, depth = self._open_savepoint(session)
            try:
                yield
            except BaseException:
                self._close_savepoint(session, nested, depth, failed=True)
                raise
            self._close_savepoint(session, nested, depth, failed=False)

    def _read_in_session(self, query: Callable[[Session], T]) -> T:
        """``_read`` for code that wants an ORM session."""

        def run(conn: Connection) -> T:
            with Session(bind=conn, expire_on_commit=False) as session:
                return query(session)

        return self._read(run)
