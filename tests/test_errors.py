"""Promise 8: each bad input gets a clear error, and nothing is lost or cached for it.

Errors are ``dal.DalError`` subclasses that also subclass the builtin a caller would
catch, name the bad value or the limit that was hit, and chain the SQLAlchemy error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dal
from tests.models import Orders, User, Users
from tests.sqllog import StatementLog


def _nothing_cached(db: dal.Database) -> None:
    cache = db.stats()["cache"]
    assert (cache["currsize"], cache["misses"], cache["loads"]) == (0, 0, 0)


def _raised(expected: type[BaseException], label: str, call: Callable[..., Any], *args: Any) -> Any:
    """The ``expected`` error ``call(*args)`` raised; fails naming ``label`` otherwise."""
    try:
        call(*args)
    except expected as exc:
        return exc
    except BaseException as exc:  # re-raised as a failure that names the case
        pytest.fail(f"{label}: raised {exc!r}, not {expected.__name__}")
    pytest.fail(f"{label}: did not raise {expected.__name__}")


# --- unknown columns ----------------------------------------------------------------------


UNKNOWN_COLUMN_CALLS: dict[str, Callable[[Users], Any]] = {
    "find": lambda users: users.find(nope=1),
    "find-among-known": lambda users: users.find(name="A", nope=1),
    "find_one": lambda users: users.find_one(nope=1),
    "order_by": lambda users: users.find(order_by="nope"),
    "order_by-desc": lambda users: users.find(order_by=["id", "-nope"]),
    "add": lambda users: users.add(email="a@example.com", name="A", nope=1),
    "update": lambda users: users.update(1, nope=1),
}


def test_unknown_column_is_rejected_before_any_sql(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)

    for label, call in UNKNOWN_COLUMN_CALLS.items():
        error = _raised(dal.UnknownColumnError, label, call, users)

        assert isinstance(error, ValueError), label
        assert isinstance(error, dal.InvalidArgument), label
        assert "'nope'" in str(error), label
        assert "User" in str(error), label

    assert statements.all == []
    _nothing_cached(db)


def test_unknown_column_message_lists_the_known_columns(db: dal.Database) -> None:
    with pytest.raises(dal.UnknownColumnError, match="email") as raised:
        Users(db).find(emial="a@example.com")

    assert "'emial'" in str(raised.value)


# --- uncacheable arguments ----------------------------------------------------------------


def test_unhashable_argument_names_the_parameter(
    db: dal.Database, statements: StatementLog
) -> None:
    calls: list[Any] = []

    @dal.cached_query(db, depends_on=[User])
    def by_ids(session: Session, ids: Any, limit: int = 10) -> list[int]:
        calls.append(ids)
        return []

    with pytest.raises(dal.UncacheableArgument, match="'ids'") as positional:
        by_ids([1, 2])
    with pytest.raises(dal.UncacheableArgument, match="'ids'") as keyword:
        by_ids(limit=5, ids={1: 2})

    assert isinstance(positional.value, TypeError)
    assert isinstance(keyword.value, TypeError)
    assert "list" in str(positional.value)
    assert calls == []
    assert statements.all == []
    assert by_ids.cache_info().currsize == 0
    assert by_ids((1, 2)) == []  # the hashable spelling works


def test_invalidate_with_an_unhashable_argument_is_rejected(db: dal.Database) -> None:
    @dal.cached_query(db, depends_on=[User])
    def by_ids(session: Session, ids: Any) -> list[int]:
        return []

    with pytest.raises(dal.UncacheableArgument, match="'ids'"):
        by_ids.invalidate([1])


def test_unhashable_find_filter_names_the_filter(
    db: dal.Database, statements: StatementLog
) -> None:
    with pytest.raises(dal.UncacheableArgument, match="'email'") as raised:
        Users(db).find(email=["a@example.com"])

    assert isinstance(raised.value, TypeError)
    assert statements.all == []
    _nothing_cached(db)


def test_unhashable_primary_key_is_rejected(db: dal.Database, statements: StatementLog) -> None:
    users = Users(db)

    for pk in ([1], {1}, {"id": [1]}):  # a dict by column name is a key (as Session.get takes)
        _raised(dal.UncacheableArgument, f"get({pk!r})", users.get, pk)
        _raised(dal.UncacheableArgument, f"get_many([1, {pk!r}])", users.get_many, [1, pk])

    assert statements.all == []
    _nothing_cached(db)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("not a url", "not a url"),
        ("postgresql+asyncpg://app@127.0.0.1/app", "postgresql+asyncpg"),
        ("mysql+mysqlconnector://app@127.0.0.1/app", "mysql+mysqlconnector"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_bad_url_or_driver_is_a_config_error(url: str, named: str) -> None:
    with pytest.raises(dal.ConfigError) as raised:
        dal.Database(url)

    assert isinstance(raised.value, ValueError)
    assert named in str(raised.value)


@pytest.mark.parametrize("url", ["postgre://app@127.0.0.1/app", "nosuchdb://app@127.0.0.1/app"])
def test_unknown_backend_name_is_a_config_error(url: str) -> None:
    """A scheme SQLAlchemy has no dialect for (a typo; postgres:// is accepted, see test_urls)."""
    with pytest.raises(dal.ConfigError) as raised:
        dal.Database(url)

    assert url.split(":")[0] in str(raised.value)


def test_bad_url_in_the_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAL_DATABASE_URL", "oracle+cx_oracle://app@db/app")

    with pytest.raises(dal.ConfigError, match=r"oracle\+cx_oracle"):
        dal.Database()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"pool_size": -1}, "pool_size=-1"),
        ({"pool_size": 0}, "pool_size=0"),
        ({"pool_size": 2.5}, "2.5"),
        ({"pool_size": "5"}, "'5'"),
        ({"max_overflow": -1}, "max_overflow=-1"),
        ({"pool_timeout": -1}, "pool_timeout=-1"),
        ({"pool_timeout": 0}, "pool_timeout=0"),
        ({"pool_timeout": "soon"}, "'soon'"),
        ({"pool_recycle": -5}, "pool_recycle=-5"),
        ({"pool_pre_ping": "yes"}, "'yes'"),
        ({"cache_size": 0}, "cache_size=0"),
        ({"cache_size": -10}, "cache_size=-10"),
        ({"cache_bytes": 0}, "cache_bytes=0"),
        ({"ttl": 0}, "ttl=0"),
        ({"ttl": -5}, "ttl=-5"),
        ({"ttl": "1h"}, "'1h'"),
        ({"ttl": True}, "True"),
        ({"invalidation": "redis"}, "'redis'"),
    ],
)
def test_bad_setting_is_a_config_error_naming_the_value(
    db_url: str, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(dal.ConfigError) as raised:
        dal.Database(db_url, **settings)

    assert isinstance(raised.value, ValueError)
    assert named in str(raised.value)


def test_postgres_invalidation_on_sqlite_is_a_config_error(sqlite_url: str) -> None:
    with pytest.raises(dal.ConfigError, match="sqlite"):
        dal.Database(sqlite_url, invalidation="postgres")


BAD_TTLS = (0, -1.5, "60", True)


def test_bad_repository_ttl_is_a_config_error(db: dal.Database) -> None:
    for ttl in BAD_TTLS:

        class Bad(dal.Repository[User]):
            model = User

        Bad.ttl = ttl

        error = _raised(dal.ConfigError, f"ttl={ttl!r}", Bad, db)
        assert repr(ttl) in str(error)


def test_bad_cached_query_ttl_is_a_config_error(db: dal.Database) -> None:
    for ttl in BAD_TTLS:
        decorator = partial(dal.cached_query, db, depends_on=[User], ttl=ttl)
        error = _raised(dal.ConfigError, f"ttl={ttl!r}", decorator)
        assert repr(ttl) in str(error)


# --- a closed Database --------------------------------------------------------------------


CLOSED_CALLS: dict[str, Callable[[dal.Database, Users, Any], Any]] = {
    "engine": lambda db, users, fn: db.engine,
    "session": lambda db, users, fn: db.session().__enter__(),
    "get-cached": lambda db, users, fn: users.get(1),
    "get-new": lambda db, users, fn: users.get(2),
    "get_many": lambda db, users, fn: users.get_many([1, 2]),
    "find-cached": lambda db, users, fn: users.find(name="A"),
    "find_one": lambda db, users, fn: users.find_one(name="A"),
    "add": lambda db, users, fn: users.add(email="b@example.com", name="B"),
    "update": lambda db, users, fn: users.update(1, name="B"),
    "delete": lambda db, users, fn: users.delete(1),
    "cached_query-cached": lambda db, users, fn: fn(1),
    "cached_query-new": lambda db, users, fn: fn(2),
    "new-repository": lambda db, users, fn: Users(db).get(1),
}


def _closed_after_use(url: Any) -> tuple[dal.Database, Users, Any]:
    """A Database whose cache held a row, a find and a query result when it was closed."""
    db = dal.Database(url)
    users = Users(db)

    @dal.cached_query(db, depends_on=[User])
    def name_of(session: Session, pk: int) -> str | None:
        return session.scalar(select(User.name).where(User.id == pk))

    assert users.get(1).name == "A"
    assert [u.id for u in users.find(name="A")] == [1]
    assert name_of(1) == "A"
    db.close()
    return db, users, name_of


def test_a_closed_database_refuses_every_operation(db: dal.Database) -> None:
    Users(db).add(id=1, email="a@example.com", name="A")

    for label, call in CLOSED_CALLS.items():
        closed, users, name_of = _closed_after_use(db.settings.url)

        error = _raised(dal.DatabaseClosed, label, call, closed, users, name_of)

        assert isinstance(error, RuntimeError), label
        assert "closed" in str(error), label


def test_close_is_idempotent_and_shows_in_repr(db: dal.Database) -> None:
    db.close()
    db.close()

    assert "closed" in repr(db)


def test_database_as_a_context_manager_closes(db_url: str) -> None:
    with dal.Database(db_url) as other:
        assert "closed" not in repr(other)

    with pytest.raises(dal.DatabaseClosed):
        other.engine  # noqa: B018 - the property access is the operation under test


# --- an exhausted pool --------------------------------------------------------------------


@pytest.fixture
def tight(db: dal.Database) -> Iterator[dal.Database]:
    """A Database on the test's tables with one pooled connection and a short wait."""
    other = dal.Database(db.settings.url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    Users(other).add(id=1, email="a@example.com", name="A")
    try:
        yield other
        assert other.stats()["pool"]["checked_out"] == 0
    finally:
        other.close()


POOL_CALLS: dict[str, Callable[[dal.Database], Any]] = {
    "get": lambda db: Users(db).get(1),
    "get_many": lambda db: Users(db).get_many([1, 2]),
    "find": lambda db: Users(db).find(name="A"),
    "add": lambda db: Users(db).add(email="b@example.com", name="B"),
    "update": lambda db: Users(db).update(1, name="B"),
    "session": lambda db: _session_read(db),
}


def _session_read(db: dal.Database) -> None:
    with db.session() as s:
        s.execute(text("SELECT 1"))


def test_an_exhausted_pool_raises_pool_timeout_naming_the_limits(tight: dal.Database) -> None:
    for count, (label, call) in enumerate(POOL_CALLS.items(), start=1):
        held = tight.engine.connect()
        try:
            assert tight.stats()["pool"]["checked_out"] == 1
            error = _raised(dal.PoolTimeout, label, call, tight)
        finally:
            held.close()

        assert isinstance(error, TimeoutError), label
        assert isinstance(error, dal.DalError), label
        assert isinstance(error.__cause__, sqlalchemy.exc.TimeoutError), label
        message = str(error)
        assert "pool_size=1" in message, label
        assert "max_overflow=0" in message, label
        assert "pool_timeout=0.1" in message, label
        assert tight.stats()["pool"]["timeouts"] == count, label
        assert tight.stats()["cache"]["currsize"] == 0, label
        assert tight.stats()["pool"]["checked_out"] == 0, label


def test_after_a_pool_timeout_the_next_read_loads(tight: dal.Database) -> None:
    users = Users(tight)
    held = tight.engine.connect()
    try:
        with pytest.raises(dal.PoolTimeout):
            users.get(1)
    finally:
        held.close()
    statements = StatementLog(tight.engine).attach()

    assert users.get(1).name == "A"

    assert len(statements.selects()) == 1
    statements.detach()


# --- integrity errors ---------------------------------------------------------------------


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    repo.add(id=1, email="a@example.com", name="A")
    repo.add(id=2, email="b@example.com", name="B")
    assert repo.get(1).email == "a@example.com"
    assert repo.get(3) is None
    return repo


def _assert_integrity_error(error: BaseException) -> None:
    assert isinstance(error, dal.IntegrityError)
    assert isinstance(error, ValueError)
    assert isinstance(error, dal.DatabaseError)
    assert isinstance(error.__cause__, sqlalchemy.exc.IntegrityError)


def test_duplicate_unique_value_on_add(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    invalidations = db.stats()["cache"]["invalidations"]

    with pytest.raises(dal.IntegrityError, match="email") as raised:
        users.add(id=3, email="a@example.com", name="copy")

    _assert_integrity_error(raised.value)
    assert db.stats()["cache"]["invalidations"] == invalidations
    statements.clear()
    assert users.get(3) is None  # the cached absence still holds, and is true
    assert statements.selects() == []
    assert users.find(email="a@example.com")[0].id == 1


def test_duplicate_unique_value_on_update(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    assert users.get(2).email == "b@example.com"

    with pytest.raises(dal.IntegrityError, match="email") as raised:
        users.update(2, email="a@example.com")

    _assert_integrity_error(raised.value)
    statements.clear()
    assert users.get(2).email == "b@example.com"
    assert statements.selects() == []
    assert users.find(email="b@example.com")[0].id == 2


def test_duplicate_unique_value_in_a_session(db: dal.Database, users: Users) -> None:
    with pytest.raises(dal.IntegrityError) as raised, db.session() as s:
        s.get(User, 1).name = "renamed"
        s.add(User(id=3, email="b@example.com", name="copy"))

    _assert_integrity_error(raised.value)
    assert users.get(1).name == "A"
    assert users.get(3) is None


def test_foreign_key_violation(db: dal.Database, users: Users) -> None:
    orders = Orders(db)

    with pytest.raises(dal.IntegrityError) as raised:
        orders.add(id=1, user_id=404, amount=1)

    _assert_integrity_error(raised.value)
    assert orders.get(1) is None


# --- failed loads -------------------------------------------------------------------------


class GhostBase(DeclarativeBase):
    pass


class Ghost(GhostBase):
    """A model whose table does not exist until the test makes it."""

    __tablename__ = "ghosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Ghosts(dal.Repository[Ghost]):
    model = Ghost


@pytest.fixture
def ghosts(db: dal.Database) -> Iterator[Ghosts]:
    try:
        yield Ghosts(db)
    finally:
        GhostBase.metadata.drop_all(db.engine)


def test_a_failed_load_is_not_cached_and_the_next_call_retries(
    db: dal.Database, ghosts: Ghosts, statements: StatementLog
) -> None:
    for _ in range(2):
        with pytest.raises(dal.DatabaseError) as raised:
            ghosts.get(1)
        assert isinstance(raised.value.__cause__, sqlalchemy.exc.DBAPIError)
        assert "ghosts" in str(raised.value)
    # Both calls went to the database: the failure was not cached.
    assert ghosts.cache_info().misses == 2
    assert ghosts.cache_info().currsize == 0

    GhostBase.metadata.create_all(db.engine)
    with db.session() as s:
        s.add(Ghost(id=1, name="Casper"))

    assert ghosts.get(1).name == "Casper"


def test_a_failed_query_is_not_cached_and_the_next_call_retries(db: dal.Database) -> None:
    calls: list[int] = []

    @dal.cached_query(db, depends_on=[User])
    def flaky(session: Session, x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise LookupError("first call fails")
        return x * 10

    with pytest.raises(LookupError, match="first call fails"):
        flaky(1)
    assert flaky.cache_info().currsize == 0

    assert flaky(1) == 10
    assert flaky(1) == 10
    assert calls == [1, 1]


def test_a_database_error_in_a_cached_query_is_translated_and_not_cached(
    db: dal.Database,
) -> None:
    calls: list[int] = []

    @dal.cached_query(db, depends_on=[User])
    def broken(session: Session) -> Any:
        calls.append(1)
        return session.execute(text("SELECT * FROM no_such_table")).all()

    for _ in range(2):
        with pytest.raises(dal.DatabaseError) as raised:
            broken()
        assert isinstance(raised.value.__cause__, sqlalchemy.exc.DBAPIError)

    assert len(calls) == 2
    assert broken.cache_info().currsize == 0


@pytest.mark.parametrize(
    ("url", "driver"),
    [("postgresql://app@127.0.0.1/app", "psycopg2"), ("sqlite:///app.db", "pysqlite")],
)
def test_a_url_without_a_driver_gets_the_supported_one(url: str, driver: str) -> None:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dal's hooks are psycopg2's.
    db = dal.Database(url)
    try:
        assert db.settings.url.get_driver_name() == driver
    finally:
        db.close()
