"""MySQL/MariaDB: its own write statements, its foreign-key actions, and keys compared as
its collations compare them.

Each test caches what the statement changes, runs it (text on ``db.engine``, Core with
the MySQL dialect, or inside ``db.session()``), and asserts that the next read is fresh.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.dialects import mysql

import dal
from tests.models import Order, Orders, Tag, Tags, User, Users
from tests.sqllog import StatementLog

Run = Callable[[dal.Database, str], None]


def _engine(db: dal.Database, sql: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql))


def _session(db: dal.Database, sql: str) -> None:
    with db.session() as s:
        s.execute(text(sql))


@pytest.fixture(params=[_engine, _session], ids=["engine", "session"])
def run(request: pytest.FixtureRequest) -> Run:
    runner: Run = request.param
    return runner


@pytest.fixture
def seeded(mysql_db: dal.Database) -> tuple[Users, Orders]:
    """Users 1 and 2, an order of each (ON DELETE CASCADE), all cached."""
    users, orders = Users(mysql_db), Orders(mysql_db)
    for i in (1, 2):
        users.add(id=i, email=f"u{i}@example.com", name=f"user{i}")
        orders.add(id=10 + i, user_id=i, amount=100)
    for i in (1, 2):
        assert users.get(i) is not None and orders.get(10 + i) is not None
    assert users.get(9) is None
    return users, orders


def test_insert_on_duplicate_key_update(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run
) -> None:
    users, _ = seeded
    run(
        mysql_db,
        "INSERT INTO users (id, email, name, balance, version)"
        " VALUES (1, 'u1@example.com', 'x', 0, 0)"
        " ON DUPLICATE KEY UPDATE name = 'upserted'",
    )
    assert users.get(1).name == "upserted"


def test_core_insert_on_duplicate_key_update(
    mysql_db: dal.Database, seeded: tuple[Users, Orders]
) -> None:
    users, _ = seeded
    upsert = mysql.insert(User).values(id=2, email="u2@example.com", name="x")
    upsert = upsert.on_duplicate_key_update(name="upserted")
    with mysql_db.engine.begin() as conn:
        conn.execute(upsert)
    assert users.get(2).name == "upserted"


def test_replace_deletes_and_cascades(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run
) -> None:
    """REPLACE deletes the old row: InnoDB's ON DELETE CASCADE removes its orders."""
    users, orders = seeded
    run(
        mysql_db,
        "REPLACE INTO users (id, email, name, balance, version)"
        " VALUES (1, 'u1@example.com', 'new', 0, 0)",
    )
    assert users.get(1).name == "new"
    assert orders.get(11) is None
    assert orders.get(12) is not None


def test_insert_ignore_adds_rows(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run
) -> None:
    users, _ = seeded
    run(
        mysql_db,
        "INSERT IGNORE INTO users (id, email, name, balance, version) VALUES"
        " (1, 'u1@example.com', 'ignored', 0, 0), (9, 'u9@example.com', 'nine', 0, 0)",
    )
    assert users.get(9).name == "nine"
    assert users.get(1).name == "user1"


def test_multi_table_update(mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run) -> None:
    users, orders = seeded
    run(
        mysql_db,
        "UPDATE users u JOIN orders o ON o.user_id = u.id"
        " SET o.amount = 0, u.name = 'joined' WHERE u.id = 1",
    )
    assert users.get(1).name == "joined"
    assert orders.get(11).amount == 0


def test_core_multi_table_update_sets_the_other_table(
    mysql_db: dal.Database, seeded: tuple[Users, Orders]
) -> None:
    _, orders = seeded
    statement = (
        update(User.__table__)
        .where(User.__table__.c.id == Order.__table__.c.user_id)
        .where(User.__table__.c.id == 2)
        .values({Order.__table__.c.amount: 7})
    )
    with mysql_db.engine.begin() as conn:
        conn.execute(statement)
    assert orders.get(12).amount == 7


def test_multi_table_delete(mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run) -> None:
    _, orders = seeded
    run(mysql_db, "DELETE o FROM orders AS o JOIN users u ON o.user_id = u.id WHERE u.id = 2")
    assert orders.get(12) is None
    assert orders.get(11) is not None


def test_truncate(mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run) -> None:
    _, orders = seeded
    run(mysql_db, "TRUNCATE TABLE orders")
    assert orders.get(11) is None


def test_load_data(mysql_db: dal.Database, seeded: tuple[Users, Orders]) -> None:
    users, _ = seeded
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("1,u1@example.com,loaded,0,0\n9,u9@example.com,nine,0,0\n")
    os.chmod(f.name, 0o644)  # the server reads it
    try:
        _engine(
            mysql_db,
            f"LOAD DATA INFILE '{f.name}' REPLACE INTO TABLE users"
            " FIELDS TERMINATED BY ',' (id, email, name, balance, version)",
        )
    finally:
        os.unlink(f.name)
    assert users.get(1).name == "loaded"
    assert users.get(9).name == "nine"


def test_repository_delete_cascades_through_innodb(
    mysql_db: dal.Database, seeded: tuple[Users, Orders]
) -> None:
    users, orders = seeded
    users.delete(1)
    assert orders.get(11) is None


@pytest.fixture
def notes(mysql_db: dal.Database) -> Iterator[Callable[[], int]]:
    """A table whose ON DELETE CASCADE only the database knows, and a cached count of it."""
    _engine(
        mysql_db,
        "CREATE TABLE notes (id INT PRIMARY KEY, user_id INT,"
        " FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE) ENGINE=InnoDB",
    )

    @dal.cached_query(mysql_db, depends_on=["notes"])
    def count(session: Any) -> int:
        return int(session.execute(text("SELECT count(*) FROM notes")).scalar())

    yield count
    _engine(mysql_db, "DROP TABLE notes")


def test_a_cascade_only_the_database_declares(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], notes: Callable[[], int]
) -> None:
    _engine(mysql_db, "INSERT INTO notes VALUES (1, 1)")
    assert notes() == 1
    with mysql_db.engine.begin() as conn:
        conn.execute(delete(User).where(User.id == 1))
    assert notes() == 0


def test_rows_a_trigger_wrote(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], notes: Callable[[], int]
) -> None:
    users, _ = seeded
    _engine(
        mysql_db,
        "CREATE TRIGGER users_note AFTER UPDATE ON users FOR EACH ROW"
        " INSERT INTO notes VALUES (NEW.id, NEW.id)",
    )
    assert notes() == 0
    users.update(2, name="renamed")
    assert notes() == 1


def test_a_write_through_a_view(
    mysql_db: dal.Database, seeded: tuple[Users, Orders], run: Run
) -> None:
    users, _ = seeded
    _engine(mysql_db, "CREATE VIEW people AS SELECT id, name FROM users")
    try:
        run(mysql_db, "UPDATE people SET name = 'via view' WHERE id = 1")
        assert users.get(1).name == "via view"
    finally:
        _engine(mysql_db, "DROP VIEW people")


# --- keys as the collation compares them ---------------------------------------------------


@pytest.fixture
def tags(mysql_db: dal.Database) -> Tags:
    repo = Tags(mysql_db)
    repo.add(kind="Books", name="Ada", label="old")
    return repo


def test_case_and_trailing_spaces_are_one_entry(mysql_db: dal.Database, tags: Tags) -> None:
    log = StatementLog(mysql_db.engine).attach()
    try:
        first = tags.get(("Books", "Ada"))
        assert first is not None
        assert tags.get(("books", "ada")) is first
        assert tags.get(("BOOKS ", "ada  ")) is first
        reads = [s for s in log.selects() if "FROM tags" in s]
        assert len(reads) == 1, reads
    finally:
        log.detach()
    assert tags.cache_info().currsize == 1


@pytest.mark.parametrize("how", ["repository", "text", "session"])
def test_a_write_in_any_case_refreshes_every_spelling(
    mysql_db: dal.Database, tags: Tags, how: str
) -> None:
    for spelling in (("Books", "Ada"), ("books", "ada"), ("books", "ada ")):
        assert tags.get(spelling).label == "old"

    if how == "repository":
        tags.update(("BOOKS", "ADA"), label="new")
    elif how == "text":
        _engine(mysql_db, "UPDATE tags SET label = 'new' WHERE kind = 'books' AND name = 'ada'")
    else:
        with mysql_db.session() as s:
            s.get(Tag, ("bOOKS", "aDA")).label = "new"  # type: ignore[union-attr]

    for spelling in (("Books", "Ada"), ("books", "ada"), ("books", "ada ")):
        assert tags.get(spelling).label == "new"


def test_keys_no_fold_can_place_are_all_dropped_by_a_write(
    mysql_db: dal.Database, tags: Tags
) -> None:
    """utf8mb4_general_ci: 'Émile' = 'emile'; a write to either drops both."""
    tags.add(kind="people", name="Émile", label="old")
    assert tags.get(("people", "emile")).label == "old"
    assert tags.get(("PEOPLE", "ÉMILE")).label == "old"
    assert tags.get_many([("people", "émile")]) != {}

    tags.update(("people", "emile"), label="new")

    assert tags.get(("people", "ÉMILE")).label == "new"
    assert tags.get(("people", "émile")).label == "new"
