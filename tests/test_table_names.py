"""Table names are matched as the database compares them: ``depends_on=["USERS"]`` and
``["public.users"]`` are the table ``users``, text SQL names tables in any spelling, and a
name that is no table of the database is refused with a clear error."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

import dal
from dal.store.keys import table_key
from tests.models import Tags, User, Users
from tests.sqllog import StatementLog
from tests.test_bus import make_bus_db
from tests.waiting import wait_until

__all__ = ["make_bus_db"]


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    repo.add(id=1, email="u1@example.com", name="user1")
    return repo


def _names(db: dal.Database, table: str) -> Any:
    @dal.cached_query(db, depends_on=[table])
    def names(session: Any) -> list[str]:
        return list(session.execute(text("SELECT name FROM users ORDER BY id")).scalars())

    return names


def test_table_keys() -> None:
    assert table_key("users") == table_key("USERS") == table_key("public.users") == "users"
    assert table_key('"app"."Users"') == table_key("`app`.`users`") == "users"
    assert table_key("[main].[users]") == "users"


@pytest.mark.parametrize("spelling", ["USERS", "Users", '"users"', "{schema}.users"])
def test_depends_on_in_any_spelling_is_invalidated(
    db: dal.Database, users: Users, spelling: str
) -> None:
    schema = "public" if db.settings.backend == "postgresql" else "main"
    names = _names(db, spelling.format(schema=schema))
    assert names() == ["user1"]

    users.update(1, name="renamed")

    assert names() == ["renamed"]


#: Spellings of the table users each backend accepts (MySQL on Linux: names keep case).
SPELLINGS = {
    "postgresql": ["UPDATE USERS", 'UPDATE "users"', "UPDATE public.Users"],
    "sqlite": ["UPDATE USERS", 'UPDATE "users"', "UPDATE main.Users"],
    "mysql": ["UPDATE `users`", "UPDATE {schema}.users", "UPDATE `{schema}`.`users`"],
}


@pytest.mark.parametrize("spelling", [0, 1, 2])
def test_text_in_any_spelling_refreshes_that_table_only(
    db: dal.Database, users: Users, statements: StatementLog, spelling: int
) -> None:
    schema = db.engine.url.database
    sql = SPELLINGS[db.settings.backend][spelling].format(schema=schema)
    tags = Tags(db)
    assert tags.get(("k", "n")) is None
    assert users.get(1).name == "user1"

    with db.engine.begin() as conn:
        conn.execute(text(sql + " SET name = 'texted' WHERE id = 1"))

    assert users.get(1).name == "texted"
    statements.clear()
    assert tags.get(("k", "n")) is None
    assert statements.selects() == []


def test_a_misspelt_table_is_refused_naming_it_and_the_known_ones(
    db: dal.Database, users: Users
) -> None:
    names = _names(db, "userz")  # no model maps it: checked when dal first reads

    with pytest.raises(dal.ConfigError) as caught:
        names()

    message = str(caught.value)
    assert "'userz'" in message
    assert "users" in message and "tags" in message
    assert names.cache_info().currsize == 0
    with pytest.raises(dal.ConfigError):
        names()  # still refused: nothing was cached


def test_a_table_a_model_maps_is_known_without_asking_the_database(
    db: dal.Database, statements: StatementLog
) -> None:
    Users(db)  # the models' MetaData is known from here on
    names = _names(db, "ORDERS")
    statements.clear()

    assert names() == []

    assert len(statements.selects()) == 1  # the query itself, no catalog lookup


def test_a_name_the_database_has_but_no_model_maps_is_accepted(
    db: dal.Database, users: Users
) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE VIEW people AS SELECT id, name FROM users"))
    try:

        @dal.cached_query(db, depends_on=["PEOPLE"])
        def people(session: Any) -> list[str]:
            return list(session.execute(text("SELECT name FROM people")).scalars())

        assert people() == ["user1"]
        users.update(1, name="renamed")
        assert people() == ["renamed"]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP VIEW people"))


def test_models_in_depends_on_still_work(db: dal.Database, users: Users) -> None:
    @dal.cached_query(db, depends_on=[User])
    def count(session: Any) -> int:
        return int(session.execute(text("SELECT count(*) FROM users")).scalar())

    assert count() == 1
    users.add(id=2, email="u2@example.com", name="user2")
    assert count() == 2


def test_text_sent_across_processes_names_tables_the_sender_never_cached(
    make_bus_db: Any,
) -> None:
    """The receiver caches a table the sender has never heard of: the message names it."""
    a, b = make_bus_db(), make_bus_db()
    with b.engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        conn.execute(text("INSERT INTO notes VALUES (1, 'old')"))
    try:
        users_b = Users(b)
        users_b.add(id=1, email="u1@example.com", name="user1")
        assert users_b.get(1) is not None  # b caches users, and nothing of notes

        @dal.cached_query(a, depends_on=["notes"])
        def body(session: Any) -> str:
            return str(session.execute(text("SELECT body FROM notes")).scalar())

        assert body() == "old"

        with b.engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET name = 'x' WHERE id = 1; UPDATE notes SET body = 'new'")
            )

        wait_until(lambda: body() == "new")
    finally:
        with b.engine.begin() as conn:
            conn.execute(text("DROP TABLE notes"))
