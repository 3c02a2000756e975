"""Single flight for coroutines, over the same store and flights as threads.

A coroutine that misses leads a load or waits for one in flight, whoever leads it.
The load runs as a Task of its own, so a cancelled caller, leader or not, cancels
only its own wait: the load goes on for the others, and stores its value if its
lease still holds. Waiting is awaiting a future the flight completes thread-safely,
so threads and coroutines share every load. A hit returns before the first await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any

from ..store.cache import Namespace, Store
from ..store.flights import Abandoned, Flight, refuse_cycle
from ..store.lru import Key
from .tasks import Detached

__all__ = ["get_many_or_load", "get_or_load"]

Values = Mapping[Key, Any]

#: What runs a load: a Task, or for dal's own loads ``Detached``.
Runner = asyncio.Task[None] | Detached[None]

#: Loads running now; the loop holds only weak references to Tasks.
_running: set[Runner] = set()


async def get_or_load(
    store: Store,
    ns: Namespace,
    key: Key,
    load: Callable[[], Awaitable[Any]],
    loop: asyncio.AbstractEventLoop | None = None,
    quick: Callable[[], Coroutine[Any, Any, Any] | None] | None = None,
) -> Any:
    """The cached value, or one load shared by every concurrent caller.

    ``loop`` is the running one, which the caller knows without asking asyncio
    (``AsyncDatabase._running_loop``): on Python 3.11 each ask is a system call.
    ``quick``, asked by the leader, may give the load as a coroutine of dal's own
    that needs no Task (it awaits nothing but the driver's answer); it then runs
    ``Detached``, a Task's first turn saved. Otherwise ``load`` runs in a Task.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    missed = False
    while True:
        with store.lock:
            found, flight, leader = store._find_or_join(ns, key, missed)
            if flight is None:
                return found
            future = flight.future(loop)
        missed = True
        task = _lead(store, flight, key, load, loop, quick) if leader else None
        try:
            return await _wait(store, flight, future, key, loop)
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
    loop: asyncio.AbstractEventLoop | None = None,
) -> dict[Key, Any]:
    """Cached values for ``keys``; one ``load_many`` call for the misses (``loop``: as
    for ``get_or_load``)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    found: dict[Key, Any] = {}
    # A flight may be a thread's batch, leased under other keys too: each wait names its key.
    flights: list[tuple[Key, Flight, asyncio.Future[None]]] = []
    leads: list[Flight] = []
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
        _start(store, leads, lambda: load_many([f.key for f in leads]), loop)
    try:
        for key, flight, future in flights:
            try:
                found[key] = await _wait(store, flight, future, key, loop)
            except Abandoned:
                found[key] = await get_or_load(store, ns, key, _one_of(load_many, key), loop)
    except BaseException:
        for _, _, future in flights:
            future.cancel()  # a cancelled caller leaves none of its waits behind
        raise
    return found


def _lead(
    store: Store,
    flight: Flight,
    key: Key,
    load: Callable[[], Awaitable[Any]],
    loop: asyncio.AbstractEventLoop,
    quick: Callable[[], Coroutine[Any, Any, Any] | None] | None,
) -> Runner:
    """Start the load of ``flight``: ``quick``'s coroutine Detached, else ``load``'s Task."""
    try:
        coroutine = None if quick is None else quick()
    except BaseException as exc:  # the flight is leased to this leader: end it
        store._failed([flight], exc)
        raise
    if coroutine is None:
        return _start(store, [flight], _one(key, load), loop)
    try:
        return _start(store, [flight], _one(key, lambda: coroutine), loop, own=True)
    except BaseException:
        coroutine.close()  # never started, it holds nothing
        raise


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
    store: Store,
    flights: list[Flight],
    load: Callable[[], Awaitable[Values]],
    loop: asyncio.AbstractEventLoop,
    own: bool = False,
) -> Runner:
    """Run ``load`` for ``flights`` as a Task of its own (or ``Detached``: ``own``),
    which then owns them."""

    def ended(runner: Runner) -> None:
        _running.discard(runner)
        # Cancelled before its first step, the Task never ran ``_run``: its flights
        # still end, or their waiters would wait forever.
        unfinished = [f for f in flights if not f.finished]
        if unfinished:
            store._failed(unfinished, asyncio.CancelledError())

    runner: Runner
    try:
        if own:
            runner = Detached(_run(store, flights, load), loop, ended)
        else:
            runner = loop.create_task(_run(store, flights, load))
            runner.add_done_callback(ended)
    except BaseException as exc:
        store._failed(flights, exc)
        raise
    _running.add(runner)
    with store.lock:  # cycle checks read owners under it, from any thread
        for flight in flights:
            flight.owner = runner
    if isinstance(runner, Detached):
        runner.start()
    return runner


def _raised(task: Runner) -> bool:
    """Whether the load itself raised a BaseException (not its Task being cancelled).

    Only a cancelled load sends its callers to load again: a load that raises the
    same BaseException each time would otherwise be retried forever. Its leader
    raises it, as a thread that ran the load would; waiters load again, and
    whoever leads that load meets it in turn. Nothing cancels a ``Detached`` load:
    whatever it raised is its own.
    """
    if isinstance(task, Detached):
        return task.done
    return task.done() and not task.cancelled()


async def _run(store: Store, flights: list[Flight], load: Callable[[], Awaitable[Values]]) -> None:
    """The load's Task: store what is still leased, wake every waiter, whatever happens."""
    # Age counts from before the read: the row is as old as the query, not the fill.
    started = None if flights[0].ns.ttl is None else monotonic()
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


async def _wait(
    store: Store,
    flight: Flight,
    future: asyncio.Future[None],
    key: Key,
    loop: asyncio.AbstractEventLoop,
) -> Any:
    """The value of ``key`` once ``future`` completes; a DalError if waiting would close
    a cycle of loads waiting on each other (see ``flights.refuse_cycle``)."""
    if not future.done():
        me = asyncio.current_task(loop)
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
