"""Shared fixtures: database URLs for SQLite and PostgreSQL, a ready ``dal.Database``, a SQL log.

PostgreSQL is found (or started) once per session, and only when a test asks for it:
tests on SQLite alone never touch a server. Without a server the PostgreSQL tests are
skipped, except under ``CI=true`` or with ``$DAL_TEST_POSTGRES_URL`` set, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from tests import pgserver
from tests.models import Base
from tests.sqllog import StatementLog

if TYPE_CHECKING:
    from dal import Database

POSTGRES_FIXTURES = frozenset({"postgres_admin_url", "postgres_url", "pg_db"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs PostgreSQL ``postgres``, so ``-m 'not postgres'`` works."""
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


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


# --- URLs -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of an SQLite file private to the test."""
    return f"sqlite:///{tmp_path}/dal.db"


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of each backend in turn: the contract suite runs once per backend."""
    # getfixturevalue, not a fixture argument: the SQLite run must not look for a server.
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


# --- dal.Database -----------------------------------------------------------------------


def _schema(url: str, *, create: bool) -> None:
    """Create the test tables at ``url`` (after dropping leftovers), or drop them.

    A separate, unpooled engine: the ``Database`` under test starts with a cold pool
    and counters at zero, and sees no DDL.
    """
    postgres = make_url(url).get_backend_name() == "postgresql"
    # A connection leaked by a failed test may hold a lock on a table: wait a little,
    # not forever, then end such sessions and drop again.
    connect_args = {"options": "-c lock_timeout=5s"} if postgres else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        try:
            Base.metadata.drop_all(engine)
        except OperationalError:
            if not postgres:
                raise
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            Base.metadata.drop_all(engine)
        if create:
            Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def _open_database(url: str) -> Iterator[Database]:
    import dal  # here, not at the top: conftest must import while dal is incomplete

    _schema(url, create=True)
    database = dal.Database(url)
    try:
        yield database
        # Promise 7: whatever the test did, errors included, no connection is left out.
        checked_out = database.stats()["pool"]["checked_out"]
        assert checked_out == 0, f"{checked_out} pooled connection(s) still checked out"
    finally:
        database.close()
        if make_url(url).get_backend_name() == "postgresql":
            # The PostgreSQL database is shared by the whole session.
            _schema(url, create=False)


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
def statements(db: Database) -> Iterator[StatementLog]:
    """Every SQL statement ``db.engine`` executes during the test (``.all``, ``.selects()``)."""
    log = StatementLog(db.engine).attach()
    try:
        yield log
    finally:
        log.detach()


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
