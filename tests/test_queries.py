"""Queries people write: column expressions, ordering by expression, pagination, count
and exists, all cached and dropped by writes; get by what Session.get takes; clears."""

from __future__ import annotations

import pytest
from sqlalchemy import or_

import dal
from tests.models import Order, Tags, User, Users
from tests.sqllog import StatementLog


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    for pk, name, balance in [(1, "ann", 3), (2, "bob", 7), (3, "cy", 9), (4, "dee", 7)]:
        repo.add(id=pk, email=f"{name}@example.com", name=name, balance=balance)
    return repo


def test_find_takes_column_expressions_and_name_filters(users: Users) -> None:
    found = users.find(User.balance > 5, User.name.in_(["bob", "cy", "zed"]), order_by="id")
    assert [u.name for u in found] == ["bob", "cy"]

    found = users.find(or_(User.balance < 4, User.name == "dee"), balance=7)
    assert [u.name for u in found] == ["dee"]


def test_order_by_expressions_limit_and_offset_page_through(users: Users) -> None:
    ordering = [User.balance.desc(), "id"]

    pages = [users.find(order_by=ordering, limit=2, offset=n) for n in (0, 2, 4)]

    assert [[u.name for u in page] for page in pages] == [["cy", "bob"], ["dee", "ann"], []]
    assert [u.name for u in users.find(order_by=User.name.desc(), limit=1)] == ["dee"]


def test_expression_results_are_cached_per_bound_value(
    users: Users, statements: StatementLog
) -> None:
    statements.clear()
    assert len(users.find(User.balance > 5)) == 3
    assert len(users.find(User.balance > 5)) == 3
    assert len(users.find(User.balance > 8)) == 1  # same shape, another value: another key
    assert len(users.find(User.name.in_(["ann", "bob"]))) == 2
    assert len(users.find(User.name.in_(["ann", "bob"]))) == 2
    assert len(users.find(User.name.in_(["ann"]))) == 1

    assert len(statements.selects()) == 4


def test_count_and_exists_are_cached_and_dropped_by_writes(
    users: Users, statements: StatementLog
) -> None:
    statements.clear()
    assert users.count() == 4
    assert users.count(User.balance > 5) == 3
    assert users.count(balance=7) == 2
    assert users.exists(name="cy") is True
    assert users.exists(User.balance > 100) is False
    assert (users.count(), users.exists(name="cy")) == (4, True)
    assert len(statements.selects()) == 5

    users.add(id=5, email="eve@example.com", name="eve", balance=200)
    assert users.exists(User.balance > 100) is True
    assert users.count() == 5
    users.delete(3)
    assert users.exists(name="cy") is False


def test_find_one_takes_expressions_and_order(users: Users) -> None:
    assert users.find_one(User.balance == 7).name == "bob"  # by primary key
    assert users.find_one(User.balance == 7, order_by="-id").name == "dee"
    assert users.find_one(User.balance > 100) is None


def test_unknown_columns_and_other_tables_are_refused_before_any_sql(
    users: Users, statements: StatementLog
) -> None:
    statements.clear()
    with pytest.raises(dal.UnknownColumnError, match=r"orders\.amount is not a column of users"):
        users.find(Order.amount > 5)
    with pytest.raises(dal.UnknownColumnError, match=r"orders\.user_id"):
        users.count(User.id.in_(Order.__table__.select().with_only_columns(Order.user_id)))
    with pytest.raises(dal.UnknownColumnError, match=r"orders\.amount"):
        users.find(order_by=Order.amount.desc())
    with pytest.raises(dal.UnknownColumnError, match="'nmae'"):
        users.exists(nmae="ann")
    with pytest.raises(dal.InvalidArgument, match="not a SQLAlchemy column expression"):
        users.find("balance > 5")  # type: ignore[arg-type]
    with pytest.raises(dal.InvalidArgument, match="offset"):
        users.find(offset=-1)
    assert statements.all == []


def test_get_takes_a_dict_by_column_name_and_composite_tuples(db: dal.Database) -> None:
    users, tags = Users(db), Tags(db)
    users.add(id=1, email="a@example.com", name="A")
    tags.add(kind="color", name="red", label="Red")

    assert users.get({"id": 1}).name == "A"
    assert tags.get(("color", "red")).label == "Red"
    assert tags.get({"name": "red", "kind": "color"}) is tags.get(("color", "red"))
    with pytest.raises(dal.InvalidArgument, match="exactly the keys"):
        tags.get({"kind": "color"})
    with pytest.raises(dal.UnknownColumnError, match="'colour'"):
        tags.get({"kind": "color", "colour": "red"})


def test_get_or_raise_raises_not_found(users: Users) -> None:
    assert users.get_or_raise(1).name == "ann"

    with pytest.raises(dal.NotFoundError, match="User 404 does not exist") as raised:
        users.get_or_raise(404)
    assert isinstance(raised.value, LookupError)


def test_repository_and_database_cache_clear(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    users.get(1)
    users.find(balance=7)
    users.count()
    other = Tags(db)
    other.get(("a", "b"))
    assert users.cache_info().currsize == 3

    users.cache_clear()
    assert users.cache_info().currsize == 0
    assert other.cache_info().currsize == 1

    statements.clear()
    users.get(1)
    assert len(statements.selects()) == 1

    db.cache_clear()
    assert users.cache_info().currsize == 0 and other.cache_info().currsize == 0
