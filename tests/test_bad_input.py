"""Promise 8 on every path: values the driver refuses, arguments of the wrong kind,
cached functions dal cannot call or store, and pool settings past what the pool can do.

Each is a ``dal.DalError`` that also subclasses the builtin, and nothing is cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy.exc
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Query, Session

import dal
from tests.failures import error_of
from tests.models import Tag, Tags, User, Users

NUL = "a\x00b"


def _assert_refused(error: BaseException, label: str) -> None:
    assert isinstance(error, dal.InvalidArgument), f"{label}: {error!r}"
    assert isinstance(error, ValueError), label
    assert "NUL" in str(error), label
    cause = error.__cause__
    assert isinstance(cause, sqlalchemy.exc.StatementError), f"{label}: cause {cause!r}"
    assert isinstance(cause.orig, ValueError), label


# --- a NUL character: psycopg2 refuses it with a plain ValueError ----------------------------


def test_a_nul_character_is_invalid_argument_on_every_path(pg_db: dal.Database) -> None:
    users, tags = Users(pg_db), Tags(pg_db)
    users.add(id=1, email="a@example.com", name="A")

    @dal.cached_query(pg_db, depends_on=[User])
    def named(session: Session, name: str) -> list[int]:
        return list(session.scalars(select(User.id).where(User.name == name)))

    calls: dict[str, Callable[[], Any]] = {
        "get (pooled cursor)": lambda: tags.get(("kind", NUL)),
        "get_many (Core)": lambda: tags.get_many([("kind", NUL)]),
        "find": lambda: users.find(name=NUL),
        "find_one": lambda: users.find_one(email=NUL),
        "add": lambda: users.add(email=NUL, name="B"),
        "update": lambda: users.update(1, name=NUL),
        "cached_query": lambda: named(NUL),
    }
    for label, call in calls.items():
        _assert_refused(error_of(call), label)

    cache = pg_db.stats()["cache"]
    assert cache["currsize"] == 0
    assert users.get(1).name == "A"  # the refused update wrote nothing


def test_a_nul_character_in_a_writing_session_is_invalid_argument(pg_db: dal.Database) -> None:
    users = Users(pg_db)
    users.add(id=1, email="a@example.com", name="A")

    @dal.cached_query(pg_db, depends_on=[User])
    def named(session: Session, name: str) -> list[int]:
        return list(session.scalars(select(User.id).where(User.name == name)))

    with pg_db.session() as s:
        s.get(User, 1).name = "B"
        with pytest.raises(dal.InvalidArgument) as in_find:
            users.find(name=NUL)
        with pytest.raises(dal.InvalidArgument) as in_query:
            named(NUL)

    _assert_refused(in_find.value, "find in a session")
    _assert_refused(in_query.value, "cached query in a session")
    # The value never reached the server: the transaction went on and committed.
    assert users.get(1).name == "B"


# --- arguments of the wrong kind -------------------------------------------------------------


@pytest.mark.parametrize("pks", ["123", b"12", None, 5, 1.5], ids=repr)
def test_get_many_refuses_what_is_not_a_collection_of_keys(db: dal.Database, pks: Any) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A")

    with pytest.raises(dal.InvalidArgument, match="get_many") as raised:
        users.get_many(pks)

    assert type(pks).__name__ in str(raised.value)
    assert db.stats()["cache"]["loads"] == 0


@pytest.mark.parametrize("order_by", [5, [5], ("id", None), 1.5], ids=repr)
def test_find_refuses_an_order_by_that_is_not_column_names(db: dal.Database, order_by: Any) -> None:
    with pytest.raises(dal.InvalidArgument, match="order_by"):
        Users(db).find(order_by=order_by)

    assert db.stats()["cache"]["loads"] == 0


# --- cached functions dal cannot call -------------------------------------------------------


def test_cached_query_refuses_a_function_without_a_session_parameter(db: dal.Database) -> None:
    def no_params() -> int:
        return 1

    def keyword_only(*, session: Session) -> int:
        return 1

    for fn in (no_params, keyword_only):
        with pytest.raises(dal.ConfigError, match="session parameter") as raised:
            dal.cached_query(db, depends_on=[User])(fn)  # type: ignore[arg-type]
        assert fn.__name__ in str(raised.value)


def test_cached_query_refuses_an_async_function_on_a_sync_database(db: dal.Database) -> None:
    async def total(session: Session) -> int:
        return 1

    with pytest.raises(dal.ConfigError, match="async") as raised:
        dal.cached_query(db, depends_on=[User])(total)  # type: ignore[arg-type]

    assert "total" in str(raised.value)


def test_cached_query_refuses_a_generator_function(db: dal.Database) -> None:
    def names(session: Session) -> Iterator[str]:
        yield from session.scalars(select(User.name))

    with pytest.raises(dal.ConfigError, match="generator") as raised:
        dal.cached_query(db, depends_on=[User])(names)

    assert "names" in str(raised.value)


LAZY_RESULTS: dict[str, Callable[[Session], Any]] = {
    "Result": lambda s: s.execute(select(User.id)),
    "ScalarResult": lambda s: s.scalars(select(User.id)),
    "Query": lambda s: s.query(User),
    "generator": lambda s: (u for u in s.scalars(select(User.id))),
    "map": lambda s: map(str, [1, 2]),
    "uncopyable": lambda s: [threading.Lock()],
}


@pytest.mark.parametrize("kind", list(LAZY_RESULTS))
def test_a_cached_function_returning_what_cannot_be_stored_is_named(
    db: dal.Database, kind: str
) -> None:
    Users(db).add(id=1, email="a@example.com", name="A")
    make = LAZY_RESULTS[kind]

    @dal.cached_query(db, depends_on=[User])
    def lazy(session: Session) -> Any:
        return make(session)

    for attempt in range(2):  # nothing was cached: the second call fails the same way
        with pytest.raises(dal.ConfigError) as raised:
            lazy()
        message = str(raised.value)
        assert "lazy" in message, attempt
        assert ("lock" if kind == "uncopyable" else kind.lower()) in message.lower(), message
    assert lazy.cache_info().currsize == 0
    assert lazy.cache_info().misses == 2


def test_a_lazy_result_in_a_writing_session_is_named_too(db: dal.Database) -> None:
    Users(db).add(id=1, email="a@example.com", name="A")

    @dal.cached_query(db, depends_on=[User])
    def lazy(session: Session) -> Query[User]:
        return session.query(User)

    with pytest.raises(dal.ConfigError, match="Query"), db.session() as s:
        s.get(User, 1).name = "B"
        lazy()
    assert Users(db).get(1).name == "A"


def test_a_cached_tag_query_still_stores_plain_values(db: dal.Database) -> None:
    """The checks refuse lazy results only: tuples, lists and records are stored."""
    Tags(db).add(kind="k", name="n", label="L")

    @dal.cached_query(db, depends_on=[Tag])
    def labels(session: Session) -> tuple[str, ...]:
        return tuple(session.scalars(select(Tag.label)))

    assert labels() == ("L",)
    assert labels() == ("L",)
    assert labels.cache_info().hits == 1


# --- pool settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"pool_timeout": float("inf")}, "pool_timeout=inf"),
        ({"pool_timeout": 1e12}, "TIMEOUT_MAX"),
        ({"pool_recycle": float("inf")}, "pool_recycle=inf"),
        ({"pool_timeout": float("nan")}, "pool_timeout=nan"),
        ({"pool_recycle": float("nan")}, "pool_recycle=nan"),
    ],
)
def test_pool_waits_past_the_limit_are_config_errors(
    sqlite_url: str, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(dal.ConfigError) as raised:
        dal.Database(sqlite_url, **settings)

    assert named in str(raised.value)


def test_the_largest_pool_timeout_is_usable(sqlite_url: str) -> None:
    db = dal.Database(sqlite_url, pool_timeout=threading.TIMEOUT_MAX, pool_recycle=1e9)
    try:
        with db.engine.connect() as conn:  # a checkout waits with this timeout
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        db.close()


def test_a_fractional_pool_recycle_is_honoured(sqlite_url: str) -> None:
    """pool_recycle=0.5 recycles after half a second, not on every checkout."""
    with freeze_time("2030-01-01 12:00:00") as clock:
        db = dal.Database(sqlite_url, pool_size=1, pool_recycle=0.5)
        try:

            def checkout() -> int:
                with db.engine.connect():
                    pass
                return int(db.stats()["pool"]["connects"])

            assert checkout() == 1
            clock.tick(0.4)
            assert checkout() == 1  # younger than 0.5 s: kept
            clock.tick(0.2)
            assert checkout() == 2  # 0.6 s old: recycled
        finally:
            db.close()
