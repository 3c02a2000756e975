"""The raw read path's parts: a pooled DBAPI connection and its errors.

A primary-key miss runs its compiled SELECT straight on a pooled DBAPI cursor
(``dal.pkread``): SQLAlchemy Core spends more than the query itself around it. That
fast path must still behave as Core would: connect errors and statement errors are
wrapped as Core wraps them, and a disconnect discards every pooled connection older
than it, as Core's ``_handle_dbapi_exception`` does, so a retry never meets another
dead one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["fetch", "raw_connection"]

T = TypeVar("T")


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
) -> T:
    """``run(cursor)`` on ``dbapi``; driver errors wrapped as Core would wrap them.

    ``pooled`` is None when the connection belongs to an outer read, which deals
    with its own connection's fate.
    """
    dialect = engine.dialect
    cursor = dbapi.cursor()
    try:
        return run(cursor)
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, dbapi, cursor)
        if gone and pooled is not None:
            # As Core does: every connection the pool made before this moment is
            # presumed dead too (a server restart) and is replaced at its checkout,
            # so the retry and the reads after it do not meet another one.
            engine.pool._invalidate(pooled, exc)
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone
        ) from exc
    except ValueError as exc:  # a value the driver refused to send: see refused_value
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc
    finally:
        with suppress(Exception):  # a dropped connection's cursor may not close
            cursor.close()
