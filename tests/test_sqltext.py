"""What text SQL writes, read off the statement itself (unit tests of ``dal.tracking.sqltext`` and
of ``dal.tracking.statements`` on each dialect's compiler, MySQL's included).

Every table a statement writes must be named, whether or not any cache knows it: the
bus carries these names to processes that may cache other tables.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, delete, insert, update
from sqlalchemy.dialects import mysql, postgresql, sqlite

from dal.tracking import sqltext
from dal.tracking.statements import ALL, writes_of

EVERYTHING = [(ALL, "other")]


def tables(sql: str, dialect: str = "postgresql") -> list[tuple[str, str]]:
    return list(sqltext.analyse(sql, dialect).tables)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE users SET name = 'x' WHERE id = 1", [("users", "update")]),
        ("update PUBLIC.Users set name = 'x'", [("users", "update")]),
        ('UPDATE "public"."users" SET name = 1', [("users", "update")]),
        ("DELETE FROM ONLY users WHERE id = 1", [("users", "delete")]),
        ("DELETE FROM users AS u USING orders o WHERE o.user_id = u.id", [("users", "delete")]),
        ("INSERT INTO users (id) VALUES (1)", [("users", "insert")]),
        ("INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
         [("users", "other")]),
        ("TRUNCATE users CASCADE", [("users", "truncate")]),
        ("TRUNCATE TABLE ONLY users, orders RESTART IDENTITY", [("users", "truncate"),
                                                                 ("orders", "truncate")]),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY stats", [("stats", "other")]),
        ("MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED THEN DELETE",
         [("users", "other")]),
        ("COPY users (id, name) FROM STDIN", [("users", "insert")]),
        ("COPY users TO STDOUT", []),
        ("COPY (SELECT * FROM users) TO STDOUT", []),
        ("WITH gone AS (DELETE FROM orders RETURNING user_id) SELECT count(*) FROM gone",
         [("orders", "delete")]),
        ("EXPLAIN ANALYZE UPDATE users SET name = 'x'", [("users", "update")]),
        ("SELECT * FROM users FOR UPDATE", []),
        ("SELECT * FROM users FOR NO KEY UPDATE SKIP LOCKED", []),
        ("SELECT 'DELETE FROM users' AS s, \"update\" FROM t -- DELETE FROM users", []),
        ("SELECT $$ DELETE FROM users $$, $x$ UPDATE users SET a = 1 $x$", []),
        ("SELECT E'it\\'s; DELETE FROM users'", []),
        ("/* UPDATE users SET x = 1 */ SELECT 1", []),
        ("CREATE VIEW v AS SELECT * FROM users", []),
        ("CREATE TABLE t (id int REFERENCES users ON DELETE CASCADE ON UPDATE CASCADE)", []),
        ("UPDATE users SET a = 1; DELETE FROM orders", [("users", "update"),
                                                       ("orders", "delete")]),
    ],
)  # fmt: skip
def test_postgres_statements(sql: str, expected: list[tuple[str, str]]) -> None:
    assert tables(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "CALL archive(1)",
        "DO $$ BEGIN DELETE FROM users; END $$",
        "EXECUTE never_prepared(1)",
        "DROP TABLE users CASCADE",
        "ALTER TABLE users RENAME TO people",
        "CREATE OR REPLACE VIEW v AS SELECT 1",
        "UPDATE (SELECT 1) SET a = 1",
        "SELECT 1; CALL archive(1)",
    ],
)
def test_writes_nobody_can_read_off_the_text_are_every_table(sql: str) -> None:
    assert tables(sql) == EVERYTHING


def test_execute_of_a_prepared_statement_writes_what_it_prepared() -> None:
    assert tables("PREPARE bump_kp1 (int) AS UPDATE users SET balance = 1 WHERE id = $1") == []
    assert tables("EXECUTE bump_kp1(1)") == [("users", "update")]
    # Another connection may prepare the same name otherwise: both count.
    tables("PREPARE bump_kp1 AS DELETE FROM orders")
    assert set(tables("EXECUTE bump_kp1")) == {("users", "update"), ("orders", "delete")}


def test_ddl_is_flagged_so_the_catalog_is_asked_again() -> None:
    assert sqltext.analyse("CREATE TRIGGER t AFTER UPDATE ON users FOR EACH ROW EXECUTE "
                           "FUNCTION f()", "postgresql").ddl  # fmt: skip
    assert sqltext.analyse("DROP VIEW v", "postgresql").ddl
    assert not sqltext.analyse("UPDATE users SET a = 1", "postgresql").ddl


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("INSERT INTO users (id) VALUES (1) ON DUPLICATE KEY UPDATE name = 'x'",
         [("users", "other")]),
        ("INSERT IGNORE INTO users (id) VALUES (1)", [("users", "insert")]),
        ("INSERT users (id) VALUES (1)", [("users", "insert")]),
        ("REPLACE INTO users (id, name) VALUES (1, 'x')", [("users", "other")]),
        ("REPLACE LOW_PRIORITY users SET id = 1", [("users", "other")]),
        ("SELECT REPLACE(name, 'a', 'b') FROM users", []),
        ("UPDATE users u JOIN orders o ON o.user_id = u.id SET o.amount = 0",
         [("users", "update"), ("orders", "update")]),
        ("UPDATE LOW_PRIORITY IGNORE users, orders SET users.name = 'x'",
         [("users", "update"), ("orders", "update")]),
        ("DELETE u FROM users AS u JOIN orders o ON o.user_id = u.id", [("users", "delete")]),
        ("DELETE users, orders FROM users JOIN orders ON orders.user_id = users.id",
         [("users", "delete"), ("orders", "delete")]),
        ("DELETE o.* FROM `users` u INNER JOIN `Orders` o ON o.user_id = u.id",
         [("orders", "delete")]),
        ("DELETE FROM users, orders USING users JOIN orders", [("users", "delete"),
                                                               ("orders", "delete")]),
        ("DELETE QUICK FROM users WHERE id = 1", [("users", "delete")]),
        ("TRUNCATE TABLE `users`", [("users", "truncate")]),
        ("LOAD DATA LOCAL INFILE '/tmp/u.csv' REPLACE INTO TABLE users FIELDS TERMINATED BY ','",
         [("users", "other")]),
        ("SELECT 'a\\'; DELETE FROM users' # DELETE FROM orders", []),
        ('SELECT "DELETE FROM users"', []),
    ],
)  # fmt: skip
def test_mysql_statements(sql: str, expected: list[tuple[str, str]]) -> None:
    assert tables(sql, "mysql") == expected
    assert tables(sql, "mariadb") == expected


@pytest.mark.parametrize("sql", ["EXECUTE stmt USING @a", "CALL p()", "DO archive(1)"])
def test_mysql_writes_nobody_can_read_off_the_text(sql: str) -> None:
    assert tables(sql, "mysql") == EVERYTHING


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("INSERT OR REPLACE INTO users (id) VALUES (1)", [("users", "other")]),
        ("REPLACE INTO users (id) VALUES (1)", [("users", "other")]),
        ("UPDATE OR IGNORE users SET id = 2", [("users", "update")]),
        ("DELETE FROM [users] WHERE id = 1", [("users", "delete")]),
        ("SELECT 'it''s; DELETE FROM users'", []),
    ],
)
def test_sqlite_statements(sql: str, expected: list[tuple[str, str]]) -> None:
    assert tables(sql, "sqlite") == expected


def test_the_analysis_is_cached_per_statement_text() -> None:
    sql = "UPDATE cached_once SET a = 1"
    assert sqltext.analyse(sql, "postgresql") is sqltext.analyse(sql, "postgresql")


# --- Core statements on each dialect's compiler --------------------------------------------

metadata = MetaData()
parents = Table(
    "Parents", metadata, Column("id", Integer, primary_key=True), Column("n", String(9))
)
children = Table(
    "children",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("Parents.id")),
    Column("n", String(9)),
    schema="app",
)


class _Context:
    """What ``writes_of`` reads of an execution: the compiled form and its parameters."""

    def __init__(self, statement: Any, dialect: Any, params: dict[str, Any]) -> None:
        self.compiled = statement.compile(dialect=dialect)
        self.compiled_parameters = [self.compiled.construct_params(params)]


def core_writes(statement: Any, dialect: Any, **params: Any) -> list[Any]:
    return writes_of(statement, _Context(statement, dialect, params), None, dialect.name)


@pytest.mark.parametrize("dialect", [mysql.dialect(), postgresql.dialect(), sqlite.dialect()])
def test_core_tables_are_named_by_their_key(dialect: Any) -> None:
    statement = update(children).where(children.c.id == 5).values(n="x")
    assert core_writes(statement, dialect) == [("children", {(5,)}, "update")]
    assert core_writes(delete(parents), dialect) == [("parents", None, "delete")]


def test_mysql_multi_table_update_writes_every_table_it_sets() -> None:
    statement = (
        update(parents)
        .where(parents.c.id == children.c.parent_id)
        .values({parents.c.n: "p", children.c.n: "c"})
    )
    writes = core_writes(statement, mysql.dialect())
    assert "UPDATE `Parents`, app.children SET" in str(statement.compile(dialect=mysql.dialect()))
    assert {(t, op) for t, _, op in writes} == {("parents", "update"), ("children", "update")}


def test_mysql_update_of_a_join_writes_both_tables() -> None:
    statement = update(parents.join(children)).values({children.c.n: "c"})
    writes = core_writes(statement, mysql.dialect())
    assert {(t, pks) for t, pks, _ in writes} == {("parents", None), ("children", None)}


def test_mysql_upserts_write_the_whole_table_and_fire_foreign_key_actions() -> None:
    upsert = mysql.insert(parents).values(id=1, n="a")
    upsert = upsert.on_duplicate_key_update(n=upsert.inserted.n)
    ignore = insert(parents).values(id=1, n="a").prefix_with("IGNORE")
    assert core_writes(upsert, mysql.dialect()) == [("parents", None, "other")]
    assert core_writes(ignore, mysql.dialect()) == [("parents", None, "other")]
