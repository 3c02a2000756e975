"""Single flight for coroutines, over the same store and flights as threads.

A coroutine that misses leads a load or waits for one in flight, whoever leads it.
The load runs as a Task of its own, so a cancelled caller, leader or not, cancels
only its own wait: the load goes on for the others, and stores its value if its
lease still holds. Waiting is awaiting a future the flight completes thread-safely,
so threads and coroutines share every load. A hit returns before the first await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any

from ..store.cache import Namespace, Store
from ..store.flights import Abandoned, Flight, refuse_cycle
from ..store.lru import Key

__all__ = ["get_many_or_load", "get_or_load"]

Values = Mapping[Key, Any]

#: Loads running now; the loop holds only weak references to Tasks.
_running: set[asyncio.Task[None]] = set()


async def get_or_load(
    store: Store, ns: Namespace, key: Key, load: Callable[[], Awaitable[Any]]
) -> Any:
    """The cached value, or one load shared by every concurrent caller."""
    missed = False
    while True:
        with store.lock:
            found, flight, leader = store._find_or_join(ns, key, missed)
            if flight is None:
                return found
            future = flight.future(asyncio.get_running_loop())
        missed = True
        task = _start(store, [flight], _one(key, load)) if leader else None
        try:
            return await _wait(store, flight, future, key)
        except Abandoned:
            pass
        if task is not None and flight.error is not None and _raised(task):
            raise flight.error  # outside ``except``: no Abandoned in its context
        # The load was cancelled, not failed: load again.


async def get_many_or_load(
    store: Store,
    ns: Namespace,
    keys: Iterable[Key],
    load_many: Callable[[list[Key]], Awaitable[Values]],
) -> dict[Key, Any]:
    """Cached values for ``keys``; one ``load_many`` call for the misses."""
    found: dict[Key, Any] = {}
    # A flight may be a thread's batch, leased under other keys too: each wait names its key.
    flights: list[tuple[Key, Flight, asyncio.Future[None]]] = []
    leads: list[Flight] = []
    loop = asyncio.get_running_loop()
    with store.lock:
        for key in keys:
            value, flight, leader = store._find_or_join(ns, key, False)
            if flight is None:
                found[key] = value
                continue
            flights.append((key, flight, flight.future(loop)))
            if leader:
                leads.append(flight)
    if leads:
        _start(store, leads, lambda: load_many([f.key for f in leads]))
    try:
        for key, flight, future in flights:
            try:
                found[key] = await _wait(store, flight, future, key)
            except Abandoned:
                found[key] = await get_or_load(store, ns, key, _one_of(load_many, key))
    except BaseException:
        for _, _, future in flights:
            future.cancel()  # a cancelled caller leaves none of its waits behind
        raise
    return found


def _one(key: Key, load: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Values]]:
    async def load_one() -> Values:
        return {key: await load()}

    return load_one


def _one_of(
    load_many: Callable[[list[Key]], Awaitable[Values]], key: Key
) -> Callable[[], Awaitable[Any]]:
    async def load() -> Any:
        return (await load_many([key])).get(key)

    return load


def _start(
    store: Store, flights: list[Flight], load: Callable[[], Awaitable[Values]]
) -> asyncio.Task[None]:
    """Run ``load`` for ``flights`` as a Task of its own, which then owns them."""
    try:
        task = asyncio.get_running_loop().create_task(_run(store, flights, load))
    except BaseException as exc:
        store._failed(flights, exc)
        raise
    _running.add(task)
    for flight in flights:
        flight.owner = task

    def ended(task: asyncio.Task[None]) -> None:
        _running.discard(task)
        # Cancelled before its first step, the Task never ran ``_run``: its flights
        # still end, or their waiters would wait forever.
        unfinished = [f for f in flights if not f.finished]
        if unfinished:
            store._failed(unfinished, asyncio.CancelledError())

    task.add_done_callback(ended)
    return task


def _raised(task: asyncio.Task[None]) -> bool:
    """Whether the load itself raised a BaseException (not its Task being cancelled).

    Only a cancelled load sends its callers to load again: a load that raises the
    same BaseException each time would otherwise be retried forever. Its leader
    raises it, as a thread that ran the load would; waiters load again, and
    whoever leads that load meets it in turn.
    """
    return task.done() and not task.cancelled()


async def _run(store: Store, flights: list[Flight], load: Callable[[], Awaitable[Values]]) -> None:
    """The load's Task: store what is still leased, wake every waiter, whatever happens."""
    # Age counts from before the read: the row is as old as the query, not the fill.
    started = monotonic()
    try:
        values = await load()
    except Exception as exc:  # the waiters raise it; the Task has nobody to tell
        store._failed(flights, exc)
        return
    except BaseException as exc:  # cancelled, or the load's own: see ``_stops``
        store._failed(flights, exc)
        if _stops(exc):
            raise
        # The load's own BaseException: its leader raises it (``_raised``); the
        # Task ends quietly, or the loop would log an exception nobody retrieved.
        return
    store._loaded(flights, values, started)


def _stops(exc: BaseException) -> bool:
    """A cancellation of the load's Task, or what stops the loop: raised from the Task.

    A CancelledError the load raised while its Task was not being cancelled (it
    awaited something cancelled) is the load's own; ``Task.cancelling`` tells them apart.
    """
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return True
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


async def _wait(store: Store, flight: Flight, future: asyncio.Future[None], key: Key) -> Any:
    """The value of ``key`` once ``future`` completes; a DalError if waiting would close
    a cycle of loads waiting on each other (see ``flights.refuse_cycle``)."""
    me = asyncio.current_task()
    if not future.done():
        with store.lock:
            try:
                refuse_cycle(store._waiting, me, flight, None)
            except BaseException:
                future.cancel()
                raise
            store._waiting[me] = flight
        try:
            await future  # cancelling this caller cancels the future, not the load
        finally:
            with store.lock:
                del store._waiting[me]
    return flight.result(key)
