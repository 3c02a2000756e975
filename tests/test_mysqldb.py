"""mysqlclient (``mysql+mysqldb``): the entry's own probe and its refusals.

test_mysql.py and test_drivers.py run every MySQL entry test on this driver too; here
is what only this entry has: the server status read through MariaDB Connector/C,
checked against mysqlclient's own autocommit flag, and the ConfigErrors that name
PyMySQL when mysqlclient cannot keep dal's promises.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

import dal
from dal.drivers import mysqldb
from tests.models import Users

pytestmark = pytest.mark.mysql


@pytest.fixture
def native(mysqldb_url: str) -> Iterator[Any]:
    """A plain mysqlclient connection to the test database, in autocommit."""
    import MySQLdb
    from sqlalchemy.engine import make_url

    url = make_url(mysqldb_url)
    conn = MySQLdb.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database or "",
        autocommit=True,
    )
    try:
        yield conn
    finally:
        if conn.open:  # a test may have closed it
            conn.close()


def _run(conn: Any, sql: str) -> None:
    cursor = conn.cursor()
    cursor.execute(sql)
    cursor.fetchall()
    cursor.close()


def test_the_status_follows_the_servers_replies_result_sets_included(native: Any) -> None:
    probe = mysqldb.MYSQLDB.in_transaction
    assert not probe(native)
    native.begin()
    assert probe(native)
    _run(native, "SELECT 1")  # a result set, not an OK packet
    assert probe(native)
    _run(native, "CREATE TABLE dal_probe (x INT)")  # commits implicitly
    assert not probe(native)
    _run(native, "DROP TABLE dal_probe")
    native.begin()
    native.rollback()
    assert not probe(native)
    native.autocommit(False)  # any statement may open a transaction now
    assert probe(native)
    native.autocommit(True)
    assert not probe(native)


def test_a_closed_connection_has_no_status_and_no_transaction(native: Any) -> None:
    native.begin()
    native.close()
    assert mysqldb.server_status(native) is None
    assert not mysqldb.MYSQLDB.in_transaction(native)


def test_a_status_that_disagrees_with_the_autocommit_flag_is_refused_at_connect(
    mysqldb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a client library whose status field is not what mysqlclient reads would give.
    monkeypatch.setattr(mysqldb, "server_status", lambda connection: 0)
    with dal.Database(mysqldb_url) as db:
        with pytest.raises(dal.ConfigError, match=r"mysql\+pymysql"):
            Users(db).get(1)
        assert db.stats()["pool"]["checked_out"] == 0


def test_a_client_library_without_the_status_call_is_refused_naming_pymysql(
    mysqldb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def libmysqlclient() -> Any:
        raise AttributeError("mariadb_get_info")  # as ctypes says of MySQL's libmysqlclient

    monkeypatch.setattr(mysqldb, "_library", libmysqlclient)
    with pytest.raises(dal.ConfigError, match="MariaDB Connector/C") as raised:
        dal.Database(mysqldb_url)
    assert "mysql+pymysql" in str(raised.value) and isinstance(raised.value, ValueError)
    assert isinstance(raised.value.__cause__, AttributeError)


def test_a_mysqlclient_older_than_2_1_is_refused(
    mysqldb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import MySQLdb

    monkeypatch.setattr(MySQLdb, "version_info", (2, 0, 3, "final", 0))
    with pytest.raises(dal.ConfigError, match=r"mysqlclient 2\.0\.3 is too old"):
        dal.Database(mysqldb_url)


def test_without_mysqlclient_the_error_says_what_to_install(
    mysqldb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    with pytest.raises(dal.ConfigError) as raised:
        dal.Database(mysqldb_url)
    message = str(raised.value)
    assert "sqlalchemy-dal[mysqlclient]" in message and "libmariadb-dev" in message
    assert "mysql+pymysql" in message


def test_the_url_runs_on_mysqlclient_in_autocommit(mysqldb_url: str) -> None:
    with dal.Database(mysqldb_url) as db, db.engine.connect() as conn:
        module = type(conn.connection.dbapi_connection).__module__
        assert module.startswith("MySQLdb.")
        assert conn.scalar(text("SELECT @@autocommit")) == 1  # connected in autocommit
