"""A counting double for SQL: records every statement an engine's connections send.

It counts below SQLAlchemy, on the DBAPI connection (SQLite's trace callback, a
psycopg2 cursor class, PyMySQL's command writer, mysqlclient's query and transaction
calls), installed as each pooled connection is checked out. So it sees every statement
that reaches the database, whichever way it was sent: through SQLAlchemy's execution,
or straight on a pooled DBAPI cursor as dal's cheapest reads are. On aiosqlite it is
the sqlite3 connection's trace callback too (set on aiosqlite's thread); SQLAlchemy's
other asyncio adapters (asyncpg, asyncmy) are slotted: for them the adapter's cursor
class (and on asyncpg dal's raw read cursor) records the statements of the connections
a log instrumented.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["StatementLog"]


#: id of an adapted asyncio connection -> (it, the log that records its statements).
_adapted: dict[int, tuple[Any, StatementLog]] = {}


def _cursor_class(dbapi_connection: Any) -> type:
    """The class of this adapter's cursors (which of its bases defines ``execute``
    differs between SQLAlchemy versions: the wrappers go on the class itself)."""
    cursor = dbapi_connection.cursor()
    cursor.close()
    return type(cursor)


def _record_adapted(cls: type) -> None:
    """Make ``cls.execute`` / ``executemany`` report to the connection's log (once)."""
    if "_dal_statement_log" in cls.__dict__:
        return
    execute = cls.execute  # type: ignore[attr-defined]
    executemany = getattr(cls, "executemany", None)  # dal's raw read cursors have none

    def log_of(cursor: Any) -> StatementLog | None:
        found = _adapted.get(id(cursor._adapt_connection))
        return found[1] if found is not None and found[0] is cursor._adapt_connection else None

    def logged_execute(self: Any, operation: Any, parameters: Any = None) -> Any:
        log = log_of(self)
        if log is not None:
            log._record(str(operation))
        return execute(self, operation, parameters)

    def logged_executemany(self: Any, operation: Any, seq_of_parameters: Any) -> Any:
        log = log_of(self)
        if log is not None:
            log._record(str(operation))
        return executemany(self, operation, seq_of_parameters)

    cls.execute = logged_execute  # type: ignore[attr-defined]
    if executemany is not None:
        cls.executemany = logged_executemany  # type: ignore[attr-defined]
    cls._dal_statement_log = True  # type: ignore[attr-defined]


def _is_adapted(dbapi_connection: Any) -> bool:
    from sqlalchemy.engine.interfaces import AdaptedConnection

    return isinstance(dbapi_connection, AdaptedConnection)


def _is_from(package: str, dbapi_connection: Any) -> bool:
    return any(c.__module__.startswith(f"{package}.") for c in type(dbapi_connection).__mro__)


class StatementLog:
    """Statements sent on an engine's pooled connections, in order, with their values
    bound into the SQL text; thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._statements: list[str] = []
        self._attached = False
        self._cursor_class: type | None = None

    def attach(self) -> StatementLog:
        """Start recording (idempotent)."""
        if not self._attached:
            event.listen(self.engine, "checkout", self._instrument)
            self._attached = True
        return self

    def detach(self) -> None:
        """Stop recording (idempotent)."""
        if self._attached:
            event.remove(self.engine, "checkout", self._instrument)
            self._attached = False
            for key in [k for k, (_, log) in _adapted.items() if log is self]:
                del _adapted[key]

    def _instrument(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if _is_adapted(dbapi_connection) and _is_from(
            "aiosqlite", dbapi_connection.driver_connection
        ):
            # dal's raw reads go straight to the sqlite3 connection on aiosqlite's thread,
            # past the adapter: its trace callback sees every statement, set there too.
            from sqlalchemy.util import await_only

            await_only(dbapi_connection.driver_connection.set_trace_callback(self._record))
        elif _is_adapted(dbapi_connection):
            _record_adapted(_cursor_class(dbapi_connection))
            # dal's raw reads on asyncpg and asyncmy use cursors of their own.
            from dal.drivers.adapters import AsyncmyCursor, AsyncpgCursor

            if _is_from("asyncpg", dbapi_connection.driver_connection):
                _record_adapted(AsyncpgCursor)
            elif _is_from("asyncmy", dbapi_connection.driver_connection):
                _record_adapted(AsyncmyCursor)
            _adapted[id(dbapi_connection)] = (dbapi_connection, self)
        elif isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(self._record)
        elif _is_from("pymysql", dbapi_connection):
            self._instrument_pymysql(dbapi_connection)
        elif _is_from("MySQLdb", dbapi_connection):
            self._instrument_mysqldb(dbapi_connection)
        else:
            dbapi_connection.cursor_factory = self._psycopg2_cursor()

    def _instrument_pymysql(self, dbapi_connection: Any) -> None:
        # Every text command PyMySQL sends passes through _execute_command: statements
        # with their values bound, and BEGIN/COMMIT/ROLLBACK/SET AUTOCOMMIT too, as the
        # server counts them.
        if getattr(dbapi_connection, "_dal_statement_log", None) is self:
            return
        from pymysql.constants import COMMAND

        send = type(dbapi_connection)._execute_command
        record = self._record

        def execute_command(command: int, sql: Any) -> Any:
            if command == COMMAND.COM_QUERY:
                record(sql if isinstance(sql, str) else bytes(sql).decode(errors="replace"))
            return send(dbapi_connection, command, sql)

        dbapi_connection._execute_command = execute_command
        dbapi_connection._dal_statement_log = self

    def _instrument_mysqldb(self, dbapi_connection: Any) -> None:
        # mysqlclient's cursors and begin() send SQL through query(); COMMIT, ROLLBACK
        # and SET AUTOCOMMIT go through the C client's own calls, wrapped one by one.
        if getattr(dbapi_connection, "_dal_statement_log", None) is self:
            return
        cls, record = type(dbapi_connection), self._record

        def query(sql: Any) -> Any:
            record(sql if isinstance(sql, str) else bytes(sql).decode(errors="replace"))
            return cls.query(dbapi_connection, sql)

        def sends(statement: str, method: Callable[..., Any]) -> Callable[[], Any]:
            def send() -> Any:
                record(statement)
                return method(dbapi_connection)

            return send

        def autocommit(on: bool) -> Any:
            if dbapi_connection.get_autocommit() != bool(on):
                record(f"SET AUTOCOMMIT = {int(bool(on))}")
            return cls.autocommit(dbapi_connection, on)

        dbapi_connection.query = query
        dbapi_connection.commit = sends("COMMIT", cls.commit)
        dbapi_connection.rollback = sends("ROLLBACK", cls.rollback)
        dbapi_connection.autocommit = autocommit
        dbapi_connection._dal_statement_log = self

    def _psycopg2_cursor(self) -> type:
        if self._cursor_class is None:
            import psycopg2.extensions

            record = self._record

            class CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
                # Recorded with the values bound, as SQLite's trace callback reports them.
                def execute(self, query: Any, vars: Any = None) -> Any:
                    record(self.mogrify(query, vars).decode())
                    return super().execute(query, vars)

                def executemany(self, query: Any, vars_list: Any) -> Any:
                    record(query if isinstance(query, str) else query.decode())
                    return super().executemany(query, vars_list)

            self._cursor_class = CountingCursor
        return self._cursor_class

    def _record(self, statement: str) -> None:
        if self._attached:
            with self._lock:
                self._statements.append(statement)

    @property
    def all(self) -> list[str]:
        """Every statement recorded so far (a copy)."""
        with self._lock:
            return list(self._statements)

    def selects(self) -> list[str]:
        """The recorded statements that are SELECTs."""
        return [s for s in self.all if s.lstrip().upper().startswith("SELECT")]

    def clear(self) -> None:
        """Forget what was recorded; keep recording."""
        with self._lock:
            self._statements.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._statements)

    def __repr__(self) -> str:
        return f"<StatementLog {len(self)} statements>"
