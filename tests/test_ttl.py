"""Promise 5: TTL bounds the age of an entry. The store reads its clock at call time,
so freezegun moves it: no sleeps.

Every entry in these tests is loaded inside ``freeze_time``: an entry loaded on the
real clock would compare against the frozen one.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import dal
from tests.models import User, Users
from tests.sqllog import StatementLog

START = datetime.datetime(2030, 1, 1, 12, 0, 0)
DB_TTL = 300.0  # the Database default, which the ``db`` fixture uses


class ShortUsers(dal.Repository[User]):
    model = User
    ttl = 5.0


class LongUsers(dal.Repository[User]):
    model = User
    ttl = 1000.0


class ForeverUsers(dal.Repository[User]):
    model = User
    ttl = None


@pytest.fixture
def seeded(db: dal.Database) -> dal.Database:
    Users(db).add(id=1, email="a@example.com", name="A")
    return db


@pytest.fixture
def clock() -> Iterator[Any]:
    # pytest's own timer stays real, so --durations stays true for these tests.
    with freeze_time(START, ignore=["_pytest.timing"]) as frozen:
        yield frozen


def _loads(statements: StatementLog, read: Callable[[], Any]) -> bool:
    """Whether ``read()`` went to the database."""
    statements.clear()
    read()
    return bool(statements.selects())


def test_db_settings_are_the_documented_default(db: dal.Database) -> None:
    assert db.settings.ttl == DB_TTL


def test_a_row_expires_after_the_database_ttl(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    users = Users(seeded)
    assert _loads(statements, lambda: users.get(1))

    clock.tick(DB_TTL - 1)
    assert not _loads(statements, lambda: users.get(1))
    clock.tick(2)
    assert _loads(statements, lambda: users.get(1))
    assert seeded.stats()["cache"]["expirations"] == 1


def test_a_reloaded_row_lives_a_full_ttl_again(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    users = Users(seeded)
    users.get(1)
    clock.tick(DB_TTL + 1)
    assert _loads(statements, lambda: users.get(1))

    clock.tick(DB_TTL - 2)
    assert not _loads(statements, lambda: users.get(1))


def test_an_expired_row_returns_the_current_value(
    seeded: dal.Database, clock: Any, open_database: Callable[..., dal.Database]
) -> None:
    """A write the cache never saw (another Database) shows once the entry expires."""
    users = Users(seeded)
    assert users.get(1).name == "A"
    Users(open_database()).update(1, name="changed elsewhere")

    clock.tick(DB_TTL + 1)

    assert users.get(1).name == "changed elsewhere"


def test_a_cached_absence_expires_too(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    users = Users(seeded)
    assert users.get(404) is None
    clock.tick(DB_TTL - 1)
    assert not _loads(statements, lambda: users.get(404))

    clock.tick(2)
    assert _loads(statements, lambda: users.get(404))


def test_find_and_get_many_results_expire(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    users = Users(seeded)
    users.find(name="A")
    users.get_many([1, 2])
    clock.tick(DB_TTL - 1)
    assert not _loads(statements, lambda: (users.find(name="A"), users.get_many([1, 2])))

    clock.tick(2)
    assert _loads(statements, lambda: users.find(name="A"))
    assert _loads(statements, lambda: users.get_many([1, 2]))


def test_move_to_a_later_time_expires_entries(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    users = Users(seeded)
    users.get(1)

    clock.move_to(START + datetime.timedelta(hours=1))

    assert _loads(statements, lambda: users.get(1))


def test_a_shorter_repository_ttl_overrides_the_database(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    short, default = ShortUsers(seeded), Users(seeded)
    short.get(1)
    default.get(1)

    clock.tick(4)
    assert not _loads(statements, lambda: short.get(1))
    clock.tick(2)
    assert _loads(statements, lambda: short.get(1))
    assert not _loads(statements, lambda: default.get(1))


def test_a_longer_repository_ttl_overrides_the_database(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    long, default = LongUsers(seeded), Users(seeded)
    long.get(1)
    default.get(1)

    clock.tick(DB_TTL + 1)
    assert not _loads(statements, lambda: long.get(1))
    assert _loads(statements, lambda: default.get(1))
    clock.tick(1000 - DB_TTL)
    assert _loads(statements, lambda: long.get(1))


def test_repository_ttl_none_never_expires(
    seeded: dal.Database, statements: StatementLog, clock: Any
) -> None:
    forever = ForeverUsers(seeded)
    forever.get(1)
    forever.get(404)

    clock.move_to(START + datetime.timedelta(days=3650))

    assert not _loads(statements, lambda: (forever.get(1), forever.get(404)))


def test_database_ttl_none_never_expires(
    seeded: dal.Database, clock: Any, open_database: Callable[..., dal.Database]
) -> None:
    lru_only = open_database(ttl=None)
    statements = StatementLog(lru_only.engine).attach()
    users = Users(lru_only)
    users.get(1)

    clock.move_to(START + datetime.timedelta(days=3650))

    assert not _loads(statements, lambda: users.get(1))
    statements.detach()


def test_a_repository_ttl_applies_on_a_database_without_ttl(
    seeded: dal.Database, clock: Any, open_database: Callable[..., dal.Database]
) -> None:
    lru_only = open_database(ttl=None)
    statements = StatementLog(lru_only.engine).attach()
    short = ShortUsers(lru_only)
    short.get(1)

    clock.tick(6)

    assert _loads(statements, lambda: short.get(1))
    statements.detach()


def test_cached_query_uses_the_database_ttl_by_default(seeded: dal.Database, clock: Any) -> None:
    calls: list[int] = []

    @dal.cached_query(seeded, depends_on=[User])
    def count(session: Session) -> int:
        calls.append(1)
        return session.scalar(select(func.count()).select_from(User))

    count()
    clock.tick(DB_TTL - 1)
    count()
    assert len(calls) == 1
    clock.tick(2)
    count()
    assert len(calls) == 2


def test_cached_query_ttl_overrides_the_database(seeded: dal.Database, clock: Any) -> None:
    calls: list[int] = []

    @dal.cached_query(seeded, depends_on=[User], ttl=30.0)
    def count(session: Session) -> int:
        calls.append(1)
        return session.scalar(select(func.count()).select_from(User))

    count()
    clock.tick(29)
    count()
    assert len(calls) == 1
    clock.tick(2)
    count()
    assert len(calls) == 2


def test_cached_query_ttl_none_never_expires(seeded: dal.Database, clock: Any) -> None:
    calls: list[int] = []

    @dal.cached_query(seeded, depends_on=[User], ttl=None)
    def count(session: Session) -> int:
        calls.append(1)
        return session.scalar(select(func.count()).select_from(User))

    count()
    clock.move_to(START + datetime.timedelta(days=3650))
    count()

    assert len(calls) == 1


def test_a_write_still_invalidates_within_the_ttl(seeded: dal.Database, clock: Any) -> None:
    users = ForeverUsers(seeded)
    assert users.get(1).name == "A"

    Users(seeded).update(1, name="B")

    assert users.get(1).name == "B"
