"""The test tables, fresh for every test at a fraction of the cost of making them.

A server's test database lives for the whole session, so its tables are made once
and emptied before each test that asks for them (rows deleted, key counters back to
1), which costs a few statements instead of a DROP and a CREATE per table. A test
may change the schema (triggers, views, altered or extra tables): a fingerprint of
the catalog, taken after every reset, tells, and the tables are then dropped and
made again, as they would have been for every test. An SQLite file is private to
its test: it is a copy of one made once per session.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, create_engine, exists, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from tests.models import Base

__all__ = ["forget", "fresh"]

#: Server URL -> the catalog fingerprint after its tables were last made or emptied.
_known: dict[str, str] = {}
#: Server URL -> the engine that makes and empties its tables (connecting costs MariaDB
#: tens of milliseconds: one connection serves the whole session).
_engines: dict[str, Engine] = {}
#: The SQLite file every test's file is copied from, made at first use.
_sqlite_template: list[Path] = []

# What a test could change that the next one would see: relations (tables, views,
# sequences, indexes) and their columns, triggers, rules, functions, constraints.
_PG_FINGERPRINT = """
SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
  SELECT concat_ws(':', c.oid, c.relname, c.relkind, c.relnatts, c.relhastriggers,
                   c.relhasrules) AS x
  FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
  UNION ALL
  SELECT concat_ws(':', a.attrelid, a.attname, a.atttypid, a.attnotnull, a.atthasdef)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0
  UNION ALL
  SELECT concat_ws(':', t.oid, t.tgname, t.tgenabled) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT concat_ws(':', o.oid, o.conname) FROM pg_constraint o
  WHERE o.connamespace = current_schema()::regnamespace
  UNION ALL
  SELECT p.oid::text FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
) s
"""

_MYSQL_FINGERPRINT = """
SELECT md5(concat_ws('|',
  (SELECT group_concat(concat_ws(':', table_name, table_type) ORDER BY table_name)
   FROM information_schema.TABLES WHERE table_schema = DATABASE()),
  (SELECT group_concat(concat_ws(':', table_name, column_name, column_type, is_nullable,
                                 column_default, extra) ORDER BY table_name, ordinal_position)
   FROM information_schema.COLUMNS WHERE table_schema = DATABASE()),
  (SELECT group_concat(concat_ws(':', table_name, index_name, column_name)
                       ORDER BY table_name, index_name, seq_in_index)
   FROM information_schema.STATISTICS WHERE table_schema = DATABASE()),
  (SELECT group_concat(trigger_name ORDER BY trigger_name)
   FROM information_schema.TRIGGERS WHERE trigger_schema = DATABASE())))
"""


def fresh(url: str) -> None:
    """Make the test tables at ``url`` exist and hold no rows, as if just created.

    A separate, unpooled engine: the ``Database`` under test starts with a cold pool
    and counters at zero, and sees none of this.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        _copy_sqlite(url)
        return
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = _engine(url, backend, pooled=True)
    known = _known.pop(url, None)
    if known is not None:
        try:
            with engine.begin() as conn:
                if _fingerprint(conn, backend) == known:
                    _empty(conn, backend)
                    _known[url] = known
                    return
        except OperationalError:
            pass  # a lock left by a failed test: made again below, sessions ended
    _recreate(engine, backend)
    with engine.connect() as conn:
        _known[url] = _fingerprint(conn, backend)


def forget(url: str) -> None:
    """Before ``url``'s database is dropped: close the connection kept for it."""
    _known.pop(url, None)
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def _engine(url: str, backend: str, *, pooled: bool = False) -> Engine:
    # A connection leaked by a failed test may hold a lock on a table: wait a little,
    # not forever, then end such sessions and try again.
    connect_args = {
        "postgresql": {"options": "-c lock_timeout=5s"},
        "mysql": {"init_command": "SET SESSION lock_wait_timeout = 5"},
    }.get(backend, {})
    if pooled:
        return create_engine(url, pool_size=1, pool_pre_ping=True, connect_args=connect_args)
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _fingerprint(conn: Connection, backend: str) -> str:
    query = _PG_FINGERPRINT if backend == "postgresql" else _MYSQL_FINGERPRINT
    return str(conn.execute(text(query)).scalar())


def _empty(conn: Connection, backend: str) -> None:
    """Delete every row, children first, and set key counters back to their start.

    Only what a test wrote is undone: each such statement costs MariaDB a commit of
    its own (its ALTER TABLE commits implicitly).
    """
    tables = list(reversed(Base.metadata.sorted_tables))
    written = conn.execute(
        select(*(exists(select(1).select_from(t)).label(t.name) for t in tables))
    ).one()
    for table, rows in zip(tables, written, strict=True):
        if rows:
            conn.execute(table.delete())
    counters = [t for t in tables if t.autoincrement_column is not None]
    if backend == "postgresql":
        for table in counters:
            column = table.autoincrement_column
            assert column is not None
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:t, :c), 1, false)"),
                {"t": table.name, "c": column.name},
            )
        return
    moved = conn.execute(
        text(
            "SELECT table_name FROM information_schema.TABLES WHERE table_schema = DATABASE()"
            " AND table_name IN :names AND auto_increment > 1"
        ).bindparams(bindparam("names", expanding=True)),
        {"names": [t.name for t in counters]},
    ).scalars()
    for name in moved:
        conn.execute(text(f"ALTER TABLE {name} AUTO_INCREMENT = 1"))


def _recreate(engine: Engine, backend: str) -> None:
    """Drop the test tables (ending sessions that hold locks on them) and make them."""
    try:
        Base.metadata.drop_all(engine)
    except OperationalError:
        if backend == "sqlite":
            raise
        with engine.connect() as conn:
            if backend == "mysql":
                from tests.conftest import _kill_mysql_sessions

                _kill_mysql_sessions(conn.connection.dbapi_connection, str(engine.url.database))
            else:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)


def _copy_sqlite(url: str) -> None:
    """A new file: a copy of the template. An existing one (another Database of the
    test may be open on it) is emptied by DROP and CREATE instead."""
    path = make_url(url).database
    if not path or Path(path).exists():
        engine = _engine(url, "sqlite")
        try:
            _recreate(engine, "sqlite")
        finally:
            engine.dispose()
        return
    if not _sqlite_template:
        folder = Path(tempfile.mkdtemp(prefix="dal_test_tables_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = folder / "tables.db"
        engine = create_engine(f"sqlite:///{template}", poolclass=NullPool)
        try:
            Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        _sqlite_template.append(template)
    shutil.copyfile(_sqlite_template[0], path)
