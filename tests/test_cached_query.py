"""cached_query: one result per arguments, dropped by committed writes to its tables."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

import dal
from tests.models import Order, Tag, User, Users
from tests.sqllog import StatementLog


class Calls:
    """Counts the calls a cached function's body receives, per arguments."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, *args: Any) -> None:
        self.seen.append(args)

    def __len__(self) -> int:
        return len(self.seen)


def _seed(db: dal.Database) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A", balance=5)
    users.add(id=2, email="b@example.com", name="B", balance=7)


def test_the_function_receives_a_session_and_runs_once_per_key(
    db: dal.Database, statements: StatementLog
) -> None:
    _seed(db)
    calls = Calls()
    sessions: list[object] = []

    @dal.cached_query(db, depends_on=[User])
    def balance_of(session: Session, user_id: int) -> int | None:
        calls(user_id)
        sessions.append(session)
        return session.scalar(select(User.balance).where(User.id == user_id))

    statements.clear()
    assert balance_of(1) == 5
    assert balance_of(1) == 5
    assert balance_of(2) == 7

    assert calls.seen == [(1,), (2,)]
    assert len(statements.selects()) == 2
    assert all(isinstance(s, Session) for s in sessions)


def test_positional_keyword_and_default_arguments_share_a_key(db: dal.Database) -> None:
    calls = Calls()

    @dal.cached_query(db, depends_on=[User])
    def page(session: Session, name: str, limit: int = 10) -> tuple[str, int]:
        calls(name, limit)
        return (name, limit)

    assert page("a") == ("a", 10)
    assert page(name="a") == ("a", 10)
    assert page("a", 10) == ("a", 10)
    assert page("a", limit=10) == ("a", 10)
    assert page(limit=10, name="a") == ("a", 10)
    assert len(calls) == 1

    assert page("a", 20) == ("a", 20)
    assert page("b") == ("b", 10)
    assert len(calls) == 3


def test_var_keyword_arguments_in_any_order_share_a_key(db: dal.Database) -> None:
    calls = Calls()

    @dal.cached_query(db, depends_on=[User])
    def search(session: Session, **filters: Any) -> list[tuple[str, Any]]:
        calls(filters)
        return sorted(filters.items())

    assert search(a=1, b=2) == [("a", 1), ("b", 2)]
    assert search(b=2, a=1) == [("a", 1), ("b", 2)]
    assert len(calls) == 1
    assert search(a=1) == [("a", 1)]
    assert len(calls) == 2


def test_keys_keep_argument_boundaries(db: dal.Database) -> None:
    """Tuple keys: ("a b",) and ("a", "b") are different calls (no joined strings)."""

    @dal.cached_query(db, depends_on=[User])
    def join(session: Session, *parts: str) -> str:
        return "|".join(parts)

    assert join("a b") == "a b"
    assert join("a", "b") == "a|b"
    assert join("a b") == "a b"


def test_two_functions_with_the_same_arguments_do_not_share_entries(db: dal.Database) -> None:
    @dal.cached_query(db, depends_on=[User])
    def first(session: Session, x: int) -> str:
        return f"first {x}"

    @dal.cached_query(db, depends_on=[User])
    def second(session: Session, x: int) -> str:
        return f"second {x}"

    assert first(1) == "first 1"
    assert second(1) == "second 1"
    assert first(1) == "first 1"


def test_none_is_a_cached_result(db: dal.Database) -> None:
    calls = Calls()

    @dal.cached_query(db, depends_on=[User])
    def nothing(session: Session) -> None:
        calls()

    assert nothing() is None
    assert nothing() is None
    assert len(calls) == 1


@pytest.mark.parametrize("dependency", ["model", "table", "name"])
def test_writes_to_a_dependency_drop_the_results(db: dal.Database, dependency: str) -> None:
    """depends_on takes a model, a Table or a table name."""
    depends_on = {"model": User, "table": User.__table__, "name": "users"}[dependency]
    _seed(db)

    @dal.cached_query(db, depends_on=[depends_on])
    def total(session: Session) -> int:
        return session.scalar(select(func.sum(User.balance)))

    assert total() == 12
    Users(db).update(1, balance=100)
    assert total() == 107

    with db.engine.begin() as conn:
        conn.execute(insert(User).values(id=3, email="c@example.com", name="C", balance=1))
    assert total() == 108


def test_writes_to_other_tables_keep_the_results(
    db: dal.Database, statements: StatementLog
) -> None:
    _seed(db)

    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    assert names() == ["A", "B"]
    with db.session() as s:
        s.add(Tag(kind="k", name="n", label="l"))
        s.add(Order(id=1, user_id=1, amount=3))
    statements.clear()

    assert names() == ["A", "B"]
    assert statements.selects() == []


def test_depending_on_several_tables(db: dal.Database) -> None:
    _seed(db)

    @dal.cached_query(db, depends_on=[User, Order])
    def spent(session: Session, user_id: int) -> int:
        total = select(func.coalesce(func.sum(Order.amount), 0)).where(Order.user_id == user_id)
        return session.scalar(total)

    assert spent(1) == 0
    with db.session() as s:
        s.add(Order(id=1, user_id=1, amount=30))
    assert spent(1) == 30
    with db.engine.begin() as conn:
        conn.execute(update(Order).where(Order.id == 1).values(amount=31))
    assert spent(1) == 31


def test_invalidate_drops_only_the_entry_for_those_arguments(db: dal.Database) -> None:
    calls = Calls()

    @dal.cached_query(db, depends_on=[User])
    def square(session: Session, x: int) -> int:
        calls(x)
        return x * x

    square(2)
    square(3)
    square.invalidate(x=2)  # the key of square(2), given by keyword
    square(2)
    square(3)

    assert calls.seen == [(2,), (3,), (2,)]


def test_cache_clear_drops_every_entry_of_the_function_only(db: dal.Database) -> None:
    calls = Calls()
    other_calls = Calls()

    @dal.cached_query(db, depends_on=[User])
    def square(session: Session, x: int) -> int:
        calls(x)
        return x * x

    @dal.cached_query(db, depends_on=[User])
    def cube(session: Session, x: int) -> int:
        other_calls(x)
        return x**3

    square(2)
    square(3)
    cube(2)
    square.cache_clear()
    square(2)
    square(3)
    cube(2)

    assert len(calls) == 4
    assert len(other_calls) == 1


def test_cache_info_counts_hits_misses_and_entries(db: dal.Database) -> None:
    @dal.cached_query(db, depends_on=[User])
    def square(session: Session, x: int) -> int:
        return x * x

    assert tuple(square.cache_info()) == (0, 0, db.settings.cache_size, 0)
    square(2)
    square(2)
    square(3)
    info = square.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 2, 2)

    square.invalidate(2)
    assert square.cache_info().currsize == 1
    square.cache_clear()
    assert square.cache_info().currsize == 0


def test_the_wrapper_keeps_the_function_name_and_doc(db: dal.Database) -> None:
    @dal.cached_query(db, depends_on=[User])
    def top_spenders(session: Session, limit: int) -> list[int]:
        """The users who spent most."""
        return []

    assert top_spenders.__name__ == "top_spenders"
    assert top_spenders.__doc__ == "The users who spent most."


def test_orm_instances_come_back_as_records(db: dal.Database) -> None:
    _seed(db)

    @dal.cached_query(db, depends_on=[User])
    def richest(session: Session) -> list[User]:
        return list(session.scalars(select(User).order_by(User.balance.desc())))

    first, second = richest(), richest()

    assert [u.name for u in first] == ["B", "A"]
    assert first == second
    assert not any(isinstance(u, User) for u in first)
    with pytest.raises(AttributeError):
        first[0].name = "changed"
    assert first[0] == Users(db).get(2)


def test_depends_on_rejects_what_is_not_a_table(db: dal.Database) -> None:
    for bad in ([User, 3], ["users", object()]):
        with pytest.raises(dal.ConfigError, match="depends_on"):
            dal.cached_query(db, depends_on=bad)


def test_depends_on_must_be_a_list_not_a_name(db: dal.Database) -> None:
    with pytest.raises(dal.ConfigError, match="depends_on"):
        dal.cached_query(db, depends_on="users")
