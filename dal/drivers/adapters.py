"""SQLAlchemy's asyncio adapters (asyncpg, aiosqlite): the probes their driver entries use.

The pool hands dal an adapted connection (``AsyncAdapt_*_connection``) whose sync
methods await the driver inside the greenlet SQLAlchemy runs them in. These probes
read the driver connection's own state (``driver_connection``) and never await, so
the seam can ask them anywhere: in an event, in ``do_commit``, outside a greenlet.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError
from .mysql import Client

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import PoolProxiedConnection

__all__ = [
    "ASYNCMY",
    "AiosqliteCursor",
    "AsyncmyCursor",
    "AsyncpgCursor",
    "aiosqlite_in_transaction",
    "asyncpg_autocommit",
    "asyncpg_in_transaction",
    "raise_reported",
    "requires",
    "translate_connect_errors",
    "translate_protocol_errors",
]


def requires(*modules: str) -> Callable[[], None]:
    """A driver check: import ``modules`` now, so a missing one names the extra to install."""

    def check() -> None:
        for name in ("greenlet", *modules):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise ConfigError(
                    f"dal.AsyncDatabase needs the {name} package, which is not installed: "
                    "pip install 'sqlalchemy-dal[async]'"
                ) from exc

    return check


def translate_connect_errors(dialect: Dialect) -> None:
    """Make a refused or timed-out connect the driver's OperationalError.

    asyncpg raises the socket's own ``ConnectionRefusedError`` (an OSError) or
    ``asyncio.TimeoutError``, which SQLAlchemy passes through untouched: no
    ``handle_error`` listener sees it and the error boundary would let it out raw.
    As the driver's DBAPI error, Core wraps it like any other connect failure.
    Shadows ``connect`` on this engine's dialect instance only.
    """
    real_connect = dialect.connect

    def connect(*cargs: Any, **cparams: Any) -> Any:
        try:
            return real_connect(*cargs, **cparams)
        except (TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise dialect.loaded_dbapi.OperationalError(f"cannot connect: {reason}") from exc

    dialect.connect = connect  # type: ignore[method-assign]


def raise_reported(adapted: Any, error: Exception) -> NoReturn:
    """Raise ``error`` as the adapter's own cursor reports it: SQLAlchemy 2.1's adapters
    translate it (``_handle_exception``); 2.0's asyncmy adapter has no such step, as
    asyncmy's errors are its DBAPI classes already."""
    report = getattr(adapted, "_handle_exception", None)
    if report is not None:
        report(error)
    raise error


def translate_protocol_errors(dialect: Dialect) -> None:
    """Make asyncpg's own protocol error (InternalClientError) the driver's InternalError.

    asyncpg raises it once the server's FATAL has reached an idle connection and
    before its close has (and aborts the connection, so the pool sees a disconnect
    and the read is retried). SQLAlchemy 2.1's adapter translates it; 2.0's lets it
    out raw, past every error boundary. Adds it to this engine's DBAPI's table only.
    """
    table = getattr(dialect.loaded_dbapi, "_asyncpg_error_translate", None)
    if table is None:  # not asyncpg
        return
    from asyncpg.exceptions import InternalClientError

    table.setdefault(InternalClientError, dialect.loaded_dbapi.InternalError)


#: A statement's rows and its DBAPI description.
Fetched = tuple[list[Any], Any]


class _FetchingCursor:
    """A raw read's cursor that gets a statement's rows in one await (``fetch``, which
    ``dal.aio.direct`` also awaits by itself), errors reported through the adapter,
    as its own cursor reports them. Its attribute names are the adapter cursor's
    (``_adapt_connection``)."""

    __slots__ = ("_adapt_connection", "_rows", "description")

    def __init__(self, adapted: Any) -> None:
        self._adapt_connection = adapted
        self._rows: list[Any] = []
        self.description: Any = None

    @staticmethod
    def fetch(adapted: Any, sql: str, parameters: Any) -> Awaitable[Fetched]:
        """The rows of ``sql`` and their description, read on the adapted connection."""
        raise NotImplementedError

    def execute(self, sql: str, parameters: Any) -> None:
        from sqlalchemy.util import await_only

        adapted = self._adapt_connection
        try:
            self._rows, self.description = await_only(self.fetch(adapted, sql, parameters))
        except Exception as error:
            raise_reported(adapted, error)

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self._rows = []


# -- asyncpg -----------------------------------------------------------------------------


def asyncpg_in_transaction(dbapi_connection: Any) -> bool:
    """The server's view (asyncpg tracks it per message): the adapter begins lazily."""
    conn = dbapi_connection.driver_connection
    return not conn.is_closed() and bool(conn.is_in_transaction())


@contextmanager
def asyncpg_autocommit(connection: PoolProxiedConnection) -> Iterator[None]:
    """Without it the adapter sends BEGIN before a read; its ``autocommit`` flag is a
    client-side switch, no round trip either way."""
    dbapi_connection: Any = connection.dbapi_connection
    dbapi_connection.autocommit = True
    try:
        yield
    finally:
        dbapi_connection.autocommit = False


async def _asyncpg_fetch(adapted: Any, sql: str, parameters: Any) -> Fetched:
    # As the adapter's cursor prepares (its cache, schema timestamp 0) and describes.
    # The adapter's lock too: a load's read may share its outer read's connection.
    async with adapted._execute_mutex:
        statement, attributes = await adapted._prepare(sql, 0)
        try:
            rows = await statement.fetch(*(parameters or ()))
        except Exception as error:
            if not _stale(error):
                raise
            # Another client changed the table (ALTER ... TYPE): the cached statement
            # fails until prepared again. SQLAlchemy's cursor re-prepares once its
            # dialect has seen the error; this read does it now, and reads once more
            # (in read mode: no transaction the failure aborted).
            cache = adapted._prepared_statement_cache
            if cache is not None:
                cache.pop(sql, None)
            statement, attributes = await adapted._prepare(sql, 0)
            rows = await statement.fetch(*(parameters or ()))
        description = [(a.name, a.type.oid, None, None, None, None, None) for a in attributes]
        return rows, description or None


class AsyncpgCursor(_FetchingCursor):
    """The raw primary-key read's cursor on asyncpg: one await per statement.

    The adapter's cursor wraps each statement in more than asyncpg's own call
    (a transaction check, a description list, a deque, a status regex); this keeps
    its lock, prepared statement cache and error translation, and sends the prepared
    statement's Bind/Execute, nothing else. Only in read mode
    (autocommit), on a connection checked out for the read alone.
    """

    __slots__ = ()

    fetch = staticmethod(_asyncpg_fetch)


def _stale(error: Exception) -> bool:
    """Whether asyncpg refused a prepared statement a schema change made stale."""
    from asyncpg.exceptions import InvalidCachedStatementError

    return isinstance(error, InvalidCachedStatementError)


# -- aiosqlite ---------------------------------------------------------------------------


def aiosqlite_in_transaction(dbapi_connection: Any) -> bool:
    try:
        return bool(dbapi_connection.driver_connection.in_transaction)
    except ValueError:  # aiosqlite: "no active connection", closed: nothing is open
        return False


class AiosqliteCursor(_FetchingCursor):
    """The raw primary-key read's cursor on aiosqlite: one hop to its thread.

    The adapter's own cursor costs four (cursor, execute, fetchall, close), about
    half of a miss; this runs all of them in one call on aiosqlite's thread, and
    reports errors through the adapter, as its cursor does.
    """

    __slots__ = ()

    @staticmethod
    def fetch(adapted: Any, sql: str, parameters: Any) -> Awaitable[Fetched]:
        conn = adapted.driver_connection
        return conn._execute(_fetch_all, conn, sql, parameters)  # type: ignore[no-any-return]


def _fetch_all(conn: Any, sql: str, parameters: Any) -> Fetched:
    """On aiosqlite's thread: the whole read on its sqlite3 connection."""
    cursor = conn._conn.execute(sql, parameters)
    try:
        return cursor.fetchall(), cursor.description
    finally:
        cursor.close()


# -- asyncmy -------------------------------------------------------------------------------


def _asyncmy_status(dbapi_connection: Any) -> int | None:
    """asyncmy keeps the last OK packet's status as PyMySQL does; None: closed."""
    conn = dbapi_connection.driver_connection
    if not conn.connected:
        return None
    return int(conn.server_status)


def _asyncmy_begin(dbapi_connection: Any) -> None:
    from sqlalchemy.util import await_only

    await_only(dbapi_connection.driver_connection.begin())


async def _asyncmy_fetch(adapted: Any, sql: str, parameters: Any) -> Fetched:
    async with adapted._execute_mutex:
        cursor = adapted.driver_connection.cursor()
        try:
            await cursor.execute(sql, parameters)
            description = cursor.description
            return (list(await cursor.fetchall()) if description else []), description
        finally:
            await cursor.close()


class AsyncmyCursor(_FetchingCursor):
    """The raw primary-key read's cursor on asyncmy: one await per statement, under
    the adapter's lock, as its own cursor runs one (execute, then every row)."""

    __slots__ = ()

    fetch = staticmethod(_asyncmy_fetch)


#: MySQL's reads and transactions (``dal.drivers.mysql``) on asyncmy's adapter.
ASYNCMY = Client(_asyncmy_status, _asyncmy_begin)
