"""Tests of the test fixtures themselves; none of them needs ``dal``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests import mysqlserver, pgserver, tables
from tests.conftest import BACKEND_URLS
from tests.models import Base, Order, Tag, User
from tests.sqllog import StatementLog


def test_sqlite_url_is_a_file_private_to_the_test(sqlite_url: str, tmp_path: Path) -> None:
    url = make_url(sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "dal.db")


def test_db_url_gives_each_backend(db_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["db_url"]
    expected = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}[backend]
    assert make_url(db_url).get_backend_name() == expected
    # A server's run carries its marker, so -m "not postgres" leaves it out.
    for server in ("postgres", "mysql"):
        marked = request.node.get_closest_marker(server) is not None
        assert marked == (backend == server)


def test_models_create_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, poolclass=NullPool)
    try:
        Base.metadata.create_all(engine)
        tables = inspect(engine)
        assert set(tables.get_table_names()) == {"users", "orders", "tags", "pairs"}
        assert tables.get_pk_constraint("tags")["constrained_columns"] == ["kind", "name"]
        fk = tables.get_foreign_keys("orders")[0]
        assert (fk["referred_table"], fk["options"].get("ondelete")) == ("users", "CASCADE")
    finally:
        engine.dispose()
    assert {User.__tablename__, Order.__tablename__, Tag.__tablename__} == {
        "users",
        "orders",
        "tags",
    }


@pytest.mark.postgres
def test_postgres_database_is_the_sessions_own(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg2"
    assert url.database is not None and url.database.startswith("dal_test_")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT current_database()")) == url.database
        # The test tables are made at the first test that asks for them, then kept.
        assert set(inspect(engine).get_table_names()) <= set(Base.metadata.tables)
    finally:
        engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def server_tables(request: pytest.FixtureRequest) -> Iterator[tuple[str, Engine]]:
    """A server's test database with fresh test tables, and an engine on it."""
    url = request.getfixturevalue(BACKEND_URLS[request.param])
    tables.fresh(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield url, engine
    finally:
        engine.dispose()


def test_fresh_tables_hold_no_rows_and_count_keys_from_one(
    server_tables: tuple[str, Engine],
) -> None:
    url, engine = server_tables
    with engine.begin() as conn:
        conn.execute(insert(User), [{"email": f"{n}@x", "name": n} for n in "abc"])
    tables.fresh(url)  # emptied, not made again: the schema did not change
    with engine.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 0
        added = conn.execute(insert(User).values(email="d@x", name="d"))
        assert added.inserted_primary_key == (1,)


def test_fresh_tables_after_a_schema_change_are_made_again(
    server_tables: tuple[str, Engine],
) -> None:
    url, engine = server_tables
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN extra INTEGER"))
    tables.fresh(url)
    assert "extra" not in {c["name"] for c in inspect(engine).get_columns("users")}


@pytest.mark.postgres
def test_postgres_admin_may_create_databases(postgres_admin_url: str) -> None:
    conn = pgserver.connect(postgres_admin_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (True,)
    finally:
        conn.close()


def test_ping_reports_why_a_server_does_not_answer() -> None:
    port = pgserver.free_port()
    reason = pgserver.ping(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
    assert reason is not None and str(port) in reason


def test_discover_fails_loudly_for_an_unreachable_configured_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = pgserver.free_port()
    monkeypatch.setenv(pgserver.ENV_URL, f"postgresql://postgres@127.0.0.1:{port}/postgres")
    with pytest.raises(pgserver.PostgresNotFound, match=pgserver.ENV_URL):
        pgserver.discover()


def test_statement_log_counts_selects_and_clears(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    log = StatementLog(engine).attach()
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("  select x FROM t"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            # Below SQLAlchemy: a read straight on the pooled DBAPI connection counts too.
            conn.connection.dbapi_connection.execute("SELECT 2")
        statements = [s.strip() for s in log.all]
        # (the driver's own BEGIN before the INSERT, and the pool's ROLLBACK, are sent
        # too, so they are seen too)
        control = ("BEGIN", "ROLLBACK")
        assert [s for s in statements if not s.upper().startswith(control)] == [
            "CREATE TABLE t (x INTEGER)",
            "select x FROM t",
            "INSERT INTO t VALUES (1)",
            "SELECT 2",
        ]
        assert [s.strip() for s in log.selects()] == ["select x FROM t", "SELECT 2"]
        log.clear()
        assert log.all == []
        log.detach()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert log.all == []
    finally:
        log.detach()
        engine.dispose()


def test_statement_log_is_thread_safe(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, pool_size=4)
    log = StatementLog(engine).attach()
    threads, per_thread = 4, 50
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            with engine.connect() as conn:
                for _ in range(per_thread):
                    conn.execute(text("SELECT 1"))
        except BaseException as exc:
            errors.append(exc)

    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert len(log.selects()) == threads * per_thread
    finally:
        log.detach()
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_throwaway_cluster_starts_on_a_free_port_and_is_removed() -> None:
    binaries = pgserver.find_binaries()
    if binaries is None:
        message = "initdb/pg_ctl not found: cannot start a throwaway PostgreSQL cluster"
        if pgserver.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = pgserver.ThrowawayCluster(*binaries)
    try:
        cluster.start()
        root = cluster.root
        assert root is not None and root.is_dir()
        assert cluster.port != 5432
        assert pgserver.ping(cluster.url) is None
    finally:
        cluster.stop()
    assert cluster.root is None and not root.exists()
    assert pgserver.ping(cluster.url) is not None


@pytest.mark.mysql
def test_mysql_database_is_the_sessions_own(mysql_url: str) -> None:
    url = make_url(mysql_url)
    assert url.drivername == f"mysql+{mysqlserver.driver()}"  # PyMySQL unless the URL says
    assert url.database is not None and url.database.startswith("dal_test_")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT DATABASE()")) == url.database
        assert set(inspect(engine).get_table_names()) <= set(Base.metadata.tables)
    finally:
        engine.dispose()


@pytest.mark.mysql
def test_mysql_models_create_with_lengths_and_keys(mysql_url: str) -> None:
    engine = create_engine(mysql_url, poolclass=NullPool)
    try:
        Base.metadata.create_all(engine)
        tables = inspect(engine)
        assert set(tables.get_table_names()) == {"users", "orders", "tags", "pairs"}
        assert tables.get_pk_constraint("pairs")["constrained_columns"] == ["b", "a"]
        fk = tables.get_foreign_keys("orders")[0]
        assert (fk["referred_table"], fk["options"].get("ondelete")) == ("users", "CASCADE")
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()


def test_mysql_ping_reports_why_a_server_does_not_answer() -> None:
    port = pgserver.free_port()
    reason = mysqlserver.ping(f"mysql+pymysql://root@127.0.0.1:{port}/")
    assert reason is not None and str(port) in reason


def test_mysql_discover_fails_loudly_for_an_unreachable_configured_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = pgserver.free_port()
    monkeypatch.setenv(mysqlserver.ENV_URL, f"mysql://root@127.0.0.1:{port}/")
    with pytest.raises(mysqlserver.MysqlNotFound, match=mysqlserver.ENV_URL):
        mysqlserver.discover()


@pytest.mark.mysql
@pytest.mark.slow
def test_throwaway_mysql_server_starts_on_a_free_port_and_is_removed() -> None:
    binaries = mysqlserver.find_binaries()
    if binaries is None:
        message = "mariadb-install-db/mariadbd not found: cannot start a throwaway server"
        if mysqlserver.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = mysqlserver.ThrowawayServer(*binaries)
    try:
        server.start()
        root = server.root
        assert root is not None and root.is_dir()
        assert server.port != 3306
        assert mysqlserver.ping(server.url) is None
        process = server.process
    finally:
        server.stop()
    assert server.root is None and not root.exists()
    assert process is not None and process.returncode is not None
    assert mysqlserver.ping(server.url) is not None
