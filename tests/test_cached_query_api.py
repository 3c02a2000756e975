"""A cached function's controls beyond the call: refresh, set, uncached, its signature."""

from __future__ import annotations

import inspect

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import dal
from tests.models import User, Users
from tests.sqllog import StatementLog


def _balance_of(db: dal.Database) -> dal.cached_query:  # type: ignore[valid-type]
    @dal.cached_query(db, depends_on=[User])
    def balance_of(session: Session, user_id: int, *, offset: int = 0) -> int | None:
        """The balance of a user."""
        found = session.scalar(select(User.balance).where(User.id == user_id))
        return None if found is None else found + offset

    return balance_of


def test_refresh_reloads_now_stores_and_returns(db: dal.Database, statements: StatementLog) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A", balance=5)
    balance_of = _balance_of(db)
    assert balance_of(1) == 5
    other = create_engine(db.settings.url, poolclass=NullPool)  # a program dal does not see
    with other.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET balance = 6 WHERE id = 1")
    other.dispose()
    assert balance_of(1) == 5

    statements.clear()
    assert balance_of.refresh(1) == 6
    assert len(statements.selects()) == 1
    assert balance_of(1) == 6
    assert len(statements.selects()) == 1  # the refreshed value is what the next call hits


def test_set_stores_a_value_until_a_write_drops_it(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A", balance=5)
    balance_of = _balance_of(db)

    balance_of.set(42, 1)
    statements.clear()
    assert balance_of(1) == 42
    assert balance_of(1, offset=0) == 42  # the same arguments, the same key
    assert statements.selects() == []

    users.update(1, balance=7)
    assert balance_of(1) == 7


def test_uncached_calls_the_function_and_stores_nothing(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A", balance=5)
    balance_of = _balance_of(db)
    balance_of.set(42, 1)

    statements.clear()
    assert balance_of.uncached(1) == 5
    assert balance_of.uncached(1, offset=1) == 6
    assert len(statements.selects()) == 2
    assert balance_of(1) == 42
    assert balance_of.cache_info().currsize == 1


def test_the_signature_is_what_callers_pass(db: dal.Database) -> None:
    balance_of = _balance_of(db)

    signature = inspect.signature(balance_of)

    assert list(signature.parameters) == ["user_id", "offset"]
    assert signature.parameters["user_id"].annotation is int
    assert signature.return_annotation == int | None
    assert balance_of.__doc__ == "The balance of a user."


def test_cache_info_maxsize_is_the_databases_bound(open_database) -> None:  # type: ignore[no-untyped-def]
    small = open_database(cache_size=3)
    balance_of = _balance_of(small)

    assert balance_of.cache_info().maxsize == 3
    assert Users(small).cache_info().maxsize == 3
