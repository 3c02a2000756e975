"""db.stats(): cache counters and pool gauges move as the calls that drive them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

import dal
from tests.models import User, Users

CACHE_KEYS = {"hits", "misses", "loads", "stale_fills_prevented", "evictions", "invalidations"}
POOL_KEYS = {"size", "checked_out", "overflow", "connects", "timeouts"}


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    for i in (1, 2, 3):
        repo.add(id=i, email=f"u{i}@example.com", name=f"user{i}")
    return repo


def _cache(db: dal.Database) -> dict[str, Any]:
    return dict(db.stats()["cache"])


def _moved(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The counters that changed, by how much."""
    return {
        key: after[key] - before[key]
        for key in CACHE_KEYS
        if isinstance(after[key], int) and after[key] != before[key]
    }


def test_stats_has_the_documented_keys(db: dal.Database) -> None:
    stats = db.stats()

    assert set(stats) >= {"cache", "pool"}
    assert set(stats["cache"]) >= CACHE_KEYS
    assert set(stats["pool"]) >= POOL_KEYS


def test_a_new_database_starts_at_zero(db: dal.Database) -> None:
    stats = db.stats()

    assert {key: stats["cache"][key] for key in CACHE_KEYS} == dict.fromkeys(CACHE_KEYS, 0)
    assert stats["pool"]["checked_out"] == 0
    assert stats["pool"]["connects"] == 0
    assert stats["pool"]["timeouts"] == 0
    assert stats["pool"]["size"] == db.settings.pool_size


def test_stats_is_a_snapshot(db: dal.Database, users: Users) -> None:
    snapshot = db.stats()
    snapshot["cache"]["hits"] = 1000

    assert db.stats()["cache"]["hits"] == 0


def test_a_miss_then_a_hit(db: dal.Database, users: Users) -> None:
    before = _cache(db)
    users.get(1)
    after_miss = _cache(db)
    users.get(1)
    after_hit = _cache(db)

    assert _moved(before, after_miss) == {"misses": 1, "loads": 1}
    assert _moved(after_miss, after_hit) == {"hits": 1}


def test_a_cached_absence_counts_like_a_row(db: dal.Database, users: Users) -> None:
    before = _cache(db)
    users.get(404)
    users.get(404)

    assert _moved(before, _cache(db)) == {"misses": 1, "loads": 1, "hits": 1}


def test_find_and_cached_query_count_too(db: dal.Database, users: Users) -> None:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name)))

    before = _cache(db)
    users.find(name="user1")
    users.find(name="user1")
    names()
    names()
    names()

    assert _moved(before, _cache(db)) == {"misses": 2, "loads": 2, "hits": 3}


def test_get_many_is_one_load_for_all_misses(db: dal.Database, users: Users) -> None:
    users.get(1)
    before = _cache(db)

    users.get_many([1, 2, 3, 404])

    assert _moved(before, _cache(db)) == {"hits": 1, "misses": 3, "loads": 1}


def test_evictions_with_a_small_cache(
    users: Users, open_database: Callable[..., dal.Database]
) -> None:
    small = open_database(cache_size=2)
    repo = Users(small)

    repo.get(1)
    repo.get(2)
    assert small.stats()["cache"]["evictions"] == 0
    repo.get(3)
    repo.get(404)

    cache = small.stats()["cache"]
    assert cache["evictions"] == 2
    assert cache["currsize"] == 2
    assert cache["maxsize"] == 2


def test_invalidations_count_committed_writes(db: dal.Database, users: Users) -> None:
    before = _cache(db)["invalidations"]

    users.update(1, name="a")
    users.delete(3)
    with db.session() as s:  # one transaction, one invalidation
        s.get(User, 1).name = "b"
        s.get(User, 2).name = "c"
    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.id == 2).values(balance=1))

    assert _cache(db)["invalidations"] == before + 4


def test_reads_and_rollbacks_count_no_invalidation(db: dal.Database, users: Users) -> None:
    before = _cache(db)["invalidations"]

    users.get(1)
    users.find()
    with db.session() as s:
        s.get(User, 1)
    with db.engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    with db.engine.connect() as conn:
        conn.execute(update(User).where(User.id == 1).values(name="rolled back"))
        conn.rollback()

    assert _cache(db)["invalidations"] == before


def test_a_write_during_a_load_is_a_prevented_stale_fill(db: dal.Database, users: Users) -> None:
    """A commit while a load runs revokes its lease: the value it read is not stored."""
    writes: list[str] = []

    @dal.cached_query(db, depends_on=[User])
    def name_of_1(session: Session) -> str | None:
        name = session.scalar(select(User.name).where(User.id == 1))
        if not writes:
            writes.append("renamed")
            Users(db).update(1, name="renamed")  # commits while this load is in flight
        return name

    assert name_of_1() == "user1"
    assert _cache(db)["stale_fills_prevented"] == 1
    assert name_of_1.cache_info().currsize == 0
    assert name_of_1() == "renamed"
    assert name_of_1.cache_info().currsize == 1


def test_checked_out_follows_held_connections(db: dal.Database, users: Users) -> None:
    assert db.stats()["pool"]["checked_out"] == 0

    with db.engine.connect() as first:
        assert db.stats()["pool"]["checked_out"] == 1
        with db.engine.connect() as second:
            assert db.stats()["pool"]["checked_out"] == 2
            assert first is not second
        assert db.stats()["pool"]["checked_out"] == 1

    assert db.stats()["pool"]["checked_out"] == 0


def test_checked_out_during_a_session(db: dal.Database, users: Users) -> None:
    with db.session() as s:
        s.get(User, 1)
        assert db.stats()["pool"]["checked_out"] == 1

    assert db.stats()["pool"]["checked_out"] == 0


def test_connects_counts_new_connections_only(db: dal.Database, users: Users) -> None:
    connects = db.stats()["pool"]["connects"]
    assert connects >= 1  # the fixture's writes opened one

    for pk in (1, 2, 3, 404):
        users.get(pk)

    assert db.stats()["pool"]["connects"] == connects  # reused from the pool


def test_overflow_gauge(users: Users, open_database: Callable[..., dal.Database]) -> None:
    small = open_database(pool_size=1, max_overflow=2)

    with small.engine.connect(), small.engine.connect():
        pool = small.stats()["pool"]
        assert (pool["size"], pool["checked_out"], pool["overflow"]) == (1, 2, 1)

    pool = small.stats()["pool"]
    assert (pool["checked_out"], pool["overflow"]) == (0, 0)
