"""MySQL/MariaDB write analysis against the real server: after each of MySQL's own write
statements, every table whose contents changed (``CHECKSUM TABLE``) must be among the
tables dal names for it (InnoDB's cascades, triggers and views added from the catalog);
and the key folds must agree with the server's own collation equality.

These run on a plain SQLAlchemy engine: they test what dal reads off statements and the
catalog, whatever backend code runs the cache.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Connection, MetaData, String, Table, create_engine, text
from sqlalchemy.pool import NullPool

from dal.store.keys import PrimaryKey
from dal.tracking import catalog
from dal.tracking.relations import Relations
from dal.tracking.statements import ALL, writes_of

TABLES = ("parents", "children", "notes", "audit", "others")
SCHEMA = [
    "CREATE TABLE parents (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB",
    "CREATE TABLE children (id INT PRIMARY KEY, parent_id INT, amount INT,"
    " FOREIGN KEY (parent_id) REFERENCES parents (id) ON DELETE CASCADE ON UPDATE CASCADE)"
    " ENGINE=InnoDB",
    "CREATE TABLE notes (id INT PRIMARY KEY, parent_id INT,"
    " FOREIGN KEY (parent_id) REFERENCES parents (id) ON DELETE SET NULL ON UPDATE SET NULL)"
    " ENGINE=InnoDB",
    "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, child_id INT) ENGINE=InnoDB",
    "CREATE TABLE others (id INT PRIMARY KEY, n INT) ENGINE=InnoDB",
    "CREATE VIEW child_view AS SELECT id, amount FROM children",
    # On INSERT only: the other statements must not be saved by "a trigger: every table".
    "CREATE TRIGGER others_audit AFTER INSERT ON others FOR EACH ROW"
    " INSERT INTO audit (child_id) VALUES (NEW.id)",
]
SEED = [
    "INSERT INTO parents VALUES (1, 'a'), (2, 'b')",
    "INSERT INTO children VALUES (11, 1, 5), (12, 2, 5)",
    "INSERT INTO notes VALUES (21, 1), (22, 2)",
    "INSERT INTO others VALUES (31, 0)",
]


@pytest.fixture
def conn(mysql_url: str) -> Iterator[Connection]:
    engine = create_engine(mysql_url, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("DROP VIEW IF EXISTS child_view"))
        for table in reversed(TABLES):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        for sql in SCHEMA + SEED:
            connection.execute(text(sql))
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()
            connection.execute(text("DROP VIEW IF EXISTS child_view"))
            for table in ("audit", "notes", "children", "others", "parents"):
                connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
            connection.commit()
    engine.dispose()


def _checksums(conn: Connection) -> dict[str, Any]:
    rows = conn.execute(text(f"CHECKSUM TABLE {', '.join(TABLES)}")).all()
    return {str(name).rsplit(".", 1)[-1]: value for name, value in rows}


class _Result:
    context = None


def _named(conn: Connection, sql: str) -> set[str]:
    writes = writes_of(sql, None, None, "mysql")
    return {table for table, _, _ in Relations().expand(writes, conn)}


def _load_file() -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("1,replaced\n3,new\n")
    os.chmod(f.name, 0o644)  # the server reads it
    return f.name


STATEMENTS = [
    "INSERT INTO parents VALUES (1, 'x') ON DUPLICATE KEY UPDATE id = 7",
    "REPLACE INTO parents VALUES (1, 'replaced')",
    "INSERT IGNORE INTO parents VALUES (1, 'ignored'), (3, 'new')",
    "UPDATE parents p JOIN children c ON c.parent_id = p.id SET c.amount = 0 WHERE p.id = 1",
    "UPDATE parents, others SET others.n = 1 WHERE parents.id = 1",
    "DELETE c FROM children AS c JOIN parents p ON p.id = c.parent_id WHERE p.id = 2",
    "DELETE p, o FROM parents p JOIN others o WHERE p.id = 2",
    "DELETE FROM parents WHERE id = 1",
    "UPDATE parents SET id = 5 WHERE id = 2",
    "UPDATE child_view SET amount = 9 WHERE id = 11",
    "TRUNCATE TABLE others",
    "INSERT INTO others VALUES (32, 0)",
    "LOAD DATA INFILE '{file}' REPLACE INTO TABLE parents FIELDS TERMINATED BY ','",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_every_table_the_server_changed_is_named(conn: Connection, sql: str) -> None:
    path = _load_file() if "{file}" in sql else None
    try:
        sql = sql.format(file=path)
        before = _checksums(conn)
        conn.execute(text(sql))
        changed = {t for t, value in _checksums(conn).items() if value != before[t]}
    finally:
        if path is not None:
            os.unlink(path)
    assert changed, "the statement changed nothing: the test proves nothing"
    named = _named(conn, sql)
    assert ALL in named or changed <= named, f"{sql}: changed {changed}, named {named}"
    assert (ALL in named) == sql.startswith("INSERT INTO others"), named


def test_the_catalog_answers(conn: Connection) -> None:
    parents = catalog.learn(conn, "parents")
    assert parents.exists
    assert parents.on_delete == {"children", "notes"}
    assert parents.on_update == {"children", "notes"}
    assert catalog.learn(conn, "others").triggers == {"insert"}
    assert catalog.learn(conn, "children").triggers == set()
    assert catalog.learn(conn, "child_view").writes_through == {"children"}
    assert "child_view" in catalog.learn(conn, "children").readers
    assert not catalog.learn(conn, "no_such_table").exists


# --- keys: folds against the server's own equality -------------------------------------

COLLATIONS = ["utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_bin", "utf8mb4_nopad_bin"]
VALUES = [
    "Ada",
    "ada",
    "ADA ",
    "ada  ",
    "a da",
    "Ada\t",
    "Émile",
    "emile",
    "EMILE ",
    "ß",
    "ss",
    "s",
]


@pytest.mark.parametrize("collation", COLLATIONS)
def test_folds_join_only_what_the_server_finds_equal(conn: Connection, collation: str) -> None:
    column = Table("t", MetaData(), Column("id", String(50), primary_key=True)).c.id
    key = PrimaryKey([column], "mysql", learn=lambda: [collation])
    for a, b in itertools.combinations(VALUES, 2):
        equal = conn.execute(
            text(
                f"SELECT CONVERT(:a USING utf8mb4) COLLATE {collation}"
                f" = CONVERT(:b USING utf8mb4) COLLATE {collation}"
            ),
            {"a": a, "b": b},
        ).scalar()
        folded = key(a) == key(b)
        if folded:
            assert equal, f"{collation}: {a!r} and {b!r} share a key but are two rows"
        if equal and not folded:
            # Two keys for one row: allowed only where a write then drops every row.
            assert key.aliased or not (key._folds[0].exact(a) and key._folds[0].exact(b)), (  # type: ignore[union-attr]
                f"{collation}: {a!r} = {b!r} in the server, but neither key knows it"
            )


def test_collations_are_read_from_information_schema(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE others ADD COLUMN code VARCHAR(9) COLLATE utf8mb4_bin"))
    found = catalog.collations(conn, None, "others", ["code", "id"])
    assert found == ["utf8mb4_bin", None]
