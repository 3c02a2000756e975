"""The benchmark's raw floor: the driver's prepared pk select, one entry per driver."""

from __future__ import annotations

import pytest

from benchmarks import data
from benchmarks.drivers import FLOORS, QueryCounter, make_engine
from tests.conftest import with_mysql_driver


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def bench_url(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    # The benchmark's MySQL floor and query counter are PyMySQL's, whatever the suite runs on.
    return with_mysql_driver(url, "pymysql") if request.param == "mysql" else url


def test_the_raw_floor_reads_rows_by_key_and_leaves_the_connection_as_it_was(
    bench_url: str,
) -> None:
    engine = make_engine(bench_url, pool_size=5)
    data.create(engine, 1_000, seed=1)
    try:
        conn = engine.raw_connection()
        try:
            reader = FLOORS[engine.dialect.driver].prepare(conn.dbapi_connection)
            row = reader.read(5)
            assert row[0] == 5 and len(row) == len(data.item_table().columns)
            assert reader.read(1_001) is None
            reader.close()
            if engine.dialect.name == "postgresql":
                cursor = conn.dbapi_connection.cursor()
                cursor.execute("SELECT count(*) FROM pg_prepared_statements")
                assert cursor.fetchone() == (0,)  # deallocated: the pool may reuse it
                assert conn.dbapi_connection.autocommit is False
                cursor.close()
            if engine.dialect.name == "mysql":
                assert conn.dbapi_connection.get_autocommit() is False  # as the pool made it
        finally:
            conn.close()
    finally:
        data.drop(engine)
        engine.dispose()


def test_the_postgresql_floor_is_a_server_side_prepared_statement(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=5)
    data.create(engine, 100, seed=1)
    try:
        conn = engine.raw_connection()
        try:
            reader = FLOORS["psycopg2"].prepare(conn.dbapi_connection)
            reader.read(1)
            cursor = conn.dbapi_connection.cursor()
            cursor.execute("SELECT name, statement FROM pg_prepared_statements")
            ((name, statement),) = cursor.fetchall()
            assert name == "dal_bench_raw" and "WHERE id = $1" in statement
            cursor.close()
            reader.close()
        finally:
            conn.close()
    finally:
        data.drop(engine)
        engine.dispose()


@pytest.mark.mysql
def test_the_query_counter_sees_pymysql_statements_below_sqlalchemy(mysql_url: str) -> None:
    # dal reads a miss on the pooled DBAPI cursor: a SQLAlchemy event would not see it.
    engine = make_engine(with_mysql_driver(mysql_url, "pymysql"), pool_size=5)
    counter = QueryCounter(engine)
    try:
        conn = engine.raw_connection()
        try:
            cursor = conn.dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.execute("SELECT %s", (2,))
            cursor.close()
        finally:
            conn.close()
        assert counter.count == 2
    finally:
        engine.dispose()


@pytest.mark.mysql
async def test_the_query_counter_sees_asyncmy_statements_below_sqlalchemy(mysql_url: str) -> None:
    # A cursor event would send every statement of the engine through Core's events,
    # and dal's misses off their greenlet-free path: the counter must not need one.
    from benchmarks.aio import async_url, make_async_engine

    engine = make_async_engine(async_url(mysql_url), pool_size=5)
    counter = QueryCounter(engine.sync_engine)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            cursor = raw.driver_connection.cursor()
            await cursor.execute("SELECT 1")
            await cursor.execute("SELECT %s", (2,))
            await cursor.close()
        assert counter.count == 2
        assert not engine.sync_engine.dispatch.before_cursor_execute
    finally:
        await engine.dispose()


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_created_for_the_run_and_dropped_after(
    postgres_url: str,
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from benchmarks.drivers import created_database

    fresh = make_url(postgres_url)
    fresh = fresh.set(database=f"{fresh.database}_bench")
    admin = create_engine(make_url(postgres_url).set(database="postgres"))

    def exists(name: str | None) -> bool:
        with admin.connect() as conn:
            found = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            return found is not None

    try:
        with created_database(fresh.render_as_string(hide_password=False)) as created:
            assert created and exists(fresh.database)
        assert not exists(fresh.database)
        with created_database(postgres_url) as created:  # there already: left as it was
            assert not created
        assert exists(make_url(postgres_url).database)
    finally:
        admin.dispose()
