"""Promise 4: N concurrent misses on one key cost one query; a failed load is shared
and not cached. Real threads behind a barrier; the load is held until every
thread has missed, so all of them meet the one flight."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
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


# -- wait cycles across threads ---------------------------------------------------------


def _waiting(db: dal.Database) -> dict[int, Any]:
    """Which thread waits on which load, as the store's waits-for graph has it."""
    with db._store.lock:
        return dict(db._store._waiting)


def _run_named(calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each call in a thread of that name; each one's value or error, by name."""
    outcome: dict[str, Any] = {}

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            outcome[name] = call()
        except BaseException as exc:
            outcome[name] = exc

    threads = [
        threading.Thread(target=run, args=(name, call), name=name, daemon=True)
        for name, call in calls.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in threads), "threads deadlocked"
    return outcome


def _is_waiting(db: dal.Database, thread: str) -> bool:
    idents = {t.ident for t in threading.enumerate() if t.name == thread}
    return bool(idents & _waiting(db).keys())


def _mutual(db: dal.Database, *, catch: bool) -> tuple[dict[str, Any], Any, Any]:
    """f(n) loads g(n); g(n) loads f(n). Thread A calls f, thread B calls g.

    Both loads start (a barrier), A then waits on B's load of g, and only then does
    B ask for f, which A is loading: B's wait would close the cycle.
    """
    both_loading = threading.Barrier(2, timeout=10)

    @dal.cached_query(db, depends_on=[User])
    def f(session: Any, n: int) -> int:
        both_loading.wait()
        return g(n) + 1

    @dal.cached_query(db, depends_on=[User])
    def g(session: Any, n: int) -> int:
        both_loading.wait()
        wait_until(lambda: _is_waiting(db, "A"))
        try:
            return f(n) + 10
        except dal.DalError:
            if not catch:
                raise
            return -10

    return _run_named({"A": lambda: f(1), "B": lambda: g(1)}), f, g


def test_two_functions_calling_each_other_from_two_threads_get_an_error_not_a_deadlock(
    db,
) -> None:
    outcome, f, g = _mutual(db, catch=False)

    closing = outcome["B"]
    assert isinstance(closing, dal.DalError)
    message = str(closing)
    assert "cycle" in message
    assert "thread 'B' waits for _mutual.<locals>.f(1)" in message and "loaded by 'A'" in message
    assert "which waits for _mutual.<locals>.g(1)" in message
    # A waited on B's load of g, which failed with that error: A gets it as well.
    assert outcome["A"] is closing
    assert _waiting(db) == {}
    assert db.stats()["cache"]["in_flight"] == 0
    assert f.cache_info().currsize == g.cache_info().currsize == 0


def test_the_loads_around_a_refused_wait_go_on(db) -> None:
    """The thread that would close the cycle gets the error; if its code handles
    it, every other load in the cycle finishes with the values it computed."""
    outcome, f, g = _mutual(db, catch=True)

    assert outcome == {"B": -10, "A": -9}  # g(1) falls back to -10; f(1) = g(1) + 1
    assert g(1) == -10 and f(1) == -9  # both cached now
    assert g.cache_info().hits == f.cache_info().hits == 1


def test_a_three_thread_wait_cycle_is_refused_in_the_thread_that_closes_it(db) -> None:
    """f loads g, g loads h, h loads f, in threads A, B and C; C asks last."""
    all_loading = threading.Barrier(3, timeout=10)
    functions: dict[str, Any] = {}

    def define(name: str, calls: str, after: str | None) -> None:
        def body(session: Any, n: int) -> int:
            all_loading.wait()
            if after is not None:
                wait_until(lambda: _is_waiting(db, after))
            return functions[calls](n) + 1

        body.__qualname__ = name
        functions[name] = dal.cached_query(db, depends_on=[User])(body)

    define("f", "g", None)  # A waits on B's g first
    define("g", "h", "A")  # then B waits on C's h
    define("h", "f", "B")  # and C would wait on A's f: the cycle closes

    outcome = _run_named({n: partial(functions[f], 1) for n, f in zip("ABC", "fgh", strict=True)})

    closing = outcome["C"]
    assert isinstance(closing, dal.DalError)
    message = str(closing)
    assert "thread 'C' waits for f(1), loaded by 'A', which waits for g(1)" in message
    assert "g(1), loaded by 'B', which waits for h(1), loaded by 'C'" in message
    assert outcome["A"] is closing and outcome["B"] is closing
    assert _waiting(db) == {}
