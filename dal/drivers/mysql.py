"""MariaDB and MySQL: supported servers, and how dal's pooled connections read and begin.

InnoDB's default REPEATABLE READ fixes a transaction's snapshot at its first read, and
with ``autocommit=0`` every statement, a SELECT too, opens a transaction that lasts
until COMMIT or ROLLBACK. A cache fill that read inside such an old snapshot could
store a row that a later commit already replaced. So dal keeps its pooled
connections in the server's autocommit mode while they are idle:

- a miss is one SELECT in autocommit, its own fresh snapshot: no BEGIN before it and
  no ROLLBACK when the connection goes back to the pool (the return is skipped while
  no transaction is open, which the server reports in every OK packet; a ``Client``
  reads it from one driver, without a round trip);
- a SQLAlchemy transaction (ORM session, ``engine.begin()``, a repository write) starts
  with an explicit ``BEGIN``, one round trip, as psycopg2's BEGIN is on PostgreSQL;
- a statement that commits implicitly (DDL, ``TRUNCATE``, ``LOCK TABLES``) ends the
  BEGIN; dal begins again after it, so what follows still rolls back with the
  transaction, as it would with ``autocommit=0``;
- ``isolation_level="AUTOCOMMIT"`` (an execution option) sends no BEGIN; another level
  puts the connection in ``autocommit=0`` as SQLAlchemy's dialect does, and its next
  checkout puts it back (one ``SET AUTOCOMMIT``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError

from ..errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..config import Settings

__all__ = [
    "AUTOCOMMIT",
    "MIN_MARIADB",
    "MIN_MYSQL",
    "PYMYSQL",
    "Client",
    "check_version",
    "connect_args",
    "mark_begin",
    "pymysql_status",
    "require_pymysql",
]

MIN_MYSQL = (8, 0)
#: INSERT ... RETURNING (dal's adds), and the versions still maintained.
MIN_MARIADB = (10, 5)

# The server's status flags (MySQL protocol, include/mysql_com.h).
_IN_TRANS = 0x0001
AUTOCOMMIT = 0x0002

#: Keys in the pool's per-connection ``info`` dict.
_READING = "dal_mysql_reading"
_BEGIN = "dal_mysql_begin"


def require_pymysql() -> None:
    """Import PyMySQL now, so a missing one is a ConfigError that says what to install."""
    try:
        importlib.import_module("pymysql")
    except ImportError as exc:
        raise ConfigError(
            "mysql+pymysql URLs need the PyMySQL package, which is not installed: "
            "pip install 'sqlalchemy-dal[mysql]'"
        ) from exc


def connect_args(settings: Settings) -> dict[str, Any]:
    """PyMySQL and mysqlclient send ``SET AUTOCOMMIT = 0`` on connect unless told otherwise."""
    return {"autocommit": True}


def check_version(dialect: Any) -> None:
    """Refuse servers older than MySQL 8.0 / MariaDB 10.5 (called at first connect)."""
    version = tuple(v for v in dialect.server_version_info or () if isinstance(v, int))
    name, minimum = ("MariaDB", MIN_MARIADB) if dialect.is_mariadb else ("MySQL", MIN_MYSQL)
    if version < minimum:
        shown = ".".join(map(str, version)) or "unknown"
        raise ConfigError(
            f"{name} {shown} is too old; dal needs {name} {'.'.join(map(str, minimum))} or newer"
        )


def pymysql_status(dbapi_connection: Any) -> int | None:
    """PyMySQL keeps the status of the last OK packet as ``server_status``; None: closed."""
    if getattr(dbapi_connection, "_sock", True) is None:
        return None
    status = getattr(dbapi_connection, "server_status", None)
    return AUTOCOMMIT if status is None else int(status)


def mark_begin(conn: Any) -> None:
    """``ConnectionEvents.begin``: whether this transaction needs an explicit BEGIN.

    Decided here because only the Connection knows its execution options; the BEGIN
    itself is sent in ``do_begin``, where SQLAlchemy translates a failure.
    """
    info = conn.connection.info
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    info[_BEGIN] = not (autocommit or info.get(_READING))


class Client:
    """dal's reads and transactions on one MySQL driver, steered by the server status
    of the connection's last reply (``status``: its flags, None once closed), which
    the driver must give without a round trip."""

    def __init__(
        self,
        status: Callable[[Any], int | None],
        begin: Callable[[Any], None] = lambda dbapi_connection: dbapi_connection.begin(),
    ) -> None:
        self.status = status
        #: Sends BEGIN on the DBAPI connection (an async adapter awaits its driver's).
        self.send_begin = begin

    def in_transaction(self, dbapi_connection: Any) -> bool:
        """Whether a transaction may be open on the connection (no round trip).

        PyMySQL updates the status from OK packets only, not after a result set; but
        a result set cannot end a transaction, and in autocommit mode it cannot start
        one. Outside autocommit any statement may have started one, so the answer is yes.
        """
        status = self.status(dbapi_connection)
        if status is None:  # closed: whatever was open is gone
            return False
        return bool(status & _IN_TRANS) or not status & AUTOCOMMIT

    def checkout_quiet(self, dbapi_connection: Any) -> bool:
        """Whether ``checkout`` would leave the connection as it is (no round trip)."""
        status = self.status(dbapi_connection)
        return status is not None and bool(status & AUTOCOMMIT)

    def setup(self, engine: Engine) -> None:
        """The engine's MySQL listeners and its dialect's ``do_begin`` (after dal's own)."""
        dialect = engine.dialect
        # PoolEvents.connect runs after SQLAlchemy's first-connect initialize, which
        # reads the server version.
        event.listen(engine, "connect", lambda *_: check_version(dialect))
        event.listen(engine, "checkout", self.checkout)
        event.listen(engine, "begin", mark_begin)
        # After write tracking: what an implicit commit committed is applied first.
        event.listen(engine, "after_cursor_execute", self.after_statement)
        # An instance attribute shadows the class's method for this engine's dialect alone.
        dialect.do_begin = self.begin  # type: ignore[method-assign,assignment]

    def checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        """``PoolEvents.checkout``: connections leave the pool in autocommit, as they idle.

        One an isolation level left in ``autocommit=0`` is put back (one ``SET
        AUTOCOMMIT``). Here rather than at its next read: if it died meanwhile (a
        restart), the pool replaces it and every connection older than it, as it would
        after a failed ping, instead of the read failing with the driver's own error.
        """
        status = self.status(dbapi_connection)
        if status is None or status & AUTOCOMMIT:
            return
        try:
            dbapi_connection.autocommit(True)
        except Exception as exc:  # the driver's error (an async adapter's has no .Error)
            raise InvalidatePoolError(f"SET AUTOCOMMIT failed on checkout: {exc}") from exc

    def begin(self, pooled: Any) -> None:
        """``Dialect.do_begin``: send BEGIN if the connection is in autocommit mode."""
        try:
            info = pooled.info
        except NotImplementedError:  # the first connect's ad-hoc connection: no events ran
            return
        if info.pop(_BEGIN, False):
            dbapi_connection = pooled.dbapi_connection
            # A closed connection begins all the same: the driver's error says why.
            if (self.status(dbapi_connection) or AUTOCOMMIT) & AUTOCOMMIT:
                self.send_begin(dbapi_connection)

    def after_statement(self, conn: Any, cursor: Any, *args: Any) -> None:
        """``ConnectionEvents.after_cursor_execute``: begin again after an implicit commit.

        With ``autocommit=0`` the statements after a DDL would start a new transaction;
        with BEGIN they would each commit on their own. Registered after write tracking,
        so what the implicit commit committed is applied first.
        """
        if (
            not conn.in_transaction()
            or conn.connection.info.get(_READING)
            or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        ):
            return
        dbapi_connection = conn.connection.dbapi_connection
        status = None if dbapi_connection is None else self.status(dbapi_connection)
        if status is not None and status & AUTOCOMMIT and not status & _IN_TRANS:
            self.send_begin(dbapi_connection)

    @contextmanager
    def read_mode(self, pooled: Any) -> Iterator[None]:
        """A read in one round trip: in autocommit, with no BEGIN and no ROLLBACK around it."""
        info = pooled.info
        info[_READING] = True  # checked out in autocommit: no BEGIN for this read
        try:
            yield
        finally:
            info.pop(_READING, None)


#: PyMySQL (``mysql+pymysql``); mysqlclient's is ``dal.drivers.mysqldb.MYSQLDB``.
PYMYSQL = Client(pymysql_status)
