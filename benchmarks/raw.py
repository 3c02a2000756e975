"""The physical floor of a miss: the driver's own primary-key select on a held connection.

No pool checkout, no SQLAlchemy, prepared where the driver can: the least a cache
can pay for a row it does not hold. One entry per DBAPI driver in ``FLOORS``; a
driver without one simply has no ``raw`` row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .data import TABLE_NAME, item_table

__all__ = ["FLOORS", "Floor", "Reader"]

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
