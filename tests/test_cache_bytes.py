"""Promise 5: ``cache_bytes`` bounds what the cache really holds.

What the cache holds is measured with ``tracemalloc``: the memory still allocated
after filling the cache with far more than the budget, from a cleared cache, with
the code paths warmed up. Once the cache is full, that must be within TOLERANCE of
``cache_bytes``: above by at most that (it is a bound), and below by at most that
(the accounting does not waste the budget by counting what entries do not hold).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import dal
from tests.models import User, Users

BUDGET = 1_000_000
#: How far the memory held may be from ``cache_bytes`` once the cache is full.
TOLERANCE = 0.2
ROWS = 4_000


@pytest.fixture
def make_bounded(
    db: dal.Database, open_database: Callable[..., dal.Database]
) -> Callable[[int], dal.Database]:
    """Makes Databases bounded by bytes (not by entries), over ROWS users."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "mysql":  # id 0 is a row here, not "the next AUTO_INCREMENT"
            conn.exec_driver_sql(
                "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')"
            )
        conn.execute(
            User.__table__.insert(),
            [
                {"id": i, "email": f"user{i}@example.com", "name": f"user number {i} " * 8}
                for i in range(ROWS)
            ],
        )
    return lambda budget: open_database(cache_bytes=budget, cache_size=1_000_000)


@pytest.fixture
def bounded(make_bounded: Callable[[int], dal.Database]) -> dal.Database:
    return make_bounded(BUDGET)


def _held(db: dal.Database, fill: Callable[[], Any]) -> int:
    """Bytes still allocated after ``fill()`` has run on a cleared cache."""
    fill()  # warm: statements compiled, the pool connected
    db._store.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _assert_bounded(db: dal.Database, held: int, budget: int = BUDGET) -> None:
    stats = db.stats()["cache"]
    assert stats["evictions"] > 0, "the fill never reached the budget"
    assert held <= budget * (1 + TOLERANCE), f"{held:,} bytes held, bound {budget:,}"
    assert held >= budget * (1 - TOLERANCE), f"{held:,} bytes held of {budget:,}: overcounted"


# The store's dicts grow in powers of two (at 2/3 full), so what an entry costs in
# bookkeeping depends on how full they are: the budgets hold just more entries than
# a doubling (683, 1366: the most per entry), and just fewer (the least).
@pytest.mark.parametrize("entries", [700, 1300, 1400])
def test_records_stay_within_cache_bytes(
    make_bounded: Callable[[int], dal.Database], entries: int
) -> None:
    probe = make_bounded(10 * BUDGET)
    Users(probe).get_many(range(ROWS - 100, ROWS))  # like those the cache ends with
    counted = [slot.size for slot in probe._store.data]
    budget = entries * sum(counted) // len(counted)
    bounded = make_bounded(budget)
    users = Users(bounded)

    def fill() -> None:
        for start in range(0, ROWS, 500):
            users.get_many(range(start, start + 500))

    held = _held(bounded, fill)
    assert abs(len(bounded._store.data) - entries) < 10
    _assert_bounded(bounded, held, budget)


def test_cached_lists_of_records_stay_within_cache_bytes(bounded: dal.Database) -> None:
    @dal.cached_query(bounded, depends_on=[User])
    def page(session: Session, n: int) -> list[Any]:
        query = select(User).where(User.id >= n * 20).order_by(User.id).limit(20)
        return list(session.scalars(query))

    def fill() -> None:
        for n in range(ROWS // 20):
            assert len(page(n)) == 20

    _assert_bounded(bounded, _held(bounded, fill))


def test_cached_nested_dicts_stay_within_cache_bytes(bounded: dal.Database) -> None:
    @dal.cached_query(bounded, depends_on=[User])
    def report(session: Session, n: int) -> dict[str, Any]:
        return {
            "page": n,
            "rows": [
                {"id": i, "label": f"row {i} of {n}", "tags": [f"t{i}", f"u{n}"]} for i in range(20)
            ],
            "meta": {"title": f"report {n}", "sizes": list(range(300, 320))},
        }

    def fill() -> None:
        for n in range(400):
            report(n)

    _assert_bounded(bounded, _held(bounded, fill))


def test_find_keys_with_large_arguments_stay_within_cache_bytes(bounded: dal.Database) -> None:
    """Nothing matches, so each entry is an empty result: its key is what it holds."""
    users = Users(bounded)

    def fill() -> None:
        for n in range(200):
            assert users.find(name=f"{n:05} " + "x" * 20_000) == []

    _assert_bounded(bounded, _held(bounded, fill))


def test_bytes_are_counted_when_filling_never_on_a_hit(
    bounded: dal.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dal.store import cache

    counted: list[Any] = []
    real = cache.entry_size
    monkeypatch.setattr(cache, "entry_size", lambda *a: counted.append(a) or real(*a))
    users = Users(bounded)

    users.get(1)
    users.find(name="nobody")
    for _ in range(3):
        users.get(1)
        users.find(name="nobody")
        users.get_many([1])

    assert len(counted) == 2
    assert bounded.stats()["cache"]["hits"] == 9


def test_without_cache_bytes_nothing_is_counted(
    db: dal.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dal.store import cache

    monkeypatch.setattr(cache, "entry_size", lambda *a: pytest.fail("counted"))
    Users(db).get(1)
    Users(db).get(1)
