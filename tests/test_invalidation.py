"""Promises 1 and 3, single-threaded: every committed write drops what it made stale,
whichever way it was made; a rollback leaves no trace; a session reads its own writes.

Each test caches values first, writes, then reads: the read must be fresh. Where a
write must *not* drop an entry, the statement log proves the later read issued no SELECT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

import dal
from tests.models import Order, Orders, Tag, Tags, User, Users
from tests.sqllog import StatementLog

users_table: Table = User.__table__  # type: ignore[assignment]
tags_table: Table = Tag.__table__  # type: ignore[assignment]


@pytest.fixture
def users(db: dal.Database) -> Users:
    """Users 1..3 (balance 10, 20, 30), each cached, and the absence of user 9."""
    repo = Users(db)
    for i in (1, 2, 3):
        repo.add(id=i, email=f"u{i}@example.com", name=f"user{i}", balance=10 * i)
    for i in (1, 2, 3):
        assert repo.get(i) is not None
    assert repo.get(9) is None
    return repo


def _invalidations(db: dal.Database) -> int:
    return int(db.stats()["cache"]["invalidations"])


def _cached_without_select(statements: StatementLog, read: Callable[[], Any]) -> Any:
    """``read()``, asserting that it was served from the cache."""
    statements.clear()
    value = read()
    assert statements.selects() == [], "expected a cache hit, but the read issued a SELECT"
    return value


# --- through the repository ---------------------------------------------------------------


def test_repository_update_refreshes_that_row_and_keeps_the_others(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    users.update(2, balance=21)

    assert users.get(2).balance == 21
    assert _cached_without_select(statements, lambda: users.get(1)).balance == 10
    assert _cached_without_select(statements, lambda: users.get(3)).balance == 30


def test_repository_delete_refreshes_that_row(users: Users) -> None:
    users.delete(2)

    assert users.get(2) is None
    assert users.get_many([1, 2, 3]).keys() == {1, 3}


def test_repository_add_clears_the_cached_absence(users: Users) -> None:
    users.add(id=9, email="u9@example.com", name="user9")

    assert users.get(9).name == "user9"


# --- through db.session() (ORM flushes) ---------------------------------------------------


def test_session_update_refreshes_that_row_and_keeps_the_others(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.session() as s:
        s.get(User, 1).name = "renamed"

    assert users.get(1).name == "renamed"
    assert _cached_without_select(statements, lambda: users.get(2)).name == "user2"


def test_session_delete_refreshes_that_row(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        s.delete(s.get(User, 3))

    assert users.get(3) is None


def test_session_add_clears_the_cached_absence_and_keeps_other_rows(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.session() as s:
        s.add(User(id=9, email="u9@example.com", name="user9"))

    assert users.get(9).name == "user9"
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


def test_session_with_several_writes_is_one_invalidation(db: dal.Database, users: Users) -> None:
    before = _invalidations(db)

    with db.session() as s:
        s.get(User, 1).balance = 11
        s.get(User, 2).balance = 21
        s.delete(s.get(User, 3))

    assert _invalidations(db) == before + 1
    assert (users.get(1).balance, users.get(2).balance, users.get(3)) == (11, 21, None)


# --- through Core statements on db.engine -------------------------------------------------


def test_core_insert_clears_the_cached_absence_and_keeps_other_rows(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=9, email="u9@example.com", name="user9"))

    assert users.get(9).name == "user9"
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


def test_core_executemany_insert_clears_each_absence_and_keeps_other_rows(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    assert users.get(8) is None
    rows = [
        {"id": 8, "email": "u8@example.com", "name": "user8"},
        {"id": 9, "email": "u9@example.com", "name": "user9"},
    ]
    with db.engine.begin() as conn:
        conn.execute(insert(users_table), rows)

    assert (users.get(8).name, users.get(9).name) == ("user8", "user9")
    assert _cached_without_select(statements, lambda: users.get(2)).name == "user2"


def test_insert_without_known_keys_clears_absences_but_keeps_cached_rows(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    """INSERT ... SELECT: the new keys are unknown, so every cached "no row" may be stale,
    but no existing row changed."""
    copy = select(
        users_table.c.id + 6, users_table.c.email + "x", users_table.c.name, users_table.c.balance
    ).where(users_table.c.id == 3)
    with db.engine.begin() as conn:
        conn.execute(insert(users_table).from_select(["id", "email", "name", "balance"], copy))

    assert users.get(9).email == "u3@example.comx"
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


def test_core_update_by_primary_key_refreshes_only_that_row(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.id == 2).values(balance=22))

    assert users.get(2).balance == 22
    assert _cached_without_select(statements, lambda: users.get(1)).balance == 10
    assert _cached_without_select(statements, lambda: users.get(3)).balance == 30


def test_core_executemany_update_refreshes_each_row_and_keeps_the_others(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    statement = (
        update(users_table)
        .where(users_table.c.id == bindparam("uid"))
        .values(balance=bindparam("new_balance"))
    )
    with db.engine.begin() as conn:
        conn.execute(statement, [{"uid": 1, "new_balance": 11}, {"uid": 2, "new_balance": 22}])

    assert (users.get(1).balance, users.get(2).balance) == (11, 22)
    assert _cached_without_select(statements, lambda: users.get(3)).balance == 30


def test_core_update_with_an_in_list_refreshes_those_rows(db: dal.Database, users: Users) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.id.in_([1, 3])).values(balance=0))

    assert [users.get(i).balance for i in (1, 2, 3)] == [0, 20, 0]


def test_core_update_with_an_in_list_keeps_the_rows_outside_it(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    """An IN-list names its rows exactly: the others stay cached."""
    with db.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.id.in_([1, 3])).values(balance=0))

    assert _cached_without_select(statements, lambda: users.get(2)).balance == 20


def test_core_delete_with_an_in_list_refreshes_those_rows(db: dal.Database, users: Users) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(users_table).where(users_table.c.id.in_([2, 3])))

    assert users.get_many([1, 2, 3]).keys() == {1}


@pytest.mark.parametrize(
    "where",
    [
        users_table.c.balance > 15,
        users_table.c.name.in_(["user2", "user3"]),
        users_table.c.id != 1,
        users_table.c.id.in_(select(users_table.c.id).where(users_table.c.balance > 15)),
    ],
    ids=["comparison", "non-pk-in", "pk-not-equal", "pk-in-subquery"],
)
def test_core_update_whose_rows_are_unknown_refreshes_the_whole_table(
    db: dal.Database, users: Users, where: Any
) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(users_table).where(where).values(name="rich"))

    assert [users.get(i).name for i in (1, 2, 3)] == ["user1", "rich", "rich"]


def test_core_delete_by_a_non_key_column_refreshes_the_whole_table(
    db: dal.Database, users: Users
) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(users_table).where(users_table.c.name == "user2"))

    assert users.get(2) is None
    assert users.get(1).name == "user1"


def test_core_update_that_changes_a_primary_key(db: dal.Database, users: Users) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.id == 1).values(id=9))

    assert users.get(1) is None
    assert users.get(9).name == "user1"


def test_core_update_of_part_of_a_composite_key_refreshes_every_matching_row(
    db: dal.Database, statements: StatementLog
) -> None:
    tags = Tags(db)
    for kind, name in [("color", "red"), ("color", "blue"), ("size", "xl")]:
        tags.add(kind=kind, name=name, label=name)
        assert tags.get((kind, name)).label == name

    with db.engine.begin() as conn:
        conn.execute(update(tags_table).where(tags_table.c.kind == "color").values(label="C"))

    assert tags.get(("color", "red")).label == "C"
    assert tags.get(("color", "blue")).label == "C"
    assert tags.get(("size", "xl")).label == "xl"


def test_core_update_of_one_composite_key_keeps_the_others(
    db: dal.Database, statements: StatementLog
) -> None:
    tags = Tags(db)
    for name in ("red", "blue"):
        tags.add(kind="color", name=name, label=name)
        assert tags.get(("color", name)).label == name

    where = (tags_table.c.kind == "color") & (tags_table.c.name == "red")
    with db.engine.begin() as conn:
        conn.execute(update(tags_table).where(where).values(label="Crimson"))

    assert tags.get(("color", "red")).label == "Crimson"
    assert _cached_without_select(statements, lambda: tags.get(("color", "blue"))).label == "blue"


def test_core_write_on_an_explicitly_committed_connection(db: dal.Database, users: Users) -> None:
    with db.engine.connect() as conn:
        conn.execute(update(users_table).where(users_table.c.id == 1).values(name="committed"))
        conn.commit()

    assert users.get(1).name == "committed"


def test_core_write_in_autocommit_mode(db: dal.Database, users: Users) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(update(users_table).where(users_table.c.id == 1).values(name="auto"))

        # Committed by the statement itself: fresh at once, before the connection closes.
        assert users.get(1).name == "auto"


def test_upsert_refreshes_the_row_it_changed(db: dal.Database, users: Users) -> None:
    values = {"id": 2, "email": "u2@example.com", "name": "upserted"}
    statement: Any
    if db.settings.backend == "mysql":
        statement = mysql.insert(users_table).values(values)
        statement = statement.on_duplicate_key_update(name=statement.inserted.name)
    else:
        dialect = postgresql if db.settings.backend == "postgresql" else sqlite
        statement = dialect.insert(users_table).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[users_table.c.id], set_={"name": statement.excluded.name}
        )
    with db.engine.begin() as conn:
        conn.execute(statement)

    assert users.get(2).name == "upserted"


# --- through text SQL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE users SET name = 'text' WHERE id = 2",
        "update USERS set name = 'text' where id = 2",
        "UPDATE \"users\" SET name = 'text' WHERE id = 2",
    ],
    ids=["upper", "lower", "quoted"],
)
def test_text_update_naming_the_table_refreshes_it(
    db: dal.Database, users: Users, sql: str
) -> None:
    if db.settings.backend == "mysql":
        # MySQL on Linux compares table names case-sensitively and quotes with backticks.
        sql = sql.replace("USERS", "users").replace('"users"', "`users`")
    with db.engine.begin() as conn:
        conn.execute(text(sql))

    assert users.get(2).name == "text"


def test_text_delete_and_insert_naming_the_table_refresh_it(db: dal.Database, users: Users) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :pk"), {"pk": 1})
        conn.execute(
            text(
                "INSERT INTO users (id, email, name, balance, version) VALUES (9, 'n', 'new', 0, 0)"
            )
        )

    assert users.get(1) is None
    assert users.get(9).name == "new"


def test_driver_sql_naming_the_table_refreshes_it(db: dal.Database, users: Users) -> None:
    """exec_driver_sql reaches no after_execute event; its writes count all the same."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET balance = 0 WHERE id = 3")

    assert users.get(3).balance == 0


def test_text_that_does_not_write_invalidates_nothing(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    before = _invalidations(db)
    with db.engine.begin() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 3

    assert _invalidations(db) == before
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


def test_text_write_to_another_table_keeps_this_one(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    Tags(db).get(("k", "n"))  # the cache now depends on tags too
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO tags (kind, name, label) VALUES ('k', 'n', 'l')"))

    assert Tags(db).get(("k", "n")).label == "l"
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


@pytest.fixture
def people_view(db: dal.Database) -> Iterator[str]:
    """An updatable view over users; dal's cache knows only the table."""
    with db.engine.begin() as conn:
        conn.execute(text("CREATE VIEW people AS SELECT id, name FROM users"))
        if db.settings.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER people_rename INSTEAD OF UPDATE ON people BEGIN "
                    "UPDATE users SET name = NEW.name WHERE id = OLD.id; END"
                )
            )
    try:
        yield "people"
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP VIEW people"))


def test_text_write_naming_no_cached_table_refreshes_everything(
    db: dal.Database, people_view: str, statements: StatementLog
) -> None:
    """Text that writes but names no cached table (here a view) may change any table."""
    users = Users(db)
    users.add(id=1, email="u1@example.com", name="before")
    assert users.get(1).name == "before"

    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {people_view} SET name = 'after' WHERE id = 1"))

    assert users.get(1).name == "after"


# --- through ORM bulk statements ----------------------------------------------------------


def test_orm_bulk_update_by_primary_key(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.session() as s:
        s.execute(update(User), [{"id": 1, "name": "bulk1"}, {"id": 2, "name": "bulk2"}])

    assert (users.get(1).name, users.get(2).name) == ("bulk1", "bulk2")
    assert _cached_without_select(statements, lambda: users.get(3)).name == "user3"


def test_orm_update_with_a_where_clause(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        s.execute(update(User).where(User.balance >= 20).values(balance=User.balance + 1))

    assert [users.get(i).balance for i in (1, 2, 3)] == [10, 21, 31]


def test_orm_delete_with_a_where_clause(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        s.execute(delete(User).where(User.name == "user1"))

    assert users.get(1) is None
    assert users.get(2) is not None


def test_orm_bulk_insert_clears_absences_and_keeps_other_rows(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.session() as s:
        s.execute(insert(User), [{"id": 9, "email": "u9@example.com", "name": "user9"}])

    assert users.get(9).name == "user9"
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


# --- ON DELETE CASCADE --------------------------------------------------------------------


@pytest.fixture
def orders(db: dal.Database, users: Users) -> Orders:
    """Orders 1 and 2 of user 1 and order 3 of user 2, each cached, and a cached find."""
    repo = Orders(db)
    for pk, user_id in [(1, 1), (2, 1), (3, 2)]:
        repo.add(id=pk, user_id=user_id, amount=pk)
        assert repo.get(pk) is not None
    assert len(repo.find(user_id=1)) == 2
    return repo


def _delete_via_repository(db: dal.Database) -> None:
    Users(db).delete(1)


def _delete_via_session(db: dal.Database) -> None:
    with db.session() as s:
        s.delete(s.get(User, 1))


def _delete_via_core(db: dal.Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(users_table).where(users_table.c.id == 1))


def _delete_via_text(db: dal.Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = 1"))


@pytest.mark.parametrize(
    "delete_user",
    [_delete_via_repository, _delete_via_session, _delete_via_core, _delete_via_text],
    ids=["repository", "session", "core", "text"],
)
def test_deleting_a_user_drops_the_orders_the_database_cascaded(
    db: dal.Database, orders: Orders, delete_user: Callable[[dal.Database], None]
) -> None:
    delete_user(db)

    assert orders.get(1) is None
    assert orders.get(2) is None
    assert orders.find(user_id=1) == []
    assert orders.get(3).user_id == 2


def test_text_delete_of_a_parent_drops_cascaded_children_cached_alone(db: dal.Database) -> None:
    """Only the child table is cached; text SQL deletes the parent it cascades from."""
    with db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=1, email="a@example.com", name="A"))
    orders = Orders(db)  # no repository or query caches users
    orders.add(id=1, user_id=1, amount=5)
    assert orders.get(1) is not None

    _delete_via_text(db)

    assert orders.get(1) is None


def test_core_delete_of_a_parent_drops_cascaded_children_cached_alone(db: dal.Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=1, email="a@example.com", name="A"))
    orders = Orders(db)  # no repository or query caches users
    orders.add(id=1, user_id=1, amount=5)
    assert orders.get(1) is not None

    _delete_via_core(db)

    assert orders.get(1) is None


def test_cascade_reaches_a_query_that_names_its_table_as_a_string(db: dal.Database) -> None:
    """depends_on by table name still learns the ON DELETE CASCADE into that table."""
    with db.engine.begin() as conn:
        conn.execute(insert(users_table).values(id=1, email="a@example.com", name="A"))
        conn.execute(insert(Order.__table__).values(id=1, user_id=1, amount=5))

    @dal.cached_query(db, depends_on=["orders"])
    def order_count(session: Session) -> int:
        return session.scalar(select(func.count()).select_from(Order))

    assert order_count() == 1

    _delete_via_core(db)

    assert order_count() == 0


# --- rollback leaves no trace -------------------------------------------------------------


class Abort(Exception):
    pass


def test_rolled_back_session_keeps_the_cache_and_counts_no_invalidation(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    before = _invalidations(db)

    with pytest.raises(Abort), db.session() as s:
        s.get(User, 1).name = "uncommitted"
        s.delete(s.get(User, 2))
        s.flush()
        raise Abort

    assert _invalidations(db) == before
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"
    assert _cached_without_select(statements, lambda: users.get(2)).name == "user2"


def test_write_in_a_rolled_back_session_never_reaches_the_cache(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    assert names() == ["user1", "user2", "user3"]

    with pytest.raises(Abort), db.session() as s:
        s.add(User(id=9, email="u9@example.com", name="ghost"))
        s.get(User, 1).name = "uncommitted"
        s.flush()
        # Read inside the session: the session's own writes, which must not be stored.
        assert users.get(9).name == "ghost"
        assert users.get(1).name == "uncommitted"
        assert [u.id for u in users.find(name="ghost")] == [9]
        assert names() == ["uncommitted", "user2", "user3", "ghost"]
        raise Abort

    assert users.get(9) is None
    assert users.get(1).name == "user1"
    assert users.find(name="ghost") == []
    assert names() == ["user1", "user2", "user3"]


def test_rolled_back_core_transaction_keeps_the_cache(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    before = _invalidations(db)

    with pytest.raises(Abort), db.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.id == 1).values(name="gone"))
        raise Abort
    with db.engine.connect() as conn:  # closed without commit: rolled back
        conn.execute(update(users_table).where(users_table.c.id == 2).values(name="gone"))
    with db.engine.connect() as conn:
        conn.execute(text("UPDATE users SET name = 'gone' WHERE id = 3"))
        conn.rollback()

    assert _invalidations(db) == before
    for pk in (1, 2, 3):
        assert _cached_without_select(statements, lambda pk=pk: users.get(pk)).name == f"user{pk}"


def test_explicit_rollback_inside_a_session_discards_its_writes(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    before = _invalidations(db)

    with db.session() as s:
        s.get(User, 1).name = "uncommitted"
        s.flush()
        s.rollback()

    assert _invalidations(db) == before
    assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


# --- read your own writes, in that context only -------------------------------------------


def test_session_reads_its_own_writes_through_the_repository(
    db: dal.Database, users: Users
) -> None:
    with db.session() as s:
        s.get(User, 1).name = "mine"  # not flushed yet
        s.add(User(id=9, email="u9@example.com", name="mine"))

        assert users.get(1).name == "mine"
        assert users.get(9).name == "mine"
        assert users.get_many([1, 2, 9]).keys() == {1, 2, 9}
        assert sorted(u.id for u in users.find(name="mine")) == [1, 9]
        assert users.find_one(name="mine").id == 1

    assert users.get(1).name == "mine"
    assert users.get(9).name == "mine"


def test_session_reads_its_own_core_and_text_writes(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        s.execute(update(User).where(User.id == 2).values(balance=0))
        s.execute(text("UPDATE users SET name = 'texted' WHERE id = 3"))

        assert users.find(balance=0)[0].id == 2
        assert users.find(name="texted")[0].id == 3


def test_session_reads_its_own_writes_through_a_cached_query(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def total(session: Session) -> int:
        return session.scalar(select(func.sum(User.balance)))

    assert total() == 60
    with db.session() as s:
        s.get(User, 1).balance = 1000
        assert total() == 1050
    assert total() == 1050


def test_a_session_that_has_not_written_reads_through_the_cache(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    with db.session() as s:
        assert s.get(User, 3) is not None  # a read: the session has written nothing
        assert _cached_without_select(statements, lambda: users.get(1)).name == "user1"


def _in_another_thread(read: Callable[[], Any]) -> Any:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(read())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return results[0]


def test_only_the_writing_context_sees_uncommitted_writes(db: dal.Database, users: Users) -> None:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    with db.session() as s:
        s.get(User, 1).name = "mine"
        s.flush()
        assert users.get(1).name == "mine"

        assert _in_another_thread(lambda: users.get(1).name) == "user1"
        assert _in_another_thread(lambda: users.find(name="mine")) == []
        assert _in_another_thread(names) == ["user1", "user2", "user3"]

    assert _in_another_thread(lambda: users.get(1).name) == "mine"
    assert names() == ["mine", "user2", "user3"]


def test_cached_query_in_a_writing_session_returns_records_too(
    db: dal.Database, users: Users
) -> None:
    """Reading its own writes, a cached query still returns records, never live ORM objects."""

    @dal.cached_query(db, depends_on=[User])
    def first_user(session: Session) -> User | None:
        return session.get(User, 1)

    outside = first_user()
    with db.session() as s:
        s.get(User, 2).name = "written"
        inside = first_user()

        assert type(inside) is type(outside)
        with pytest.raises(AttributeError):
            inside.name = "changed through the result"
