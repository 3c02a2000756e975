"""The driver entries: each one's probes answer truly on its own backend.

The write tracking trusts an entry's ``in_transaction`` to tell "committed on its
own" from "still open", and the read path trusts its ``read_mode`` to leave no
transaction behind; these run against the real backends.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text, update

import dal
from dal import config, drivers
from dal.drivers.engine import driver_of
from tests.conftest import BACKEND_URLS, BACKENDS
from tests.models import User, Users


@pytest.fixture(params=[*BACKENDS, pytest.param("mysqldb", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each backend, and each MySQL driver: the probes are each entry's own."""
    return str(request.getfixturevalue(BACKEND_URLS[request.param]))


def test_the_supported_tables_are_the_driver_entries() -> None:
    assert {"sqlite", "postgresql"} <= set(config.SUPPORTED)
    assert {"sqlite", "postgresql"} <= set(config.SUPPORTED_ASYNC)
    tables = (config.SUPPORTED, config.SUPPORTED_ASYNC)
    assert sum(len(names) for table in tables for names in table.values()) == len(drivers.DRIVERS)
    for entry in drivers.DRIVERS:
        assert drivers.lookup(entry.backend, entry.driver) is entry
        table = config.SUPPORTED_ASYNC if entry.is_async else config.SUPPORTED
        assert entry.driver in table[entry.backend]


def test_a_url_without_a_driver_gets_the_backends_first_entry() -> None:
    url = config.resolve_url("postgresql://app@127.0.0.1/app")
    assert url.drivername == "postgresql+psycopg2"
    assert drivers.default_driver("postgresql") == "psycopg2"
    assert drivers.default_driver("oracle") is None


def test_an_unsupported_driver_names_every_entry() -> None:
    with pytest.raises(dal.ConfigError) as caught:
        config.resolve_url("postgresql+pg8000://app@127.0.0.1/app")
    for entry in drivers.DRIVERS:
        assert (entry.name in str(caught.value)) is not entry.is_async


def test_an_async_url_gets_an_async_driver_and_a_sync_one_is_refused() -> None:
    url = config.resolve_url("postgresql://app@127.0.0.1/app", is_async=True)
    assert url.drivername == "postgresql+asyncpg"
    assert config.resolve_url(None, is_async=True).drivername == "sqlite+aiosqlite"
    with pytest.raises(dal.ConfigError, match=r"AsyncDatabase supports .*postgresql\+asyncpg"):
        config.resolve_url("postgresql+psycopg2://app@127.0.0.1/app", is_async=True)


def test_the_transaction_probe_sees_a_transaction_open_and_ended(db: dal.Database) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="A").id
    probe = driver_of(db.settings).in_transaction
    with db.engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        assert not probe(dbapi)
        conn.execute(update(User).where(User.id == pk).values(name="B"))
        assert probe(dbapi)
        conn.commit()
        assert not probe(dbapi)


def test_the_read_mode_leaves_no_transaction_behind(db: dal.Database) -> None:
    entry = driver_of(db.settings)
    with db.engine.connect() as conn:
        pooled = conn.connection
        with entry.read_mode(pooled):
            conn.exec_driver_sql("SELECT 1").all()
            assert not entry.in_transaction(pooled.dbapi_connection)
        conn.rollback()


def test_returning_is_what_the_dialect_reports(db: dal.Database) -> None:
    with db.engine.connect() as conn:  # a dialect that asks the server knows after connecting
        conn.execute(text("SELECT 1"))
    expected = {"insert", "update", "delete"}
    if db.settings.backend == "mysql":
        # MariaDB 10.5+: INSERT and DELETE ... RETURNING; MySQL: none.
        expected = {"insert", "delete"} if db.engine.dialect.is_mariadb else set()
    assert driver_of(db.settings).returning(db.engine.dialect) == expected


def test_the_seam_is_this_engines_dialect_alone(db: dal.Database) -> None:
    # Wrapping the dialect instance, not its class: another engine is untouched.
    dialect = db.engine.dialect
    assert "do_commit" in vars(dialect) and "do_rollback" in vars(dialect)
    other = create_engine(db.settings.url)
    assert "do_commit" not in vars(other.dialect)
    other.dispose()
