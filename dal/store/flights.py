"""Loads in flight: who runs each one, who waits for it, and waits that would never end.

A flight is owned by whoever runs its load: a thread (its ident), or the asyncio Task
a coroutine started for it. Waiters are threads blocked on its lock, and coroutines
awaiting a future that the flight completes thread-safely when it finishes, from
whichever thread finishes it. The store's lock guards every field here; a flight's
lock and futures are released and woken only after the store's lock is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import reprlib
import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from ..errors import DalError

__all__ = ["MISSING", "Abandoned", "Flight", "Party", "finish", "refuse_cycle"]

#: Returned by lookups that found nothing: ``None`` is a value the cache holds.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

#: Who runs a load or waits for one: a thread ident, or an ``asyncio.Task``.
Party = Hashable


class Abandoned(Exception):
    """The load a caller waited for ended without a value or an ordinary error."""


class Flight:
    """One load in progress, of one key or of a batch (one query for many keys); the
    callers that missed any of its keys wait on it."""

    __slots__ = (
        "_done",
        "_futures",
        "error",
        "finished",
        "key",
        "keys",
        "ns",
        "owner",
        "thread",
        "values",
    )

    def __init__(self, ns: Any, keys: list[tuple[Any, Hashable]]) -> None:
        self.ns = ns
        #: The keys whose leases it took (the store's in-flight table names it for each).
        self.keys = keys
        #: The first of them, which names the load in messages.
        self.key = keys[0]
        #: What the load returned, by key; None until it returned.
        self.values: Mapping[tuple[Any, Hashable], Any] | None = None
        self.error: BaseException | None = None
        #: The load's runner; a coroutine's flight is handed to its Task (``dal.aio.loads``).
        self.owner: Party = threading.get_ident()
        #: The thread the owner runs on: for a Task, its event loop's thread.
        self.thread = self.owner
        self.finished = False
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._done = threading.Lock()
        self._done.acquire()

    def __repr__(self) -> str:
        """The load as a call: ``top_spenders(10)``, ``Users.get(1)``."""
        key = self.key[1]
        args = key if isinstance(key, tuple) else (key,)
        return f"{self.ns.name}({', '.join(map(reprlib.repr, args))})"

    def future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future of ``loop`` that completes when the load ends (store lock held)."""
        future = loop.create_future()
        if self.finished:
            future.set_result(None)
        else:
            self._futures.append((loop, future))
        return future

    def result(self, key: tuple[Any, Hashable]) -> Any:
        """Wait for the load; the value of ``key``, or its error raised in this caller too.

        Threads call it through ``Store._wait``, which refuses a wait that would never
        end; a coroutine calls it once its future completed, when it no longer blocks.
        """
        with self._done:
            pass
        if isinstance(self.error, Exception):
            raise self.error
        if self.error is not None or self.values is None:
            # KeyboardInterrupt, a cancellation: the loader's own business, not the
            # waiters'. They load again instead.
            raise Abandoned
        return self.values.get(key)


def finish(lock: threading.Lock, flights: Iterable[Flight]) -> None:
    """Mark ``flights`` finished and wake every waiter, threads and coroutines.

    Marked under the store's lock, so a coroutine that subscribes concurrently either
    sees it finished or is woken; woken after it, as waking a loop writes to its pipe.
    """
    with lock:
        futures = []
        for flight in flights:
            flight.finished = True
            futures += flight._futures
            flight._futures = []
    for flight in flights:
        flight._done.release()
    for loop, future in futures:
        _wake(loop, future)


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    if _running_here(loop):
        _complete(future)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to wake
        loop.call_soon_threadsafe(_complete, future)


def _running_here(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` runs in this thread, so that this is its thread's turn.

    asyncio's loops hold the ident of the thread running them in ``_thread_id``
    (None while stopped), cheaper than asking asyncio, which on Python 3.11 costs a
    ``getpid`` system call; other loops are asked that way.
    """
    thread = getattr(loop, "_thread_id", _UNKNOWN)
    if thread is _UNKNOWN:
        return asyncio._get_running_loop() is loop
    return bool(thread == threading.get_ident())


_UNKNOWN = object()


def _complete(future: asyncio.Future[None]) -> None:
    if not future.done():  # a waiter cancelled meanwhile
        future.set_result(None)


def refuse_cycle(
    waiting: Mapping[Party, Flight], me: Party, flight: Flight, thread: int | None
) -> None:
    """Raise a ``DalError`` if ``me`` waiting for ``flight`` would never end (lock held).

    A load may call code that loads other keys (a cached function calling another),
    so whoever owns one flight may wait on another. If the owner of the awaited
    flight waits, directly or along a chain of owners, on a flight ``me`` owns, nobody
    would ever finish. ``thread`` is set for a thread that blocks: it also must not
    wait for a Task of the event loop it runs, which cannot run while it waits.
    """
    chain = [flight]
    while not flight.finished:
        if flight.owner == me or flight.thread == thread:
            raise DalError(_message(me, chain, thread))
        waited = waiting.get(flight.owner)
        if waited is None or len(chain) > len(waiting):
            return
        flight = waited
        chain.append(flight)


def _message(me: Party, cycle: list[Flight], thread: int | None) -> str:
    """Who waits on whom: the cycle ``me`` would close by waiting."""
    last = cycle[-1]
    if last.owner != me:
        return (
            f"{last!r} is being loaded by a coroutine of the event loop running in this "
            "thread, which cannot go on while this thread blocks: a synchronous call here "
            f"would wait forever{_via(cycle)}; await the async API instead"
        )
    if len(cycle) == 1:
        return f"{cycle[0].ns.name}: loading {cycle[0].key[1]!r} requested itself"
    names = {t.ident: t.name for t in threading.enumerate()}
    steps = [f"{_kind(me)} {_name(me, names)} waits for {cycle[0]!r}"]
    for flight, waited in itertools.pairwise(cycle):
        steps.append(f"loaded by {_name(flight.owner, names)}, which waits for {waited!r}")
    steps.append(f"loaded by {_name(me, names)}")
    return (
        "cached loads wait on each other in a cycle and would never finish: "
        + ", ".join(steps)
        + "; this call raises instead of waiting"
    )


def _via(cycle: list[Flight]) -> str:
    return "" if len(cycle) == 1 else f" (it waits for it through {cycle[0]!r})"


def _kind(party: Party) -> str:
    return "task" if isinstance(party, asyncio.Task) else "thread"


def _name(party: Party, threads: Mapping[int | None, str]) -> str:
    """A thread's name, or a Task's (``'Task-3'``), quoted."""
    if isinstance(party, asyncio.Task):
        return repr(party.get_name())
    return repr(threads.get(party, party))  # type: ignore[call-overload]
