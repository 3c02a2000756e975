"""How the bus runs its NOTIFY on a writing connection: one sender per driver.

``Bus.publish`` is called inside ``do_commit`` (or just after writes that committed
on their own) with the pool's DBAPI connection. The NOTIFY must run on the
transaction about to commit, so PostgreSQL delivers it exactly at COMMIT, or alone
when no transaction is open, so it is delivered at once; never in a transaction of
its own that nobody commits.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["ASYNCPG", "PSYCOPG2", "Aborted", "Sender", "for_driver"]

Row = tuple[Any, ...] | None

#: ``%(name)s`` placeholders (the bus's queries are written for psycopg2).
_NAMED = re.compile(r"%\((\w+)\)s")


class Sender:
    """psycopg2: the driver connection is the DBAPI connection itself."""

    def aborted(self, dbapi_connection: Any) -> bool:
        """Whether the transaction failed: its COMMIT rolls back, nothing to announce."""
        from psycopg2.extensions import TRANSACTION_STATUS_INERROR

        return bool(dbapi_connection.info.transaction_status == TRANSACTION_STATUS_INERROR)

    def fetch(self, dbapi_connection: Any, sql: str, params: dict[str, Any]) -> Row:
        """Run ``sql`` and return its first row."""
        from psycopg2.extensions import STATUS_READY

        # No transaction open (the writes committed on their own, e.g. a COMMIT in the
        # SQL text): psycopg2 would send BEGIN first, opening one that nobody commits.
        if dbapi_connection.status == STATUS_READY and not dbapi_connection.autocommit:
            dbapi_connection.autocommit = True
            try:
                return _fetch(dbapi_connection, sql, params)
            finally:
                dbapi_connection.autocommit = False
        return _fetch(dbapi_connection, sql, params)


class AsyncpgSender(Sender):
    """asyncpg, through SQLAlchemy's adapter: the raw asyncpg connection's own query
    (the adapter's cursor would BEGIN when no transaction is open). Runs in the
    greenlet ``do_commit`` runs in, so it can await."""

    def aborted(self, dbapi_connection: Any) -> bool:
        # asyncpg does not say; a NOTIFY in a failed transaction raises ``Aborted``.
        return False

    def fetch(self, dbapi_connection: Any, sql: str, params: dict[str, Any]) -> Row:
        """Errors as the adapter's cursor reports them (the driver's DBAPI errors,
        which Core wraps): asyncpg's own would leave COMMIT untranslated."""
        from asyncpg.exceptions import InFailedSQLTransactionError
        from sqlalchemy.util import await_only

        from ..drivers.adapters import raise_reported

        text, names = _numbered(sql)
        conn = dbapi_connection.driver_connection
        try:
            row = await_only(conn.fetchrow(text, *(params[n] for n in names)))
        except InFailedSQLTransactionError as error:
            raise Aborted from error  # its COMMIT rolls back, as without the bus
        except Exception as error:
            raise_reported(dbapi_connection, error)
        return None if row is None else tuple(row)


class Aborted(Exception):
    """The transaction failed before its NOTIFY: its COMMIT rolls back, and there is
    nothing to announce."""


def _fetch(dbapi_connection: Any, sql: str, params: dict[str, Any]) -> Row:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        return None if row is None else tuple(row)
    finally:
        cursor.close()


@functools.cache
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``%(name)s`` as ``$1, $2...``, and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


PSYCOPG2 = Sender()
ASYNCPG = AsyncpgSender()


def for_driver(driver: str) -> Sender:
    """The sender for a PostgreSQL driver entry's name."""
    return ASYNCPG if driver == "asyncpg" else PSYCOPG2
