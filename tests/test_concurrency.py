"""Promise 4: N concurrent misses on one key cost one query; a failed load is shared
and not cached. Real threads behind a barrier; the load is held until every
thread has missed, so all of them meet the one flight."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, select

import dal
from tests.models import User, Users
from tests.waiting import wait_until

THREADS = 64


def _stampede(call: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``call(i)`` in THREADS threads released together by a barrier."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        try:
            value = call(index)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def _misses(db: dal.Database) -> int:
    return int(db.stats()["cache"]["misses"])


def _hold_loads_until(db: dal.Database, condition: Callable[[], bool]) -> None:
    """Every load waits, as it checks out its connection, until ``condition`` holds."""
    event.listen(db.engine, "checkout", lambda *args: wait_until(condition))


def test_concurrent_misses_on_one_row_issue_one_select(db, statements) -> None:
    users = Users(db)
    pk = users.add(email="a@example.com", name="A").id
    _hold_loads_until(db, lambda: _misses(db) >= THREADS)
    statements.clear()

    results, errors = _stampede(lambda i: users.get(pk))

    assert errors == []
    assert len(statements.selects()) == 1
    assert {r.name for r in results} == {"A"} and len(results) == THREADS
    assert db.stats()["cache"]["loads"] == 1


def test_concurrent_misses_on_one_query_call_the_function_once(db) -> None:
    Users(db).add(email="a@example.com", name="A")
    calls: list[int] = []

    @dal.cached_query(db, depends_on=[User])
    def names(session: Any) -> list[str]:
        calls.append(1)
        wait_until(lambda: _misses(db) >= THREADS)
        return list(session.scalars(select(User.name)))

    results, errors = _stampede(lambda i: names())

    assert errors == []
    assert len(calls) == 1
    assert results == [["A"]] * THREADS


def test_a_failed_load_reaches_every_waiter_and_is_not_cached(db) -> None:
    calls: list[int] = []

    @dal.cached_query(db, depends_on=[User])
    def fragile(session: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            wait_until(lambda: _misses(db) >= THREADS)
            raise LookupError("backend said no")
        return 42

    results, errors = _stampede(lambda i: fragile())

    assert results == []
    assert len(errors) == THREADS
    assert all(isinstance(e, LookupError) and str(e) == "backend said no" for e in errors)
    assert len(calls) == 1
    assert fragile.cache_info().currsize == 0
    assert fragile() == 42  # the next call loads again
    assert len(calls) == 2


@pytest.mark.parametrize("keys", [2, 16])
def test_get_many_shares_flights_with_concurrent_gets(db, statements, keys: int) -> None:
    users = Users(db)
    pks = [users.add(email=f"u{i}@example.com", name=f"U{i}").id for i in range(keys)]
    _hold_loads_until(db, lambda: _misses(db) >= keys + THREADS - 1)
    statements.clear()

    def call(index: int) -> Any:
        # Thread 0 asks for all keys at once; the others each for one key.
        return users.get_many(pks) if index == 0 else users.get(pks[index % keys])

    results, errors = _stampede(call)
    assert errors == []
    assert _misses(db) == keys + THREADS - 1
    # Every thread missed before any load finished, so each key had exactly one
    # loader: at most one query a key, and no key loaded twice.
    selects = statements.selects()
    assert 1 <= len(selects) <= keys
    assert db.stats()["cache"]["loads"] == len(selects)
    many = next(r for r in results if isinstance(r, dict))
    assert sorted(many) == sorted(pks)
    assert sorted(users.get_many(pks)) == sorted(pks)


def test_a_function_that_loads_its_own_key_gets_an_error_not_a_deadlock(db) -> None:
    @dal.cached_query(db, depends_on=[User])
    def recursive(session: Any, n: int) -> int:
        return recursive(n)

    with pytest.raises(dal.DalError, match="requested itself"):
        recursive(1)
    assert recursive.cache_info().currsize == 0
