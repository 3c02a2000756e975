"""One entry per backend/driver: what differs between the drivers dal supports.

Everything else (write tracking, the after-commit seam around the dialect's
``do_commit``/``do_rollback``, the error boundary, retries) is the same for all of
them. Adding a driver is one ``Driver`` entry in ``DRIVERS`` plus its tests::

    Driver(
        backend="mysql", driver="pymysql",
        in_transaction=...,   # is a transaction open on this DBAPI connection?
        read_mode=...,        # run one read in a single round trip, outside any snapshot
    )

An async adapter's entry (``is_async=True``) probes its adapted connection: the
seam and the tracking never touch a driver object beyond these functions.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from . import adapters, mysql, mysqldb

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.pool import PoolProxiedConnection

    from ..config import Settings

__all__ = ["DRIVERS", "Driver", "default_driver", "lookup", "sqlite_pragmas", "supported"]

#: RETURNING, which repository writes use to read the row in the same round trip.
_MIN_SQLITE = (3, 35)
#: sqlite3's longest busy timeout (milliseconds in a C int).
_SQLITE_FOREVER = 2_147_483.0


def _as_is(connection: PoolProxiedConnection) -> AbstractContextManager[None]:
    return nullcontext()


def _no_args(settings: Settings) -> dict[str, Any]:
    return {}


def _nothing() -> None:
    return None


def dialect_returning(dialect: Dialect) -> frozenset[str]:
    """The statements the dialect can add RETURNING to, as the dialect itself reports.

    A dialect that learns it from the server (MariaDB) knows after its first connect.
    """
    flags = {
        "insert": dialect.insert_returning,
        "update": dialect.update_returning,
        "delete": dialect.delete_returning,
    }
    return frozenset(op for op, can in flags.items() if can)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Driver:
    """What one backend/driver pair does differently from the others."""

    backend: str
    driver: str
    #: Whether a transaction is open on the DBAPI connection (the pool's
    #: ``dbapi_connection``). After a write, "no" means the write committed on its own
    #: (autocommit, the RELEASE of an outermost SQLite savepoint).
    in_transaction: Callable[[Any], bool]
    #: Wraps one read on a pooled connection (``.dbapi_connection`` is the driver's,
    #: ``.info`` lives as long as it) so that it costs one round trip and reads no
    #: snapshot older than the read itself.
    read_mode: Callable[[PoolProxiedConnection], AbstractContextManager[None]] = _as_is
    #: The driver commits an autocommit statement that returns rows only once they are
    #: read (SQLite with RETURNING): such a write's rows are read at its execute.
    commits_when_read: bool = False
    #: ``PoolEvents.connect`` listener: settings every new connection runs with.
    on_connect: Callable[[Any, Any], None] | None = None
    #: Arguments for the driver's ``connect()``, from the Database's settings.
    connect_args: Callable[[Settings], dict[str, Any]] = _no_args
    #: Raises ConfigError when the installed library is too old for dal.
    check: Callable[[], None] = _nothing
    #: Which of insert/update/delete can carry RETURNING on this dialect.
    returning: Callable[[Dialect], frozenset[str]] = dialect_returning
    #: False: skip the DBAPI rollback while ``in_transaction`` says none is open (a
    #: driver that sends ROLLBACK regardless would cost every read's return a round trip).
    rollback_when_idle: bool = True
    #: Installs the driver's own engine listeners and dialect overrides, after dal's
    #: (MySQL: the server version check, an explicit BEGIN in autocommit mode).
    setup: Callable[[Engine], None] | None = None
    #: An asyncio adapter, for ``AsyncDatabase``.
    is_async: bool = False
    #: A cursor for the raw primary-key read on a DBAPI connection, cheaper than the
    #: driver's own (None: ``dbapi_connection.cursor()``).
    raw_cursor: Callable[[Any], Any] | None = None
    #: Whether the checkout listener ``setup`` installed would send nothing for this
    #: pooled DBAPI connection (None: it installs none), so a checkout need not await.
    checkout_quiet: Callable[[Any], bool] | None = None

    @property
    def name(self) -> str:
        return f"{self.backend}+{self.driver}"


# -- SQLite (pysqlite) ---------------------------------------------------------------


def sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """``PoolEvents.connect`` for SQLite: the settings dal's connections run with."""
    # WAL lets readers run while a writer commits; foreign keys are off by default
    # in SQLite; NORMAL sync is durable across application crashes under WAL.
    cursor = dbapi_connection.cursor()
    try:
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _sqlite_check() -> None:
    if sqlite3.sqlite_version_info < _MIN_SQLITE:
        raise ConfigError(f"SQLite {sqlite3.sqlite_version} is too old; dal needs 3.35 or newer")


def _sqlite_args(settings: Settings) -> dict[str, Any]:
    return {
        "check_same_thread": False,  # pooled connections move between threads
        # busy timeout while another writer holds the lock; None: as long as sqlite3 allows
        "timeout": _SQLITE_FOREVER if settings.pool_timeout is None else settings.pool_timeout,
    }


def _sqlite_in_transaction(dbapi_connection: Any) -> bool:
    return bool(dbapi_connection.in_transaction)


# pysqlite never begins a transaction for a SELECT: a read is one round trip as it is.
SQLITE = Driver(
    backend="sqlite",
    driver="pysqlite",
    in_transaction=_sqlite_in_transaction,
    commits_when_read=True,
    on_connect=sqlite_pragmas,
    connect_args=_sqlite_args,
    check=_sqlite_check,
)


# -- PostgreSQL (psycopg2) -------------------------------------------------------------


def _pg_in_transaction(dbapi_connection: Any) -> bool:
    import psycopg2.extensions

    if dbapi_connection.closed:  # whatever was open is gone
        return False
    status = dbapi_connection.info.transaction_status
    return bool(status != psycopg2.extensions.TRANSACTION_STATUS_IDLE)


@contextmanager
def _pg_autocommit(connection: PoolProxiedConnection) -> Iterator[None]:
    """psycopg2 sends BEGIN before the first statement and the pool sends ROLLBACK on
    return; its client-side ``autocommit`` flag avoids both. (SQLAlchemy's AUTOCOMMIT
    isolation level would cost a ``SET default_transaction_isolation`` on every
    return instead.)"""
    dbapi_connection = connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.autocommit = True
    try:
        yield
    finally:
        # A connection dropped by the read is already closed and discarded.
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = False


POSTGRESQL_PSYCOPG2 = Driver(
    backend="postgresql",
    driver="psycopg2",
    in_transaction=_pg_in_transaction,
    read_mode=_pg_autocommit,
)


# -- MySQL / MariaDB (PyMySQL, mysqlclient): see dal.drivers.mysql ------------------------


def _mysql(
    driver: str,
    client: mysql.Client,
    check: Callable[[], None],
    on_connect: Callable[[Any, Any], None] | None = None,
    is_async: bool = False,
    raw_cursor: Callable[[Any], Any] | None = None,
) -> Driver:
    """A MySQL entry: its reads and transactions steered by ``client``'s status probe."""
    return Driver(
        backend="mysql",
        driver=driver,
        in_transaction=client.in_transaction,
        read_mode=client.read_mode,
        on_connect=on_connect,
        connect_args=mysql.connect_args,
        check=check,
        rollback_when_idle=False,
        setup=client.setup,
        is_async=is_async,
        raw_cursor=raw_cursor,
        checkout_quiet=client.checkout_quiet,
    )


MYSQL_PYMYSQL = _mysql("pymysql", mysql.PYMYSQL, mysql.require_pymysql)
# mysqlclient tells whether a transaction is open only through MariaDB Connector/C.
MYSQL_MYSQLDB = _mysql("mysqldb", mysqldb.MYSQLDB, mysqldb.check, mysqldb.check_connection)


# -- asyncio adapters, for AsyncDatabase: see dal.drivers.adapters ----------------------


def _aiosqlite_check() -> None:
    _sqlite_check()
    adapters.requires("aiosqlite")()


# The adapter reads every row at execute, so an autocommit RETURNING write has
# committed by the time its statement's events run: no need to read it early.
SQLITE_AIOSQLITE = Driver(
    backend="sqlite",
    driver="aiosqlite",
    in_transaction=adapters.aiosqlite_in_transaction,
    on_connect=sqlite_pragmas,
    connect_args=_sqlite_args,
    check=_aiosqlite_check,
    rollback_when_idle=False,  # each ROLLBACK is a hop to aiosqlite's thread
    is_async=True,
    raw_cursor=adapters.AiosqliteCursor,
)

POSTGRESQL_ASYNCPG = Driver(
    backend="postgresql",
    driver="asyncpg",
    in_transaction=adapters.asyncpg_in_transaction,
    read_mode=adapters.asyncpg_autocommit,
    check=adapters.requires("asyncpg"),
    is_async=True,
    raw_cursor=adapters.AsyncpgCursor,
)


# SQLAlchemy's asyncmy adapter, steered as PyMySQL is (asyncmy measured faster than
# aiomysql, which would be one more entry like this one).
MYSQL_ASYNCMY = _mysql(
    "asyncmy",
    adapters.ASYNCMY,
    adapters.requires("asyncmy"),
    is_async=True,
    raw_cursor=adapters.AsyncmyCursor,
)


# -- the table -----------------------------------------------------------------------

#: Every supported driver; the first entry of a backend (sync or async) is the one a
#: URL without a driver gets.
DRIVERS: tuple[Driver, ...] = (
    SQLITE,
    POSTGRESQL_PSYCOPG2,
    MYSQL_PYMYSQL,
    MYSQL_MYSQLDB,
    SQLITE_AIOSQLITE,
    POSTGRESQL_ASYNCPG,
    MYSQL_ASYNCMY,
)


def lookup(backend: str, driver: str) -> Driver | None:
    """The entry for ``backend+driver``, or None if dal does not support it."""
    for entry in DRIVERS:
        if entry.backend == backend and entry.driver == driver:
            return entry
    return None


def default_driver(backend: str, *, is_async: bool = False) -> str | None:
    """The driver a URL that names none gets for ``backend``, or None if unsupported."""
    for entry in DRIVERS:
        if entry.backend == backend and entry.is_async == is_async:
            return entry.driver
    return None


def supported(*, is_async: bool = False) -> dict[str, tuple[str, ...]]:
    """backend -> its supported drivers, the default first."""
    table: dict[str, tuple[str, ...]] = {}
    for entry in DRIVERS:
        if entry.is_async == is_async:
            table[entry.backend] = (*table.get(entry.backend, ()), entry.driver)
    return table
