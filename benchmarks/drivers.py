"""What differs per driver: engines set up the way dal sets up its own, counting the
statements an engine sends, and the physical floor of a miss.

The floor is the driver's own primary-key select on a held connection: no pool
checkout, no SQLAlchemy, prepared where the driver can; the least a cache can pay
for a row it does not hold. One entry per DBAPI driver in ``FLOORS``; a driver
without one simply has no ``raw`` row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from dal.drivers import sqlite_pragmas

from .data import TABLE_NAME, item_table

__all__ = [
    "FLOORS",
    "MAX_OVERFLOW",
    "Floor",
    "QueryCounter",
    "Reader",
    "created_database",
    "make_engine",
    "redact",
]

#: Connections a pool opens beyond its size (dal's default), for every pooled engine.
MAX_OVERFLOW = 10
#: Seconds a SQLite connection waits on another writer's lock (dal uses its pool timeout).
SQLITE_BUSY_TIMEOUT = 30.0


def make_engine(url: str, *, pool_size: int | None) -> Engine:
    """A pooled engine with the SQLite settings dal uses; ``pool_size=None``: ``NullPool``."""
    kwargs: dict[str, Any]
    if pool_size is None:
        kwargs = {"poolclass": NullPool}
    else:
        kwargs = {"pool_size": pool_size, "max_overflow": MAX_OVERFLOW}
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
    engine = create_engine(url, **kwargs)
    if sqlite:
        # The same settings as dal's engine: a baseline must not pay for a stricter sync mode.
        event.listen(engine, "connect", sqlite_pragmas)
    return engine


#: backend -> (the database to connect to for CREATE DATABASE, the query that finds one).
_ADMIN = {
    "postgresql": ("postgres", "SELECT 1 FROM pg_database WHERE datname = :name"),
    "mysql": (None, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
}


@contextlib.contextmanager
def created_database(url: str) -> Iterator[bool]:
    """Create ``url``'s database if it does not exist, and drop it afterwards; whether it
    did. A database that was there is left as it was."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _ADMIN or not parsed.database:
        yield False
        return
    maintenance, exists = _ADMIN[backend]
    admin = create_engine(
        parsed._replace(database=maintenance), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    name = admin.dialect.identifier_preparer.quote(parsed.database)
    try:
        with admin.connect() as conn:
            if conn.scalar(text(exists), {"name": parsed.database}) is not None:
                yield False
                return
            charset = " CHARACTER SET utf8mb4" if backend == "mysql" else ""
            conn.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
        try:
            yield True
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    finally:
        admin.dispose()


def redact(url: str) -> str:
    """``url`` without its password, for the report."""
    return make_url(url).render_as_string(hide_password=True)


class QueryCounter:
    """Counts the statements an engine's connections send to the database.

    It counts below SQLAlchemy, on the DBAPI connection (a SQLite trace callback, a
    psycopg2 cursor class, PyMySQL's query method; for an ``AsyncEngine``'s
    ``sync_engine``, asyncpg's protocol object, asyncmy's query method or aiosqlite's
    trace callback), set up by
    a pool ``connect`` listener. A connection-event listener such as
    ``before_cursor_execute`` would be simpler, but any listener of that kind moves every
    execute on the engine to SQLAlchemy's evented path, which costs about half a SQLite
    read again: the counter would change what it measures.
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
        elif driver == "asyncpg":
            event.listen(engine, "connect", self._count_asyncpg)
        elif driver == "aiosqlite":
            event.listen(engine, "connect", self._trace_aiosqlite)
        elif driver == "asyncmy":
            event.listen(engine, "connect", self._count_asyncmy)
        else:
            event.listen(engine, "before_cursor_execute", self._add)

    @property
    def count(self) -> int:
        return self._count

    def _add(self, *args: Any) -> None:
        with self._lock:
            self._count += 1

    def _trace_sqlite(self, dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.set_trace_callback(self._traced)

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

    def _count_asyncpg(self, dbapi_connection: Any, record: Any) -> None:
        # asyncpg sends every statement through its protocol object: prepared ones
        # (as SQLAlchemy's adapter and dal run them) by bind_execute, plain text by query.
        connection = dbapi_connection.driver_connection
        connection._protocol = _CountingProtocol(connection._protocol, self._add)

    def _count_asyncmy(self, dbapi_connection: Any, record: Any) -> None:
        # As PyMySQL's: every cursor statement goes through the connection's query(),
        # here a coroutine function; BEGIN/COMMIT/ROLLBACK do not.
        connection = dbapi_connection.driver_connection
        query = connection.query
        add = self._add

        async def counted(sql: Any, unbuffered: bool = False) -> Any:
            add()
            return await query(sql, unbuffered)

        connection.query = counted

    def _trace_aiosqlite(self, dbapi_connection: Any, record: Any) -> None:
        from sqlalchemy.util import await_only

        # The pool connects inside SQLAlchemy's greenlet: the driver's own call can be awaited.
        await_only(dbapi_connection.driver_connection.set_trace_callback(self._traced))

    def _traced(self, statement: str) -> None:
        # SQLite also reports the BEGIN/COMMIT the driver issues and the pragmas.
        if statement.lstrip()[:6].upper() in _STATEMENTS:
            self._add()


class _CountingProtocol:
    """An asyncpg protocol that counts the statements sent through it."""

    __slots__ = ("_add", "_real")

    def __init__(self, real: Any, add: Callable[[], None]) -> None:
        self._real = real
        self._add = add

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def bind_execute(self, *args: Any, **kwargs: Any) -> Any:
        self._add()
        return self._real.bind_execute(*args, **kwargs)

    def bind_execute_many(self, *args: Any, **kwargs: Any) -> Any:
        self._add()
        return self._real.bind_execute_many(*args, **kwargs)

    def query(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.lstrip()[:6].upper() in _STATEMENTS:  # not BEGIN, COMMIT, ROLLBACK
            self._add()
        return self._real.query(query, *args, **kwargs)


_STATEMENTS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"})


#: Reads one row by key on the connection it was made for.
Read = Callable[[int], Any]


@dataclasses.dataclass(frozen=True)
class Reader:
    read: Read
    #: Undoes what the reader set up, leaving the connection fit for its pool again.
    close: Callable[[], None]


@dataclasses.dataclass(frozen=True)
class Floor:
    #: How the statement is sent, for the report's label.
    how: str
    #: Makes a reader on a DBAPI connection that it may hold until ``close``.
    prepare: Callable[[Any], Reader]


def _columns() -> str:
    return ", ".join(c.name for c in item_table().columns)


def _psycopg2(dbapi_connection: Any) -> Reader:
    # A server-side prepared statement: parsed and planned once, then EXECUTE per
    # key; autocommit, so no BEGIN before it and no ROLLBACK after.
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute(
        f"PREPARE dal_bench_raw (integer) AS SELECT {_columns()} FROM {TABLE_NAME} WHERE id = $1"
    )
    execute, fetchone = cursor.execute, cursor.fetchone

    def read(key: int) -> Any:
        execute("EXECUTE dal_bench_raw (%s)", (key,))
        return fetchone()

    def close() -> None:
        cursor.execute("DEALLOCATE dal_bench_raw")
        cursor.close()
        dbapi_connection.autocommit = False

    return Reader(read, close)


def _pysqlite(dbapi_connection: Any) -> Reader:
    # sqlite3 keeps compiled statements in a per-connection cache keyed by the SQL
    # text: the same text every time is a prepared statement.
    sql = f"SELECT {_columns()} FROM {TABLE_NAME} WHERE id = ?"
    cursor = dbapi_connection.cursor()
    execute = cursor.execute

    def read(key: int) -> Any:
        return execute(sql, (key,)).fetchone()

    return Reader(read, cursor.close)


def _pymysql(dbapi_connection: Any) -> Reader:
    # PyMySQL speaks MySQL's text protocol only (no server-side prepared statements):
    # the cursor escapes the key into the SQL. Autocommit, so no transaction is open
    # around the read and no ROLLBACK follows it, as for dal's reads.
    dbapi_connection.autocommit(True)
    sql = f"SELECT {_columns()} FROM {TABLE_NAME} WHERE id = %s"
    cursor = dbapi_connection.cursor()
    execute, fetchone = cursor.execute, cursor.fetchone

    def read(key: int) -> Any:
        execute(sql, (key,))
        return fetchone()

    def close() -> None:
        cursor.close()
        dbapi_connection.autocommit(False)

    return Reader(read, close)


#: By SQLAlchemy's name for the DBAPI driver (``engine.dialect.driver``).
FLOORS: dict[str, Floor] = {
    "psycopg2": Floor("PREPARE/EXECUTE", _psycopg2),
    "pysqlite": Floor("sqlite3's statement cache", _pysqlite),
    "pymysql": Floor("a text-protocol SELECT in autocommit", _pymysql),
}
