"""mysqlclient (``mysql+mysqldb``): the server status of the last reply, without a round trip.

dal's MySQL reads and transactions (``dal.drivers.mysql``) steer by two flags of the
server status every reply carries: autocommit and "a transaction is open". PyMySQL
keeps that status as ``server_status``. mysqlclient exposes only the autocommit flag
(``get_autocommit``), but its C client library keeps the whole status in its
``MYSQL`` handle, and MariaDB Connector/C hands it out with
``mariadb_get_info(MARIADB_CONNECTION_SERVER_STATUS)``. mysqlclient gives the handle
through ``_get_native_connection()``, a capsule it made for XTA (LIXA). So this
entry needs mysqlclient built against MariaDB Connector/C; MySQL's libmysqlclient has
no such call, and without it a write in autocommit could not be told from one inside
a transaction (``check`` refuses it, naming PyMySQL instead). Each connection checks
the probe once, at connect, against ``get_autocommit``, which reads the same field.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
from typing import Any

from ..errors import ConfigError
from .mysql import AUTOCOMMIT, Client

__all__ = ["MYSQLDB", "check", "check_connection", "server_status"]

MIN_VERSION = (2, 1)
#: ``enum mariadb_value`` in Connector/C's mysql.h (stable: values are only appended).
_SERVER_STATUS = 30
_CAPSULE = b"_mysql.connection.native_connection"

_USE_PYMYSQL = "or use mysql+pymysql:// (pip install 'sqlalchemy-dal[mysql]')"


def check() -> None:
    """Raise ConfigError unless mysqlclient is installed and can report the status."""
    try:
        mysqldb = importlib.import_module("MySQLdb")
    except ImportError as exc:
        raise ConfigError(
            "mysql+mysqldb URLs need the mysqlclient package, which is not installed: "
            "pip install 'sqlalchemy-dal[mysqlclient]' (it builds against the MySQL or "
            f"MariaDB client headers; Debian: libmariadb-dev and pkg-config), {_USE_PYMYSQL}"
        ) from exc
    version = tuple(mysqldb.version_info[:3])
    if version[:2] < MIN_VERSION:
        shown = ".".join(map(str, version))
        raise ConfigError(f"mysqlclient {shown} is too old; dal needs 2.1 or newer, {_USE_PYMYSQL}")
    try:
        _library()
    except (AttributeError, OSError) as exc:
        raise ConfigError(
            "this mysqlclient cannot report whether a transaction is open (dal reads it "
            "through MariaDB Connector/C's mariadb_get_info, which the client library "
            "mysqlclient was built against lacks): build mysqlclient against MariaDB "
            f"Connector/C (Debian: libmariadb-dev), {_USE_PYMYSQL}"
        ) from exc


@functools.cache
def _library() -> tuple[Any, Any]:
    """Connector/C's ``mariadb_get_info`` as mysqlclient links it, and the capsule reader."""
    native = importlib.import_module("MySQLdb._mysql")
    if not hasattr(native.connection, "_get_native_connection"):
        raise AttributeError("MySQLdb._mysql.connection has no _get_native_connection")
    # The extension's own handle: the symbol resolves in the library it was linked to.
    get_info = ctypes.CDLL(native.__file__).mariadb_get_info
    get_info.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    get_info.restype = ctypes.c_char
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    pointer.restype = ctypes.c_void_p
    return get_info, pointer


def server_status(dbapi_connection: Any) -> int | None:
    """The status flags of the last reply on the connection; None once it is closed."""
    get_info, pointer = _library()
    try:
        capsule = dbapi_connection._get_native_connection()
    except dbapi_connection.Error:  # closed: mysqlclient refuses the handle
        return None
    status = ctypes.c_uint()
    if get_info(pointer(capsule, _CAPSULE), _SERVER_STATUS, ctypes.byref(status)) != b"\x00":
        return None
    return status.value


def check_connection(dbapi_connection: Any, record: Any) -> None:
    """``PoolEvents.connect``: the probe must read what ``get_autocommit`` reads."""
    status = server_status(dbapi_connection)
    if status is None or bool(status & AUTOCOMMIT) != dbapi_connection.get_autocommit():
        raise ConfigError(
            "mysqlclient's client library reports a server status that disagrees with "
            f"its autocommit flag ({status!r}): dal cannot tell whether a transaction is "
            f"open, {_USE_PYMYSQL}"
        )


#: dal's reads and transactions on mysqlclient, as on PyMySQL (``dal.drivers.mysql``).
MYSQLDB = Client(server_status)
