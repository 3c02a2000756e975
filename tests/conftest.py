"""Shared fixtures: database URLs for SQLite, PostgreSQL and MariaDB/MySQL, a ready
``dal.Database``, a SQL log.

Each server is found (or started) once per session, and only when a test asks for it:
tests on SQLite alone never touch a server. Without a server its tests are skipped,
except under ``CI=true`` or with ``$DAL_TEST_POSTGRES_URL`` / ``$DAL_TEST_MYSQL_URL``
set, where they fail.
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests import mysqlserver, pgserver, tables
from tests.sqllog import StatementLog

if TYPE_CHECKING:
    from dal import AsyncDatabase, Database

POSTGRES_FIXTURES = frozenset({"postgres_admin_url", "postgres_url", "pg_db", "pg_adb"})
MYSQL_FIXTURES = frozenset({"mysql_admin_url", "mysql_url", "mysqldb_url", "mysql_db"})

#: The MySQL drivers dal supports, with the module each imports. The contract suite runs
#: on the one ``$DAL_TEST_MYSQL_URL`` names (PyMySQL by default); the tests of what an
#: entry does itself (test_mysql.py, test_drivers.py) run on each.
MYSQL_DRIVERS = {"pymysql": "pymysql", "mysqldb": "MySQLdb"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a server ``postgres`` / ``mysql``, so ``-m 'not mysql'`` works."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if POSTGRES_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.postgres)
        if MYSQL_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.mysql)


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """SQLAlchemy URL of a database on a server where we may CREATE DATABASE."""
    try:
        url, cluster = pgserver.discover()
    except pgserver.PostgresNotFound as exc:
        message = (
            "no PostgreSQL server for the integration tests. Tried:\n"
            f"{exc}\n"
            "Provide one of:\n"
            f"  1. ${pgserver.ENV_URL}=postgresql://USER@HOST:PORT/DB"
            " (a user allowed to CREATE DATABASE);\n"
            "  2. a server on 127.0.0.1:5432 accepting user 'postgres' with trust auth;\n"
            "  3. PostgreSQL's initdb and pg_ctl on PATH or in /usr/lib/postgresql/*/bin,"
            " to start a throwaway cluster."
        )
        if pgserver.in_ci() or os.environ.get(pgserver.ENV_URL):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield url
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database, created for this session and dropped after it."""
    name = f"dal_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = pgserver.connect(postgres_admin_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    url = make_url(postgres_admin_url).set(drivername="postgresql+psycopg2", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        tables.forget(url.render_as_string(hide_password=False))
        admin = pgserver.connect(postgres_admin_url)
        try:
            with admin.cursor() as cur:
                # A listener or a leaked connection would make DROP DATABASE fail.
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            admin.close()


# --- MariaDB / MySQL ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mysql_admin_url() -> Iterator[str]:
    """SQLAlchemy URL (no database) of a MariaDB/MySQL server where we may CREATE DATABASE."""
    try:
        url, server = mysqlserver.discover()
    except mysqlserver.MysqlNotFound as exc:
        message = (
            "no MariaDB/MySQL server for the integration tests. Tried:\n"
            f"{exc}\n"
            "Provide one of:\n"
            f"  1. ${mysqlserver.ENV_URL}=mysql+pymysql://USER:PASSWORD@HOST:PORT/"
            " (a user allowed to CREATE DATABASE);\n"
            "  2. a server on 127.0.0.1:3306 accepting user 'root' without a password;\n"
            "  3. mariadb-install-db and mariadbd on PATH or in /usr/sbin,"
            " to start a throwaway server."
        )
        if mysqlserver.in_ci() or os.environ.get(mysqlserver.ENV_URL):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def mysql_url(mysql_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database, created for this session and dropped after it."""
    name = f"dal_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = mysqlserver.connect(mysql_admin_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        admin.close()
    driver = mysqlserver.driver()
    require_mysql_driver(driver)
    url = make_url(mysql_admin_url).set(drivername=f"mysql+{driver}", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        tables.forget(url.render_as_string(hide_password=False))
        admin = mysqlserver.connect(mysql_admin_url)
        try:
            # A leaked connection holding a metadata lock would make DROP DATABASE wait.
            _kill_mysql_sessions(admin, name)
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()


def require_mysql_driver(driver: str) -> None:
    """Skip a test on ``mysql+<driver>`` whose module is missing; under CI=true, fail it."""
    try:
        importlib.import_module(MYSQL_DRIVERS[driver])
    except ImportError:
        message = f"mysql+{driver}: {MYSQL_DRIVERS[driver]} is not installed" + (
            " (pip install -e '.[mysqlclient]'; it builds against the client headers:"
            " Debian libmariadb-dev and pkg-config)"
            if driver == "mysqldb"
            else ""
        )
        if mysqlserver.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def with_mysql_driver(url: str, driver: str) -> str:
    """``url`` on ``mysql+<driver>``, once the driver is known to be installed."""
    require_mysql_driver(driver)
    return make_url(url).set(drivername=f"mysql+{driver}").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def mysqldb_url(mysql_url: str) -> str:
    """The test database on mysqlclient (``mysql+mysqldb``)."""
    return with_mysql_driver(mysql_url, "mysqldb")


def _kill_mysql_sessions(conn: Any, database: str) -> None:
    """KILL the connections to ``database`` other than ``conn``'s own."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM information_schema.PROCESSLIST WHERE db = %s AND id <> CONNECTION_ID()",
            (database,),
        )
        for (session_id,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(session_id)}")
            except Exception as exc:  # it may have ended meanwhile
                if "Unknown thread id" not in str(exc):
                    raise


# --- URLs -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of an SQLite file private to the test."""
    return f"sqlite:///{tmp_path}/dal.db"


#: db_url's param -> the fixture that gives its URL.
BACKEND_URLS = {
    "sqlite": "sqlite_url",
    "postgres": "postgres_url",
    "mysql": "mysql_url",
    "mysqldb": "mysqldb_url",
}

#: db_url's params: each backend once (MySQL on ``mysql_url``'s driver).
BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of each backend in turn: the contract suite runs once per backend."""
    # getfixturevalue, not a fixture argument: the SQLite run must not look for a server.
    return str(request.getfixturevalue(BACKEND_URLS[request.param]))


# --- dal.Database -----------------------------------------------------------------------


def _open_database(url: str) -> Iterator[Database]:
    import dal  # here, not at the top: conftest must import while dal is incomplete

    tables.fresh(url)
    database = dal.Database(url)
    try:
        yield database
        # Promise 7: whatever the test did, errors included, no connection is left out.
        checked_out = database.stats()["pool"]["checked_out"]
        assert checked_out == 0, f"{checked_out} pooled connection(s) still checked out"
    finally:
        database.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A ``dal.Database`` with empty test tables, on each backend in turn."""
    yield from _open_database(db_url)


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    """A ``dal.Database`` with empty test tables, on SQLite only."""
    yield from _open_database(sqlite_url)


@pytest.fixture
def pg_db(postgres_url: str) -> Iterator[Database]:
    """A ``dal.Database`` with empty test tables, on PostgreSQL only."""
    yield from _open_database(postgres_url)


@pytest.fixture
def mysql_db(mysql_url: str) -> Iterator[Database]:
    """A ``dal.Database`` with empty test tables, on MariaDB/MySQL only."""
    yield from _open_database(mysql_url)


# --- dal.AsyncDatabase ------------------------------------------------------------------

#: backend -> the asyncio driver the async fixtures use.
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
}


def async_url(url: str) -> str:
    """``url`` with its backend's asyncio driver."""
    parsed = make_url(url)
    driver = ASYNC_DRIVERS[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


@pytest.fixture
def adb_sync_url(db_url: str) -> str:
    """``db_url``: the sync URL of each backend in turn, whose twin ``adb_url`` is."""
    return db_url


@pytest.fixture
def adb_url(db_url: str) -> str:
    """The async URL of each backend in turn (``db_url``'s async twin)."""
    return async_url(db_url)


async def _open_async_database(url: str) -> AsyncIterator[AsyncDatabase]:
    """An AsyncDatabase on the async twin of ``url`` (a sync URL, which makes the schema)."""
    import dal

    tables.fresh(url)
    database = dal.AsyncDatabase(async_url(url))
    try:
        yield database
        # Promise 7, as for Database: errors and cancellations included.
        checked_out = database.stats()["pool"]["checked_out"]
        assert checked_out == 0, f"{checked_out} pooled connection(s) still checked out"
    finally:
        await database.close()


@pytest_asyncio.fixture
async def adb(db_url: str) -> AsyncIterator[AsyncDatabase]:
    """A ``dal.AsyncDatabase`` with empty test tables, on each backend in turn; it
    belongs to the test's event loop."""
    async for database in _open_async_database(db_url):
        yield database


@pytest_asyncio.fixture
async def sqlite_adb(sqlite_url: str) -> AsyncIterator[AsyncDatabase]:
    """A ``dal.AsyncDatabase`` on SQLite (aiosqlite) only."""
    async for database in _open_async_database(sqlite_url):
        yield database


@pytest_asyncio.fixture
async def pg_adb(postgres_url: str) -> AsyncIterator[AsyncDatabase]:
    """A ``dal.AsyncDatabase`` on PostgreSQL (asyncpg) only."""
    async for database in _open_async_database(postgres_url):
        yield database


@pytest_asyncio.fixture
async def mysql_adb(mysql_url: str) -> AsyncIterator[AsyncDatabase]:
    """A ``dal.AsyncDatabase`` on MariaDB/MySQL (asyncmy) only."""
    async for database in _open_async_database(mysql_url):
        yield database


def _logged(engine: Engine) -> Iterator[StatementLog]:
    log = StatementLog(engine).attach()
    try:
        yield log
    finally:
        log.detach()


@pytest.fixture
def statements(db: Database) -> Iterator[StatementLog]:
    """Every SQL statement ``db.engine`` executes during the test (``.all``, ``.selects()``)."""
    yield from _logged(db.engine)


@pytest.fixture
def adb_statements(adb: AsyncDatabase) -> Iterator[StatementLog]:
    """Every SQL statement ``adb``'s connections send during the test."""
    yield from _logged(adb._engine.sync_engine)


@pytest.fixture
def open_database(db: Database) -> Iterator[Callable[..., Database]]:
    """Another Database on the test's URL (tables already made), closed after the test."""
    import dal

    opened: list[Database] = []

    def make(**settings: Any) -> Database:
        other = dal.Database(db.settings.url, **settings)
        opened.append(other)
        return other

    yield make
    for other in opened:
        assert other.stats()["pool"]["checked_out"] == 0
        other.close()
