"""Promise 4 in the store, for coroutines: one load per key shared by coroutines and
threads, a failed load reaching every waiter, a cancelled caller cancelling only
itself, a revoked lease storing nothing, waits that would never end refused.

Loads here are coroutines the test releases by hand (events, never sleeps), so each
interleaving is forced; the same behaviour through the repositories and a real
database is in ``test_aio_contract.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import dal
from dal.aio import loads
from dal.store.cache import Namespace, Store
from tests.waiting import turns_until, wait_until


def _space(store: Store) -> Namespace:
    return store.namespace("ns", "rows.get", ["t"], None)


def _run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class _Load:
    """An async load the test releases: counts calls, returns ``value`` or raises."""

    def __init__(self, value: Any = "v") -> None:
        self.value = value
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def _waiters(store: Store) -> int:
    with store.lock:
        return len(store._waiting)


#: Loads run as a Task (a user's function) or ``Detached`` (dal's own reads): the
#: promises are the same.
RUNNERS = pytest.mark.parametrize("own", [False, True], ids=["task", "detached"])


def _quick(load: Any, own: bool) -> Any:
    """``get_or_load``'s ``quick``: the load as a coroutine to run Detached, or None."""
    return (lambda: load()) if own else None


async def _callers(
    store: Store, ns: Namespace, load: Any, n: int, own: bool = False
) -> list[asyncio.Task[Any]]:
    """``n`` more coroutines missing key 1, returned once all of them wait."""
    before = _waiters(store)
    calls = [loads.get_or_load(store, ns, (ns, 1), load, None, _quick(load, own)) for _ in range(n)]
    tasks = [asyncio.create_task(call) for call in calls]
    await turns_until(lambda: _waiters(store) == before + n)
    return tasks


@RUNNERS
def test_concurrent_coroutines_share_one_load(own: bool) -> None:
    store = Store(100)
    ns = _space(store)
    load = _Load()

    async def main() -> list[Any]:
        calls = [
            loads.get_or_load(store, ns, (ns, 1), load, None, _quick(load, own)) for _ in range(50)
        ]
        tasks = [asyncio.create_task(c) for c in calls]
        await turns_until(lambda: _waiters(store) == 50)  # 49 waiters and the leader
        load.release.set()
        return await asyncio.gather(*tasks)

    assert _run(main) == ["v"] * 50
    assert load.calls == 1
    assert store.stats()["currsize"] == 1 and store.stats()["in_flight"] == 0
    assert _waiters(store) == 0


@RUNNERS
def test_a_failed_load_reaches_every_waiter_and_is_not_cached(own: bool) -> None:
    store = Store(100)
    ns = _space(store)
    failure = LookupError("no such row")
    load = _Load(failure)

    async def main() -> list[Any]:
        tasks = await _callers(store, ns, load, 5, own)
        load.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    assert _run(main) == [failure] * 5
    assert store.stats()["currsize"] == 0 and store.stats()["in_flight"] == 0


@RUNNERS
@pytest.mark.parametrize("cancelled", ["leader", "waiter"])
def test_a_cancelled_caller_cancels_only_itself(cancelled: str, own: bool) -> None:
    store = Store(100)
    ns = _space(store)
    load = _Load()

    async def main() -> tuple[list[Any], bool]:
        leader = asyncio.create_task(
            loads.get_or_load(store, ns, (ns, 1), load, None, _quick(load, own))
        )
        await load.started.wait()
        others = await _callers(store, ns, load, 3, own)
        victim = leader if cancelled == "leader" else others[0]
        victim.cancel()
        await turns_until(lambda: _waiters(store) == 3)
        load.release.set()
        results = await asyncio.gather(leader, *others, return_exceptions=True)
        return results, victim.cancelled()

    results, victim_cancelled = _run(main)
    assert victim_cancelled
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 1
    assert [r for r in results if not isinstance(r, BaseException)] == ["v"] * 3
    assert load.calls == 1 and not load.cancelled
    assert store.stats()["currsize"] == 1  # the lease held: the value is stored


@RUNNERS
def test_every_caller_cancelled_the_load_still_stores_its_value(own: bool) -> None:
    store = Store(100)
    ns = _space(store)
    load = _Load()

    async def main() -> None:
        callers = await _callers(store, ns, load, 3, own)
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        load.release.set()
        await turns_until(lambda: store.stats()["in_flight"] == 0)

    _run(main)
    assert store.stats()["currsize"] == 1 and load.calls == 1


@RUNNERS
def test_a_lease_revoked_during_the_load_stores_nothing(own: bool) -> None:
    """A commit (here: its invalidation) lands while the load runs: no stale fill,
    and a caller arriving after the commit does not join the old load."""
    store = Store(100)
    ns = store.namespace("ns", "rows.get", ["t"], None, pk=None)
    old, new = _Load("old"), _Load("new")

    async def main() -> tuple[Any, Any]:
        before = asyncio.create_task(
            loads.get_or_load(store, ns, (ns, 1), old, None, _quick(old, own))
        )
        await old.started.wait()
        store.invalidate({"t": None})  # the write to the table commits now
        after = asyncio.create_task(
            loads.get_or_load(store, ns, (ns, 1), new, None, _quick(new, own))
        )
        await new.started.wait()
        old.release.set()
        new.release.set()
        return await before, await after

    assert _run(main) == ("old", "new")
    assert old.calls == new.calls == 1
    assert store.stats()["stale_fills_prevented"] == 1
    assert store.get_or_load(ns, (ns, 1), lambda: "reloaded") == "new"


@pytest.mark.parametrize("when", ["before it starts", "while it reads"])
def test_a_cancelled_load_sends_its_waiters_to_load_again(when: str) -> None:
    """The load's own Task cancelled (as at loop shutdown) is nobody's error: its
    callers load again, once."""
    store = Store(100)
    ns = _space(store)
    load = _Load()

    async def main() -> Any:
        callers = await _callers(store, ns, load, 3)
        if when == "while it reads":
            await load.started.wait()
        (load_task,) = loads._running
        load_task.cancel()
        await turns_until(lambda: load.calls == (2 if when == "while it reads" else 1))
        load.release.set()
        return await asyncio.gather(*callers)

    assert _run(main) == ["v"] * 3
    assert load.cancelled == (when == "while it reads")
    assert store.stats()["currsize"] == 1 and store.stats()["in_flight"] == 0


def test_a_coroutine_waits_for_a_load_a_thread_leads() -> None:
    store = Store(100)
    ns = _space(store)
    release = threading.Event()
    calls: list[int] = []

    def sync_load() -> str:
        calls.append(1)
        release.wait(10)
        return "from thread"

    thread = threading.Thread(target=store.get_or_load, args=(ns, (ns, 1), sync_load))
    thread.start()
    wait_until(lambda: store.stats()["in_flight"] == 1)

    async def never() -> str:
        raise AssertionError("the coroutine must not load")

    async def main() -> Any:
        task = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), never))
        await turns_until(lambda: _waiters(store) == 1)
        ticks = 0
        while not task.done():  # the loop keeps running while the coroutine waits
            ticks += 1
            if ticks == 10:
                release.set()  # the thread finishes; it wakes the loop thread-safely
            await asyncio.sleep(0)
        return await task, ticks

    value, ticks = _run(main)
    thread.join(10)
    assert value == "from thread" and calls == [1] and ticks >= 10


def test_a_coroutine_waits_for_its_own_key_of_a_threads_batch() -> None:
    # A thread's get_many leases its misses as one flight: a coroutine missing the
    # second key waits for that flight and gets that key's value, not the first's.
    store = Store(100)
    ns = _space(store)
    release = threading.Event()
    calls: list[list[Any]] = []

    def load_many(keys: list[Any]) -> dict[Any, str]:
        calls.append(keys)
        release.wait(10)
        return {key: f"row {key[1]}" for key in keys}

    keys = [(ns, 1), (ns, 2), (ns, 3)]
    thread = threading.Thread(target=store.get_many_or_load, args=(ns, keys, load_many))
    thread.start()
    wait_until(lambda: store.stats()["in_flight"] == 3)

    async def never() -> str:
        raise AssertionError("the coroutine must not load")

    async def main() -> Any:
        task = asyncio.create_task(loads.get_or_load(store, ns, (ns, 2), never))
        await turns_until(lambda: _waiters(store) == 1)
        release.set()
        return await task

    assert _run(main) == "row 2"
    thread.join(10)
    assert calls == [keys]


def test_a_thread_waits_for_a_load_a_coroutine_leads() -> None:
    store = Store(100)
    ns = _space(store)
    load = _Load("from coroutine")
    got: list[Any] = []

    def sync_reader() -> None:
        got.append(store.get_or_load(ns, (ns, 1), lambda: "thread loaded"))

    async def main() -> Any:
        task = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load))
        await load.started.wait()
        thread = threading.Thread(target=sync_reader)
        thread.start()
        await turns_until(lambda: _waiters(store) == 2)  # the leader and the thread
        load.release.set()
        value = await task
        await asyncio.to_thread(thread.join, 10)
        return value

    assert _run(main) == "from coroutine"
    assert got == ["from coroutine"]


def test_a_blocking_wait_on_the_loop_thread_for_its_own_loop_is_refused() -> None:
    """A sync call on the event loop's thread would block the loop that must finish
    the load it waits for: a clear error instead of a hang."""
    store = Store(100)
    ns = _space(store)
    load = _Load()

    async def main() -> Any:
        task = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load))
        await load.started.wait()
        with pytest.raises(dal.DalError) as refused:
            store.get_or_load(ns, (ns, 1), lambda: "sync")
        load.release.set()
        return await task, str(refused.value)

    value, message = _run(main)
    assert value == "v"
    assert "rows.get(1) is being loaded by a coroutine of the event loop" in message
    assert "await the async API instead" in message


def test_a_load_that_awaits_its_own_key_is_refused() -> None:
    store = Store(100)
    ns = _space(store)

    async def recursive() -> Any:
        return await loads.get_or_load(store, ns, (ns, 1), recursive)

    async def main() -> None:
        with pytest.raises(dal.DalError, match="requested itself"):
            await loads.get_or_load(store, ns, (ns, 1), recursive)

    _run(main)
    assert store.stats()["in_flight"] == 0 and _waiters(store) == 0


def test_two_loads_awaiting_each_other_are_refused_in_the_one_that_closes_the_cycle() -> None:
    store = Store(100)
    ns = _space(store)
    f_started = asyncio.Event()

    async def load_f() -> Any:
        f_started.set()
        return await loads.get_or_load(store, ns, (ns, "g"), load_g)

    async def load_g() -> Any:
        await f_started.wait()
        await turns_until(lambda: _waiters(store) == 3)  # f waits on g now
        try:
            return await loads.get_or_load(store, ns, (ns, "f"), load_f)
        except dal.DalError as exc:
            return str(exc)

    async def main() -> Any:
        g = asyncio.create_task(loads.get_or_load(store, ns, (ns, "g"), load_g))
        await turns_until(lambda: _waiters(store) == 1)
        f = await loads.get_or_load(store, ns, (ns, "f"), load_f)
        return f, await g

    f, g = _run(main)
    assert f == g
    assert "cycle" in g and "waits for rows.get('f')" in g and "which waits for rows.get('g')" in g


def test_get_many_shares_loads_with_get_and_survives_cancellation() -> None:
    store = Store(100)
    ns = _space(store)
    one = _Load("one")
    batches: list[list[Any]] = []

    async def load_many(keys: list[Any]) -> dict[Any, Any]:
        batches.append([k[1] for k in keys])
        return {k: f"row{k[1]}" for k in keys}

    async def main() -> Any:
        single = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), one))
        await one.started.wait()
        many = asyncio.create_task(
            loads.get_many_or_load(store, ns, [(ns, 1), (ns, 2), (ns, 3)], load_many)
        )
        await turns_until(lambda: _waiters(store) == 2)  # single, and many on key 1
        cancelled = asyncio.create_task(
            loads.get_many_or_load(store, ns, [(ns, 1), (ns, 4)], load_many)
        )
        await turns_until(lambda: _waiters(store) == 3)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        one.release.set()
        return await single, await many

    single, many = _run(main)
    assert single == "one"
    assert {k[1]: v for k, v in many.items()} == {1: "one", 2: "row2", 3: "row3"}
    assert batches == [[2, 3], [4]]  # key 1 joined the single load; 4 led by the cancelled
    assert store.stats()["currsize"] == 4 and _waiters(store) == 0
