"""Repository[T]: reads through the cache, writes that commit before they return.

The contract suite: every test runs on SQLite and on PostgreSQL (the ``db`` fixture).
Statements are counted to prove that a hit issues no query.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

import dal
from tests.models import Order, Orders, Tags, User, Users
from tests.sqllog import StatementLog


def _seed(users: Users, n: int = 3) -> None:
    for i in range(1, n + 1):
        users.add(id=i, email=f"u{i}@example.com", name=f"user{i}", balance=10 * i)


# --- add ----------------------------------------------------------------------------------


def test_add_returns_the_stored_row_with_column_defaults(db: dal.Database) -> None:
    users = Users(db)

    user = users.add(email="ada@example.com", name="Ada")

    assert isinstance(user.id, int)
    assert (user.email, user.name, user.balance, user.version) == ("ada@example.com", "Ada", 0, 0)
    assert users.get(user.id) == user


def test_add_accepts_a_model_instance(db: dal.Database) -> None:
    users = Users(db)

    user = users.add(User(email="bob@example.com", name="Bob", balance=7))

    assert (user.email, user.name, user.balance) == ("bob@example.com", "Bob", 7)
    assert users.get(user.id) == user


def test_add_rejects_an_instance_and_values_together(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)

    with pytest.raises(dal.InvalidArgument, match="not both"):
        users.add(User(email="a@example.com", name="A"), name="B")

    assert statements.all == []


def test_add_rejects_an_instance_of_another_model(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)

    with pytest.raises(dal.InvalidArgument, match="expected a User instance, not Order"):
        users.add(Order(user_id=1, amount=1))

    assert statements.all == []


def test_writes_commit_before_they_return(db: dal.Database) -> None:
    """Another connection, outside dal's pool, sees each write as soon as it returns."""
    users = Users(db)
    outside = create_engine(db.settings.url, poolclass=NullPool)
    try:

        def name_of(pk: int) -> str | None:
            with outside.connect() as conn:
                return conn.scalar(select(User.name).where(User.id == pk))

        user = users.add(id=1, email="a@example.com", name="A")
        assert name_of(user.id) == "A"
        users.update(user.id, name="B")
        assert name_of(user.id) == "B"
        users.delete(user.id)
        assert name_of(user.id) is None
    finally:
        outside.dispose()


# --- get ----------------------------------------------------------------------------------


def test_get_loads_once_then_hits(db: dal.Database, statements: StatementLog) -> None:
    users = Users(db)
    _seed(users)
    statements.clear()

    first = users.get(2)
    assert len(statements.selects()) == 1
    second = users.get(2)

    assert len(statements.selects()) == 1
    assert first == second
    assert (first.id, first.name, first.balance) == (2, "user2", 20)


def test_get_of_a_missing_row_is_none_and_the_absence_is_cached(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)
    _seed(users, 1)
    statements.clear()

    assert users.get(404) is None
    assert users.get(404) is None

    assert len(statements.selects()) == 1


def test_instances_of_one_repository_class_share_their_cache(
    db: dal.Database, statements: StatementLog
) -> None:
    _seed(Users(db), 1)
    statements.clear()

    Users(db).get(1)
    Users(db).get(1)

    assert len(statements.selects()) == 1


def test_two_repository_classes_of_one_model_stay_consistent(db: dal.Database) -> None:
    class Accounts(dal.Repository[User]):
        model = User

    users, accounts = Users(db), Accounts(db)
    _seed(users, 1)
    assert accounts.get(1).name == "user1"

    users.update(1, name="renamed")

    assert accounts.get(1).name == "renamed"


# --- find / find_one ----------------------------------------------------------------------


def test_find_filters_by_equality(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)
    users.add(id=4, email="u4@example.com", name="user1", balance=99)

    found = users.find(name="user1")

    assert sorted(u.id for u in found) == [1, 4]
    assert users.find(name="user1", balance=99) == [users.get(4)]
    assert users.find(name="nobody") == []


def test_find_without_filters_returns_every_row(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)

    assert sorted(u.id for u in users.find()) == [1, 2, 3]


def test_find_orders_ascending_and_descending(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)

    assert [u.id for u in users.find(order_by="balance")] == [1, 2, 3]
    assert [u.id for u in users.find(order_by="-balance")] == [3, 2, 1]
    assert [u.id for u in users.find(order_by=["-name", "id"])] == [3, 2, 1]


def test_find_limit(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)

    assert [u.id for u in users.find(order_by="id", limit=2)] == [1, 2]
    assert users.find(order_by="id", limit=0) == []


def test_find_rejects_a_bad_limit_before_any_sql(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)

    for limit in (-1, 1.5, "2", True):
        with pytest.raises(dal.InvalidArgument, match=f"limit.*{limit!r}"):
            users.find(limit=limit)

    assert statements.all == []


def test_find_rejects_an_order_by_that_is_not_a_name(
    db: dal.Database, statements: StatementLog
) -> None:
    with pytest.raises(dal.InvalidArgument, match="order_by"):
        Users(db).find(order_by=[User.id])

    assert statements.all == []


def test_find_is_cached_per_arguments(db: dal.Database, statements: StatementLog) -> None:
    users = Users(db)
    _seed(users)
    statements.clear()

    users.find(name="user1", balance=10)
    users.find(balance=10, name="user1")  # keyword order does not matter
    assert len(statements.selects()) == 1

    users.find(name="user2")
    users.find(name="user1", order_by="id")
    users.find(name="user1", order_by="id", limit=1)
    assert len(statements.selects()) == 4


def test_find_returns_a_new_list_each_time(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)

    found = users.find(order_by="id")
    found.clear()

    assert [u.id for u in users.find(order_by="id")] == [1, 2, 3]


def test_find_one_returns_the_lowest_primary_key_or_none(db: dal.Database) -> None:
    users = Users(db)
    users.add(id=5, email="a@example.com", name="same")
    users.add(id=3, email="b@example.com", name="same")

    assert users.find_one(name="same").id == 3
    assert users.find_one(name="other") is None


def test_find_results_follow_writes_to_the_table(db: dal.Database) -> None:
    users = Users(db)
    _seed(users)
    assert [u.id for u in users.find(name="user1")] == [1]

    users.add(id=9, email="u9@example.com", name="user1")
    assert sorted(u.id for u in users.find(name="user1")) == [1, 9]

    users.update(1, name="someone else")
    assert [u.id for u in users.find(name="user1")] == [9]

    users.delete(9)
    assert users.find(name="user1") == []


# --- update / delete ----------------------------------------------------------------------


def test_update_returns_the_updated_row_and_refreshes_get(db: dal.Database) -> None:
    users = Users(db)
    _seed(users, 1)
    assert users.get(1).balance == 10

    updated = users.update(1, balance=11, name="new")

    assert (updated.id, updated.balance, updated.name) == (1, 11, "new")
    assert users.get(1) == updated


def test_update_of_a_missing_row_is_not_found(db: dal.Database) -> None:
    users = Users(db)

    with pytest.raises(dal.NotFoundError, match="404") as raised:
        users.update(404, name="x")

    assert isinstance(raised.value, LookupError)
    assert users.get(404) is None


def test_update_needs_values(db: dal.Database, statements: StatementLog) -> None:
    with pytest.raises(dal.InvalidArgument, match="at least one"):
        Users(db).update(1)

    assert statements.all == []


def test_delete_reports_whether_a_row_was_deleted(db: dal.Database) -> None:
    users = Users(db)
    _seed(users, 1)
    assert users.get(1) is not None

    assert users.delete(1) is True
    assert users.delete(1) is False
    assert users.get(1) is None


# --- composite primary keys ---------------------------------------------------------------


def test_composite_key_crud(db: dal.Database, statements: StatementLog) -> None:
    tags = Tags(db)
    tags.add(kind="color", name="red", label="Red")
    tags.add(kind="color", name="blue", label="Blue")
    tags.get(("color", "warm-up"))  # MySQL reads the key collations once, at the first lookup
    statements.clear()

    assert tags.get(("color", "red")).label == "Red"
    assert tags.get(("color", "red")).label == "Red"
    assert len(statements.selects()) == 1

    assert tags.update(("color", "red"), label="Crimson").label == "Crimson"
    assert tags.get(("color", "red")).label == "Crimson"
    assert tags.get(("color", "blue")).label == "Blue"

    assert tags.delete(("color", "red")) is True
    assert tags.get(("color", "red")) is None
    assert [t.name for t in tags.find(kind="color")] == ["blue"]


# --- cache_info ---------------------------------------------------------------------------


def test_cache_info_counts_hits_misses_and_entries(db: dal.Database) -> None:
    users = Users(db)
    _seed(users, 2)
    info = users.cache_info()
    assert (info.hits, info.misses, info.currsize) == (0, 0, 0)
    assert info.maxsize == db.settings.cache_size

    users.get(1)
    users.get(1)
    users.get(404)
    users.find(name="user2")
    users.find(name="user2")

    info = users.cache_info()
    assert (info.hits, info.misses, info.currsize) == (2, 3, 3)
    assert Orders(db).cache_info().currsize == 0


def test_a_repository_needs_a_model(db: dal.Database) -> None:
    class Nothing(dal.Repository):  # type: ignore[type-arg]
        pass

    with pytest.raises(dal.ConfigError, match="model"):
        Nothing(db)


def test_the_model_comes_from_the_type_argument(db: dal.Database) -> None:
    class Inferred(dal.Repository[User]):
        pass

    class Named(dal.Repository[User]):
        model = User

    assert Inferred.model is User and Named.model is User
    assert Inferred(db).add(email="a@example.com", name="A").email == "a@example.com"

    with pytest.raises(dal.ConfigError, match=r"model = Order does not match Repository\[User\]"):

        class Mismatched(dal.Repository[User]):
            model = Order  # type: ignore[assignment]


def test_writes_inside_a_session_join_its_transaction(db: dal.Database) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="old").id
    assert users.get(pk).name == "old"

    with pytest.raises(RuntimeError), db.session() as session:
        user = session.get(User, pk)
        user.name = "locked by the session"
        session.flush()  # the session now holds the row (a lock on PostgreSQL)
        # A write of its own would wait for that lock forever; joined, it goes through.
        assert users.update(pk, name="joined").name == "joined"
        assert session.scalar(select(User.name).where(User.id == pk)) == "joined"
        raise RuntimeError("roll back")
    assert users.get(pk).name == "old"  # rolled back with the session, nothing cached

    with db.session():
        users.update(pk, name="committed")
    assert users.get(pk).name == "committed"
