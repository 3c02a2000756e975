"""MariaDB/MySQL: what differs from the other backends, checked on the real server.

The contract suite runs on MariaDB too (``db_url``'s ``mysql`` run); these tests cover
what only this backend has: autocommit reads counted by the server itself, snapshots,
no UPDATE RETURNING, implicit commits, KILLed connections, supported versions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url

import dal
from dal.drivers import mysql as mysql_backend
from tests import mysqlserver
from tests.conftest import MYSQL_DRIVERS, with_mysql_driver
from tests.models import User, Users
from tests.sqllog import StatementLog

pytestmark = pytest.mark.mysql

#: Everything here is what a MySQL driver entry does itself: each test runs on each driver.
DRIVERS = list(MYSQL_DRIVERS)

users_table: Any = User.__table__

#: Per-session server counters that tell what one connection sent.
COUNTERS = ("Questions", "Com_select", "Com_begin", "Com_commit", "Com_rollback")


@pytest.fixture(params=DRIVERS)
def mysql_url(request: pytest.FixtureRequest, mysql_url: str) -> str:
    """The session's test database, on each MySQL driver in turn."""
    return with_mysql_driver(mysql_url, request.param)


@pytest.fixture
def make_db(mysql_db: dal.Database) -> Iterator[Callable[..., dal.Database]]:
    """More Databases on the test's MariaDB database (tables made), closed after the test."""
    opened: list[dal.Database] = []

    def make(**settings: Any) -> dal.Database:
        other = dal.Database(mysql_db.settings.url, **settings)
        opened.append(other)
        return other

    yield make
    for other in opened:
        assert other.stats()["pool"]["checked_out"] == 0
        other.close()


@pytest.fixture
def admin(mysql_url: str) -> Iterator[Any]:
    """A plain PyMySQL connection beside the pool, in autocommit."""
    conn = mysqlserver.connect(mysql_url)
    try:
        yield conn
    finally:
        conn.close()


def _session_counters(db: dal.Database) -> tuple[int, dict[str, int]]:
    """The pooled connection's id and its own counters (read on that connection)."""
    pooled = db.engine.raw_connection()
    try:
        cursor = pooled.dbapi_connection.cursor()
        names = ", ".join(f"'{n.upper()}'" for n in COUNTERS)
        cursor.execute(
            "SELECT CONNECTION_ID(), VARIABLE_NAME, VARIABLE_VALUE"
            f" FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME IN ({names})"
        )
        rows = cursor.fetchall()
        cursor.close()
    finally:
        pooled.close()
    by_name = {name.upper(): name for name in COUNTERS}
    return rows[0][0], {by_name[name]: int(value) for _, name, value in rows}


def _sent_by(db: dal.Database, action: Callable[[], object]) -> dict[str, int]:
    """What ``action`` sent on ``db``'s one pooled connection, by the server's counters."""
    first, before = _session_counters(db)
    _, probe = _session_counters(db)  # what reading the counters costs by itself
    action()
    last, after = _session_counters(db)
    assert first == last, "the pool changed connections: the counts would mean nothing"
    return {n: after[n] - probe[n] - (probe[n] - before[n]) for n in COUNTERS}


# --- one round trip per miss, counted by the server -------------------------------------


def test_a_miss_is_one_statement_on_the_server(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database]
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="A").id
    db = make_db(pool_size=1, max_overflow=0)
    users = Users(db)
    users.get(pk + 1)  # connect, and prepare the result processors

    sent = _sent_by(db, lambda: users.get(pk))

    assert sent == {"Questions": 1, "Com_select": 1, "Com_begin": 0, "Com_commit": 0,
                    "Com_rollback": 0}  # fmt: skip
    assert users.get(pk) is not None and users.cache_info().hits == 1


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda users, pk: users.find(name="A"), id="find"),
        pytest.param(lambda users, pk: users.get_many([pk, pk + 1]), id="get_many"),
        pytest.param(lambda users, pk: users.find_one(email="a@example.com"), id="find_one"),
    ],
)
def test_other_misses_are_one_statement_too(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], read: Any
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="A").id
    db = make_db(pool_size=1, max_overflow=0)
    users = Users(db)
    users.get(pk + 1)

    sent = _sent_by(db, lambda: read(users, pk))

    assert (sent["Questions"], sent["Com_select"]) == (1, 1)


def test_a_cached_query_miss_is_one_statement(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database]
) -> None:
    Users(mysql_db).add(email="a@example.com", name="A")
    db = make_db(pool_size=1, max_overflow=0)

    @dal.cached_query(db, depends_on=[User])
    def names(session: Any) -> list[str]:
        return list(session.scalars(select(User.name)))

    Users(db).get(404)

    sent = _sent_by(db, names)

    assert (sent["Questions"], sent["Com_select"]) == (1, 1)
    assert names() == ["A"]


def test_a_transaction_begins_explicitly_and_ends_once(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database]
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="A").id
    db = make_db(pool_size=1, max_overflow=0)
    users = Users(db)
    users.update(pk, name="warm")  # what dal reads from the catalog once, read now

    sent = _sent_by(db, lambda: users.update(pk, name="B"))

    # BEGIN, UPDATE, the updated row's SELECT, COMMIT: no UPDATE ... RETURNING here.
    assert sent == {"Questions": 4, "Com_select": 1, "Com_begin": 1, "Com_commit": 1,
                    "Com_rollback": 0}  # fmt: skip


# --- snapshots ---------------------------------------------------------------------------


def test_a_fill_never_reads_inside_a_returned_connections_old_snapshot(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="old").id
    db = make_db(pool_size=1, max_overflow=0)
    # A caller reads on the one pooled connection: REPEATABLE READ fixes its snapshot.
    with db.engine.connect() as conn:
        assert conn.scalar(select(User.name).where(User.id == pk)) == "old"
    # Another client commits a newer row after that snapshot was taken.
    with admin.cursor() as cur:
        cur.execute("UPDATE users SET name = 'new' WHERE id = %s", (pk,))

    # The miss runs on the same connection, and sees the committed row.
    assert Users(db).get(pk).name == "new"


def test_a_fill_after_an_isolation_level_change_reads_the_latest_commit(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="old").id
    db = make_db(pool_size=1, max_overflow=0)
    with db.engine.connect().execution_options(isolation_level="SERIALIZABLE") as conn:
        assert conn.scalar(select(User.name).where(User.id == pk)) == "old"
    with admin.cursor() as cur:
        cur.execute("UPDATE users SET name = 'new' WHERE id = %s", (pk,))

    assert Users(db).get(pk).name == "new"
    with db.engine.connect() as conn:  # and the connection is back in autocommit
        assert conn.scalar(text("SELECT @@autocommit")) == 1


# --- writes without UPDATE ... RETURNING ----------------------------------------------------


@pytest.fixture
def no_returning(make_db: Callable[..., dal.Database]) -> dal.Database:
    """A Database whose dialect reports no RETURNING at all: what MySQL 8 runs."""
    db = make_db()
    with db.engine.connect():  # the dialect learns the server's capabilities on connect
        pass
    dialect = db.engine.dialect
    dialect.insert_returning = dialect.delete_returning = False
    if not isinstance(getattr(type(dialect), "insert_executemany_returning", None), property):
        dialect.insert_executemany_returning = False  # a property of the above in 2.0.0
    assert not (dialect.update_returning or dialect.insert_executemany_returning)
    return db


def test_add_without_returning_reads_the_row_back_in_its_transaction(
    no_returning: dal.Database,
) -> None:
    users = Users(no_returning)
    users.add(email="warm@example.com", name="W")  # what dal reads from the catalog once
    log = StatementLog(no_returning.engine).attach()
    try:
        added = users.add(email="a@example.com", name="A")
    finally:
        log.detach()

    assert added == users.get(added.id) and added.balance == 0  # a server default, read back
    sent = [s.split()[0].upper() for s in log.all]
    assert sent == ["BEGIN", "INSERT", "SELECT", "COMMIT"]


def test_update_counts_matched_rows_not_changed_ones(mysql_db: dal.Database) -> None:
    users = Users(mysql_db)
    pk = users.add(email="a@example.com", name="same").id

    # CLIENT.FOUND_ROWS: an UPDATE that changes nothing still matched the row.
    assert users.update(pk, name="same").name == "same"
    with mysql_db.engine.begin() as conn:
        statement = update(users_table).where(users_table.c.id == pk).values(name="same")
        assert conn.execute(statement).rowcount == 1
    with pytest.raises(dal.NotFoundError):
        users.update(pk + 1, name="none")


def test_update_that_moves_the_primary_key_returns_the_moved_row(mysql_db: dal.Database) -> None:
    users = Users(mysql_db)
    pk = users.add(email="a@example.com", name="A").id
    assert users.get(pk + 10) is None  # a cached absence the move must clear

    moved = users.update(pk, id=pk + 10, name="moved")

    assert (moved.id, moved.name) == (pk + 10, "moved")
    assert users.get(pk) is None and users.get(pk + 10) == moved


def test_multi_row_insert_without_returning_clears_the_absences(
    no_returning: dal.Database,
) -> None:
    users = Users(no_returning)
    first = users.add(email="first@example.com", name="first").id
    # Cached absences of the ids the next rows will get (lastrowid would name only
    # the first of them; ids may also have gaps).
    assert [users.get(first + i) for i in (1, 2, 3)] == [None, None, None]

    with no_returning.engine.begin() as conn:
        conn.execute(
            insert(users_table), [{"email": f"u{i}@example.com", "name": "n"} for i in range(3)]
        )

    found = users.get_many([first + 1, first + 2, first + 3])
    assert sorted(found) == [first + 1, first + 2, first + 3]


def test_mariadb_returning_gives_exact_keys_of_a_multi_row_insert(
    mysql_db: dal.Database,
) -> None:
    users = Users(mysql_db)
    first = users.add(email="first@example.com", name="first").id
    if not mysql_db.engine.dialect.is_mariadb:  # known once connected
        pytest.skip("INSERT ... RETURNING is MariaDB's")
    cached = users.get(first)
    assert users.get(first + 1) is None

    with mysql_db.engine.begin() as conn:
        result = conn.execute(
            insert(users_table).returning(users_table.c.id),
            [{"email": f"u{i}@example.com", "name": "n"} for i in range(2)],
        )
        ids = sorted(result.scalars())
        try:  # SQLAlchemy 2.0.0 reports no keys for an executemany with RETURNING
            reported = {tuple(row) for row in result.inserted_primary_key_rows}
        except Exception:
            reported = set()

    assert users.get(ids[0]) is not None
    if reported == {(i,) for i in ids}:
        # Exact keys: the cached row of another key stayed.
        assert users.get(first) is cached


# --- implicit commits ---------------------------------------------------------------------


def test_statements_after_an_implicit_commit_still_roll_back(mysql_db: dal.Database) -> None:
    users = Users(mysql_db)
    assert users.get(1) is None and users.get(2) is None

    with pytest.raises(RuntimeError), mysql_db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=1, email="a@example.com", name="A"))
        conn.execute(text("CREATE TABLE dal_implicit (x INT)"))  # commits implicitly
        conn.execute(insert(users_table).values(id=2, email="b@example.com", name="B"))
        raise RuntimeError("roll back")

    with mysql_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE dal_implicit"))
    # The DDL committed row 1, as MySQL does; row 2 was rolled back with the transaction.
    assert users.get(1) is not None
    assert users.get(2) is None
    with mysql_db.engine.connect() as conn:
        assert conn.scalar(select(User.id).where(User.id == 2)) is None


# --- errors and recovery -------------------------------------------------------------------


def _connection_id(db: dal.Database) -> int:
    return _session_counters(db)[0]


@pytest.mark.parametrize("read", ["get", "find"])
def test_a_killed_connection_costs_a_read_one_retry(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any, read: str
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="A").id
    db = make_db(pool_size=1, max_overflow=0)
    users = Users(db)
    users.get(404)
    with admin.cursor() as cur:
        cur.execute(f"KILL {_connection_id(db)}")  # this test's own pooled connection

    found = users.get(pk) if read == "get" else users.find(id=pk)[0]

    assert found.name == "A"
    pool = db.stats()["pool"]
    assert (pool["retries"], pool["disconnects"]) == (1, 1)


def _one_row(db: dal.Database) -> tuple[dal.Database, Users, int]:
    users = Users(db)
    return db, users, users.add(email="a@example.com", name="A").id


def _kill(admin: Any, *session_ids: int) -> None:
    with admin.cursor() as cur:
        for session_id in session_ids:
            cur.execute(f"KILL {int(session_id)}")


def test_a_restart_costs_the_first_read_one_retry_and_the_next_reads_none(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any
) -> None:
    db, users, pk = _one_row(make_db(pool_size=3, max_overflow=0))
    held = [db.engine.connect() for _ in range(3)]
    ids = [conn.scalar(text("SELECT CONNECTION_ID()")) for conn in held]
    for conn in held:
        conn.close()
    _kill(admin, *ids)  # every pooled connection ends, as in a server restart

    assert users.get(pk).name == "A"
    assert users.find(id=pk)[0].name == "A" and users.get_many([pk + 1]) == {}
    assert users.update(pk, name="B").name == "B"  # a write after it meets no dead one
    assert db.stats()["pool"]["retries"] == 1


def test_a_connection_killed_while_an_isolation_level_left_it_in_autocommit_0_is_replaced(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any
) -> None:
    db, users, pk = _one_row(make_db(pool_size=1, max_overflow=0))
    with db.engine.connect().execution_options(isolation_level="SERIALIZABLE") as conn:
        killed = conn.scalar(text("SELECT CONNECTION_ID()"))
    # Back in the pool in autocommit=0 (SQLAlchemy's reset), then the server ends it.
    _kill(admin, killed)

    assert users.get(pk).name == "A"  # not the driver's raw "Lost connection"
    pool = db.stats()["pool"]
    # Replaced at its checkout, before the read: the read itself never failed.
    assert (pool["disconnects"], pool["retries"]) == (1, 0)
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT @@autocommit")) == 1


def test_a_write_on_a_killed_connection_is_a_database_error(
    mysql_db: dal.Database, make_db: Callable[..., dal.Database], admin: Any
) -> None:
    pk = Users(mysql_db).add(email="a@example.com", name="A").id
    db = make_db(pool_size=1, max_overflow=0)
    users = Users(db)
    users.get(404)
    with admin.cursor() as cur:
        cur.execute(f"KILL {_connection_id(db)}")

    with pytest.raises(dal.DatabaseError) as raised:  # writes are not retried
        users.update(pk, name="B")
    assert raised.value.__cause__ is not None
    assert users.update(pk, name="C").name == "C"  # the dead connection was discarded


@pytest.mark.parametrize(
    ("code", "message"),
    [(2006, "MySQL server has gone away"), (2013, "Lost connection to MySQL server")],
)
def test_lost_connection_errors_count_as_disconnects(
    mysql_db: dal.Database, code: int, message: str
) -> None:
    dialect = mysql_db.engine.dialect
    error = dialect.loaded_dbapi.OperationalError(code, message)  # the driver's own class
    assert dialect.is_disconnect(error, None, None)


def test_duplicate_key_is_an_integrity_error(mysql_db: dal.Database) -> None:
    users = Users(mysql_db)
    users.add(id=1, email="a@example.com", name="A")

    with pytest.raises(dal.IntegrityError) as raised:
        users.add(id=1, email="b@example.com", name="B")

    assert isinstance(raised.value, ValueError)
    assert "Duplicate entry" in str(raised.value)
    assert raised.value.__cause__ is not None


# --- settings ------------------------------------------------------------------------------


def test_a_url_without_a_driver_gets_pymysql(mysql_db: dal.Database, mysql_url: str) -> None:
    bare = make_url(mysql_url).set(drivername="mysql").render_as_string(hide_password=False)
    with dal.Database(bare) as db:
        assert db.settings.url.drivername == "mysql+pymysql"
        assert Users(db).get(1) is None


def test_the_postgres_bus_on_mysql_is_a_config_error(mysql_url: str) -> None:
    with pytest.raises(dal.ConfigError, match="LISTEN/NOTIFY"):
        dal.Database(mysql_url, invalidation="postgres")


def test_a_missing_driver_is_a_config_error_saying_what_to_install(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    driver = make_url(mysql_url).get_driver_name()
    monkeypatch.setitem(sys.modules, MYSQL_DRIVERS[driver], None)  # as if not installed
    extra = {"pymysql": "mysql", "mysqldb": "mysqlclient"}[driver]
    with pytest.raises(dal.ConfigError, match=rf"dal\[{extra}\]"):
        dal.Database(mysql_url)


@pytest.mark.parametrize(
    ("mariadb", "version", "refused"),
    [
        (False, (5, 7, 44), True),
        (False, (8, 0, 36), False),
        (True, (10, 4, 34), True),
        (True, (10, 5, 0), False),
        (True, (11, 4, 2, "MariaDB"), False),
        (False, None, True),
    ],
)
def test_server_versions_below_the_supported_ones_are_refused(
    mariadb: bool, version: tuple[Any, ...] | None, refused: bool
) -> None:
    dialect = SimpleNamespace(is_mariadb=mariadb, server_version_info=version)
    if refused:
        with pytest.raises(dal.ConfigError, match="too old"):
            mysql_backend.check_version(dialect)
    else:
        mysql_backend.check_version(dialect)


def test_pool_timeout_none_waits_as_long_as_it_takes(
    make_db: Callable[..., dal.Database],
) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=None)
    assert db.engine.pool.timeout() is None  # type: ignore[attr-defined]
    held = db.engine.connect()
    waiting = threading.Event()
    done: list[object] = []

    def reader() -> None:
        waiting.set()
        done.append(Users(db).get(1))

    thread = threading.Thread(target=reader)
    thread.start()
    waiting.wait()
    held.close()
    thread.join(30)
    assert done == [None]
    assert "pool_timeout=None" in db.settings.pool_limits


def test_an_insert_of_id_zero_takes_the_next_auto_increment_and_is_seen(
    mysql_db: dal.Database,
) -> None:
    users = Users(mysql_db)
    assert users.get(1) is None  # a cached absence

    # MySQL stores the next AUTO_INCREMENT value for an id of 0 (unless sql_mode has
    # NO_AUTO_VALUE_ON_ZERO): the key in the statement is not the row's key.
    with mysql_db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=0, email="a@example.com", name="A"))

    assert users.get(1) is not None
