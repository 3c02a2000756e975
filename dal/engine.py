"""The SQLAlchemy engine and its pool, with dal's connection class per driver."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from .config import Settings
from .errors import ConfigError
from .invalidation import Tracker, connection_class

__all__ = ["PoolCounters", "create", "read_mode", "sqlite_pragmas"]

#: RETURNING, which repository writes use to read the row in the same round trip.
_MIN_SQLITE = (3, 35)


class PoolCounters:
    """Pool events counted for ``Database.stats()``."""

    __slots__ = ("connects", "disconnects", "retries", "timeouts")

    def __init__(self) -> None:
        self.connects = self.disconnects = self.retries = self.timeouts = 0

    def on_connect(self, dbapi_connection: Any, record: Any) -> None:
        self.connects += 1

    def on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        self.disconnects += 1


def create(settings: Settings, tracker: Tracker, counters: PoolCounters) -> Engine:
    """An engine whose pooled connections report commits to ``tracker``."""
    connect_args: dict[str, Any]
    if settings.backend == "sqlite":
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise ConfigError(
                f"SQLite {sqlite3.sqlite_version} is too old; dal needs 3.35 or newer"
            )
        tracked = connection_class(
            sqlite3.Connection, tracker, _sqlite_in_transaction, commits_when_read=True
        )
        connect_args = {
            "factory": tracked,
            "check_same_thread": False,  # pooled connections move between threads
            "timeout": settings.pool_timeout,  # busy timeout while another writer holds the lock
        }
    else:
        import psycopg2.extensions

        tracked = connection_class(
            psycopg2.extensions.connection, tracker, _pg_in_transaction, commits_when_read=False
        )
        connect_args = {"connection_factory": tracked}
    engine = create_engine(
        settings.url,
        poolclass=QueuePool,
        pool_size=settings.pool_size,
        max_overflow=-1 if settings.max_overflow is None else settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=-1 if settings.pool_recycle is None else settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", counters.on_connect)
    event.listen(engine, "invalidate", counters.on_invalidate)
    if settings.backend == "sqlite":
        event.listen(engine, "connect", sqlite_pragmas)
    event.listen(engine, "after_execute", tracker.after_execute)
    event.listen(engine, "after_cursor_execute", tracker.after_cursor_execute)
    event.listen(engine, "handle_error", tracker.handle_error)
    return engine


def sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """``PoolEvents.connect`` for SQLite: the settings dal's connections run with."""
    # WAL lets readers run while a writer commits; foreign keys are off by default
    # in SQLite; NORMAL sync is durable across application crashes under WAL.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_in_transaction(connection: Any) -> bool:
    return bool(connection.in_transaction)


def _pg_in_transaction(connection: Any) -> bool:
    import psycopg2.extensions

    if connection.closed:  # whatever was open is gone
        return False
    return bool(connection.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE)


def read_mode(settings: Settings) -> Callable[[Any], AbstractContextManager[None]]:
    """How to run one read on a pooled DBAPI connection in a single round trip.

    psycopg2 sends BEGIN before the first statement and the pool sends ROLLBACK on
    return; its client-side ``autocommit`` flag avoids both. (SQLAlchemy's
    AUTOCOMMIT isolation level would cost a ``SET default_transaction_isolation``
    on every return instead.) pysqlite never begins a transaction for a SELECT.
    """
    return _pg_autocommit if settings.backend == "postgresql" else _no_change


def _no_change(dbapi_connection: Any) -> AbstractContextManager[None]:
    return nullcontext()


@contextmanager
def _pg_autocommit(dbapi_connection: Any) -> Iterator[None]:
    dbapi_connection.autocommit = True
    try:
        yield
    finally:
        # A connection dropped by the read is already closed and discarded.
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = False
