"""Engines for the competitors that are not dal, set up the way dal sets up its own."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from dal.drivers import sqlite_pragmas

__all__ = ["POOL_SIZE", "QueryCounter", "make_engine", "redact"]

#: dal's default pool limits, so pooled baselines queue on the same number of connections.
POOL_SIZE = 5
MAX_OVERFLOW = 10
#: Seconds a SQLite connection waits on another writer's lock (dal uses its pool timeout).
SQLITE_BUSY_TIMEOUT = 30.0


def make_engine(url: str, *, null_pool: bool = False) -> Engine:
    """A pooled engine (or one with ``NullPool``) with the SQLite settings dal uses."""
    kwargs: dict[str, Any]
    if null_pool:
        kwargs = {"poolclass": NullPool}
    else:
        kwargs = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
    engine = create_engine(url, **kwargs)
    if sqlite:
        # The same settings as dal's engine: a baseline must not pay for a stricter sync mode.
        event.listen(engine, "connect", sqlite_pragmas)
    return engine


def redact(url: str) -> str:
    """``url`` without its password, for the report."""
    return make_url(url).render_as_string(hide_password=True)


class QueryCounter:
    """Counts the statements an engine's connections send to the database.

    It counts below SQLAlchemy, on the DBAPI connection (a SQLite trace callback, a
    psycopg2 cursor class, PyMySQL's query method), set up by a pool ``connect``
    listener. A connection-event listener such as ``before_cursor_execute`` would be
    simpler, but any listener of that kind moves every execute on the engine to
    SQLAlchemy's evented path, which costs about half a SQLite read again: the counter
    would change what it measures.
    Other drivers fall back to ``before_cursor_execute``.
    """

    def __init__(self, engine: Engine) -> None:
        pool: Any = engine.pool
        if getattr(pool, "checkedin", int)() or getattr(pool, "checkedout", int)():
            raise RuntimeError("a QueryCounter must see the engine before its first connection")
        self._lock = threading.Lock()  # `+=` is not atomic across threads: a stampede counts
        self._count = 0
        driver = engine.dialect.driver
        if driver == "pysqlite":
            event.listen(engine, "connect", self._trace_sqlite)
        elif driver == "psycopg2":
            event.listen(engine, "connect", self._count_psycopg2)
        elif driver == "pymysql":
            event.listen(engine, "connect", self._count_pymysql)
        else:
            event.listen(engine, "before_cursor_execute", self._add)

    @property
    def count(self) -> int:
        return self._count

    def _add(self, *args: Any) -> None:
        with self._lock:
            self._count += 1

    def _trace_sqlite(self, dbapi_connection: Any, record: Any) -> None:
        def traced(statement: str) -> None:
            # SQLite also reports the BEGIN/COMMIT the driver issues and the pragmas.
            if statement.lstrip()[:6].upper() in _STATEMENTS:
                self._add()

        dbapi_connection.set_trace_callback(traced)

    def _count_psycopg2(self, dbapi_connection: Any, record: Any) -> None:
        import psycopg2.extensions

        add = self._add

        class CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
            def execute(self, query: Any, vars: Any = None) -> Any:
                add()
                return super().execute(query, vars)

            def executemany(self, query: Any, vars_list: Any) -> Any:
                add()
                return super().executemany(query, vars_list)

        dbapi_connection.cursor_factory = CountingCursor

    def _count_pymysql(self, dbapi_connection: Any, record: Any) -> None:
        # Every cursor statement reaches the server through the connection's query();
        # its BEGIN/COMMIT/ROLLBACK do not, as psycopg2's do not pass its cursor.
        query = dbapi_connection.query
        add = self._add

        def counted(sql: Any, unbuffered: bool = False) -> Any:
            add()
            return query(sql, unbuffered)

        dbapi_connection.query = counted


_STATEMENTS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"})
