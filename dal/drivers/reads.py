"""The raw read path's parts: a pooled DBAPI connection, its errors, and who is watching.

A primary-key miss runs its compiled SELECT straight on a pooled DBAPI cursor
(``dal.drivers.pkread``): SQLAlchemy Core spends more than the query itself around it. That
fast path must still behave as Core would: connect errors and statement errors are
wrapped as Core wraps them, and a disconnect discards every pooled connection older
than it, as Core's ``_handle_dbapi_exception`` does, so a retry never meets another
dead one. And it is taken only while nobody watches: as soon as a listener other
than dal's own is on the engine's cursor events, or ``sqlalchemy.engine`` logs at
INFO, the same SQL with the same values runs through ``Connection.exec_driver_sql``
(``evented``), so tracing, error reporting and statement logs see every statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["Watch", "evented", "failed", "fetch", "raw_connection"]

T = TypeVar("T")


class Watch:
    """Tells whether anyone but dal watches the engine's statements: listeners on
    ``before_cursor_execute``, ``after_cursor_execute`` or ``handle_error``, or
    ``sqlalchemy.engine`` logging at INFO (``echo=True`` included).

    Counted once, after dal registered its own listeners. Asking is paid by misses
    only: three identity checks and six ``len()`` of the deques SQLAlchemy keeps the
    listeners in (the event objects' own ``__len__`` costs several times that), and
    the logger's level check.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Stable per engine; their event attributes are replaced as listeners come.
        self._events: Any = engine.dispatch
        self._dialect_events: Any = engine.dialect.dispatch  # handle_error is a dialect event
        collections = self._collections()
        # Listeners on the Engine class (parent_listeners) are somebody else's.
        self._own = sum(len(c) - len(c.parent_listeners) for c in collections)
        self._state = self._snapshot(collections)

    def _collections(self) -> tuple[Any, Any, Any]:
        events = self._events
        return (
            events.before_cursor_execute,
            events.after_cursor_execute,
            self._dialect_events.handle_error,
        )

    @staticmethod
    def _snapshot(collections: tuple[Any, Any, Any]) -> tuple[Any, ...]:
        # Class-level listeners (parent_listeners) and, once an instance has any, its
        # own; both are deques SQLAlchemy changes in place. An event without instance
        # listeners is an _EmptyListener, replaced by a collection at its first one.
        deques = [d for c in collections for d in (c.parent_listeners, getattr(c, "listeners", ()))]
        return (*collections, *deques)

    def watched(self) -> bool:
        """Whether a statement must go through Core's events and log."""
        state = self._state
        before, after, error, d0, d1, d2, d3, d4, d5 = state
        events = self._events
        if (
            events.before_cursor_execute is not before
            or events.after_cursor_execute is not after
            or self._dialect_events.handle_error is not error
        ):
            self._state = self._snapshot(self._collections())  # a first instance listener
            return self.watched()
        listeners = len(d0) + len(d1) + len(d2) + len(d3) + len(d4) + len(d5)
        # _should_log_info is what Connection itself asks to decide whether to log.
        return listeners != self._own or self._engine._should_log_info()


def raw_connection(engine: Engine) -> PoolProxiedConnection:
    """``engine.raw_connection()``, a connect error wrapped and dispatched as Core's is.

    ``Engine.connect()`` passes a driver's connect error through
    ``Connection._handle_dbapi_exception_noconnection`` (handle_error listeners, then a
    DBAPIError); ``raw_connection()`` alone would let the raw driver error out.
    """
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        Connection._handle_dbapi_exception_noconnection(exc, engine.dialect, engine)
        raise  # not reached: the call above raises


def fetch(
    engine: Engine,
    pooled: PoolProxiedConnection | None,
    dbapi: Any,
    sql: str,
    run: Callable[[Any], T],
    cursor_of: Callable[[Any], Any] | None = None,
) -> T:
    """``run(cursor)`` on ``dbapi``; driver errors wrapped as Core would wrap them.

    ``pooled`` is None when the connection belongs to an outer read, which deals
    with its own connection's fate.
    """
    cursor = dbapi.cursor() if cursor_of is None else cursor_of(dbapi)
    try:
        return run(cursor)
    except (engine.dialect.loaded_dbapi.Error, ValueError) as exc:
        raise failed(engine, pooled, dbapi, cursor, sql, exc) from exc
    finally:
        with suppress(Exception):  # a dropped connection's cursor may not close
            cursor.close()


def failed(
    engine: Engine,
    pooled: PoolProxiedConnection | None,
    dbapi: Any,
    cursor: Any,
    sql: str,
    exc: Exception,
) -> StatementError:
    """A raw read's driver error (or a value the driver refused, a ValueError: see
    ``refused_value``) as Core would raise it, the pool told of a disconnect."""
    dialect = engine.dialect
    if isinstance(exc, ValueError):
        return DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error)
    gone = dialect.is_disconnect(cast(Any, exc), dbapi, cursor)
    if gone and pooled is not None:
        # As Core does: every connection the pool made before this moment is
        # presumed dead too (a server restart) and is replaced at its checkout,
        # so the retry and the reads after it do not meet another one.
        engine.pool._invalidate(pooled, exc)
    return DBAPIError.instance(
        sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone
    )


def evented(conn: Connection, run: Callable[[Any], T]) -> T:
    """``run(cursor)`` with a cursor whose statements go through ``exec_driver_sql``."""
    cursor = _CoreCursor(conn)
    try:
        return run(cursor)
    finally:
        cursor.close()


class _CoreCursor:
    """The DBAPI cursor calls ``PkRead`` makes, sent as ``Connection.exec_driver_sql``.

    The statement and its values are exactly the raw path's; Core adds its cursor
    events, its statement log and its error handling (pool invalidation on a
    disconnect included). Rows come back as the driver returned them, and ``PkRead``
    converts them with the same result processors either way.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._result: Any = None
        self.description: Sequence[Any] | None = None

    def execute(self, sql: str, parameters: Any) -> None:
        self.close()
        self._result = self._conn.exec_driver_sql(sql, parameters)
        self.description = self._result.cursor.description

    def fetchone(self) -> Any:
        return self._result.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._result.fetchall())

    def close(self) -> None:
        if self._result is not None:
            self._result.close()
            self._result = None
