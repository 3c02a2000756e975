"""Promise 5: entries are bounded by cache_size, and eviction is least recently *used*.

Hits must refresh recency on every read path, including the repository's direct hit
path, which reads the LRU's entries without going through ``LRUCache.__getitem__``.
Every test runs twice: on cachetools' own recency order (the fast view), and on the
fallback the store uses if those internals ever change; both must behave alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

import dal
from dal.store import cache, lru
from tests.models import Orders, User, Users
from tests.sqllog import StatementLog

A, B, C = 1, 2, 3


@pytest.fixture(params=["fast", "fallback"])
def views(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which view of the LRU's order the stores made in this test use on their hit paths."""
    if request.param == "fallback":
        monkeypatch.setattr(cache, "hit_order", lru.fallback_order)
    return str(request.param)


@pytest.fixture
def small(db: dal.Database, views: str) -> Iterator[tuple[dal.Database, StatementLog]]:
    """A Database holding two entries, on the test's tables with users A, B and C."""
    seed = Users(db)
    for pk in (A, B, C):
        seed.add(id=pk, email=f"u{pk}@example.com", name=f"user{pk}")
    other = dal.Database(db.settings.url, cache_size=2)
    assert isinstance(other._store.order, OrderedDict) is (views == "fast")
    log = StatementLog(other.engine).attach()
    try:
        yield other, log
        assert other.stats()["pool"]["checked_out"] == 0
    finally:
        log.detach()
        other.close()


def _loads(log: StatementLog, read: Callable[[], Any]) -> bool:
    """Whether ``read()`` went to the database."""
    log.clear()
    read()
    return bool(log.selects())


def test_hits_on_the_direct_path_keep_an_entry_recent(
    small: tuple[dal.Database, StatementLog],
) -> None:
    db, log = small
    users = Users(db)
    users.get(A)
    users.get(B)
    assert not _loads(log, lambda: users.get(A))  # A is now more recent than B

    users.get(C)  # evicts the least recently used: B

    assert db.stats()["cache"]["evictions"] == 1
    assert not _loads(log, lambda: users.get(A))
    assert _loads(log, lambda: users.get(B))


def test_without_hits_the_oldest_entry_is_evicted(
    small: tuple[dal.Database, StatementLog],
) -> None:
    db, log = small
    users = Users(db)
    users.get(A)
    users.get(B)

    users.get(C)

    assert not _loads(log, lambda: users.get(B))
    assert _loads(log, lambda: users.get(A))


def test_hits_inside_a_session_keep_an_entry_recent(
    small: tuple[dal.Database, StatementLog],
) -> None:
    """Inside a session that has not written, hits go through the store's own lookup."""
    db, log = small
    users = Users(db)
    users.get(A)
    users.get(B)
    with db.session():
        assert not _loads(log, lambda: users.get(A))

    users.get(C)

    assert not _loads(log, lambda: users.get(A))
    assert _loads(log, lambda: users.get(B))


def test_get_many_hits_keep_entries_recent(small: tuple[dal.Database, StatementLog]) -> None:
    db, log = small
    users = Users(db)
    users.get(A)
    users.get(B)
    assert not _loads(log, lambda: users.get_many([A]))

    users.get(C)

    assert not _loads(log, lambda: users.get(A))
    assert _loads(log, lambda: users.get(B))


def test_find_hits_keep_entries_recent(small: tuple[dal.Database, StatementLog]) -> None:
    db, log = small
    users = Users(db)
    users.find(name="user1")
    users.get(B)
    assert not _loads(log, lambda: users.find(name="user1"))

    users.get(C)

    assert not _loads(log, lambda: users.find(name="user1"))
    assert _loads(log, lambda: users.get(B))


def test_cached_query_hits_keep_entries_recent(
    small: tuple[dal.Database, StatementLog],
) -> None:
    db, log = small
    users = Users(db)

    @dal.cached_query(db, depends_on=[User])
    def name_of(session: Session, pk: int) -> str | None:
        return session.scalar(select(User.name).where(User.id == pk))

    name_of(A)
    users.get(B)
    assert not _loads(log, lambda: name_of(A))

    users.get(C)

    assert not _loads(log, lambda: name_of(A))
    assert _loads(log, lambda: users.get(B))


def test_an_insert_of_unknown_keys_does_not_refresh_recency(
    small: tuple[dal.Database, StatementLog],
) -> None:
    """Dropping cached absences after an INSERT ... SELECT must not touch the other
    entries of the namespace: housekeeping is not use."""
    db, log = small
    users, orders = Users(db), Orders(db)
    users.get(A)
    orders.get(1)  # an absence in another namespace, more recent than A
    with db.engine.begin() as conn:
        copy = select(User.id + 10, User.email + "x", User.name).where(User.id == C)
        conn.execute(insert(User).from_select(["id", "email", "name"], copy))

    users.get(B)  # evicts the least recently used: A

    assert not _loads(log, lambda: orders.get(1))
    assert _loads(log, lambda: users.get(A))


def test_currsize_stays_within_cache_size(small: tuple[dal.Database, StatementLog]) -> None:
    db, _ = small
    users = Users(db)

    found = users.get_many([A, B, C, 404])

    assert found.keys() == {A, B, C}  # every value is returned, even those not kept
    assert db.stats()["cache"]["currsize"] == 2
    assert users.cache_info().currsize == 2
    assert db.stats()["cache"]["evictions"] == 2


def test_an_evicted_entry_is_reloaded_fresh(small: tuple[dal.Database, StatementLog]) -> None:
    db, _ = small
    users = Users(db)
    users.get(A)
    users.get(B)
    users.get(C)  # A evicted

    users.update(A, name="renamed")

    assert users.get(A).name == "renamed"


def test_an_expired_entry_is_reloaded_and_a_live_one_is_not(
    small: tuple[dal.Database, StatementLog],
) -> None:
    db, log = small

    class Short(Users):
        ttl = 10.0

    short = Short(db)
    with freeze_time("2030-01-01 00:00:00") as clock:
        short.get(A)
        clock.tick(9)
        assert not _loads(log, lambda: short.get(A))
        clock.tick(2)
        assert _loads(log, lambda: short.get(A))
        assert not _loads(log, lambda: short.get(A))

    assert db.stats()["cache"]["expirations"] == 1
