"""Coroutines that a cancelled caller must not cut short, run without a Task.

A Task would do: a cancelled caller only stops waiting for it. But starting one
costs a turn of the event loop before its first step, which on a cache miss is a
round trip's share (each turn is an ``epoll_wait`` system call). ``Detached``
drives the coroutine itself: its first step runs at once, in the caller's turn,
and each next one from the done callback of the future it awaits, as a Task's
would. It is for dal's own coroutines (a primary-key read, a driver's COMMIT):
they ask nothing of the Task running them (``asyncio.current_task()`` is the
caller's in the first step, None after: no ``asyncio.timeout``, which binds to it,
nor ``wait_for``, which uses it from Python 3.12), and nothing cancels them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["Detached", "detachable", "finish"]

T = TypeVar("T")


class Detached(Generic[T]):
    """Runs ``coro`` to its end on ``loop``, from ``start()``, then calls ``ended(self)``;
    ``result()`` is its value or raises its error. Steps run in a copy of the
    context ``start()`` was called in, as a Task's do."""

    __slots__ = ("_context", "_coro", "_ended", "_error", "_loop", "_value", "done")

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        loop: asyncio.AbstractEventLoop,
        ended: Callable[[Detached[T]], None],
    ) -> None:
        self._coro = coro
        self._loop = loop
        self._ended = ended
        self._context = contextvars.copy_context()
        self._value: T | None = None
        self._error: BaseException | None = None
        self.done = False

    def start(self) -> Detached[T]:
        """Run the first step now, up to the coroutine's first await."""
        self._context.run(self._step)
        return self

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def _step(self, _: object = None) -> None:
        """One step, in ``_context`` (the loop enters it for callbacks given it)."""
        try:
            awaited = self._coro.send(None)
        except StopIteration as stop:
            self._end(stop.value, None)
            return
        except BaseException as exc:
            self._end(None, exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # as a Task's step does: what stops the loop stops it
            return
        if awaited is None:  # a bare yield: let the loop turn once
            self._loop.call_soon(self._step, context=self._context)
        elif getattr(awaited, "_asyncio_future_blocking", False):
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(self._step, context=self._context)
        else:
            error = RuntimeError(f"{self._coro!r} awaited {awaited!r}, not a future")
            self._loop.call_soon(self._throw, error, context=self._context)

    def _throw(self, error: BaseException) -> None:
        try:
            self._coro.throw(error)
        except StopIteration as stop:
            self._end(stop.value, None)
        except BaseException as exc:
            self._end(None, exc)
        else:  # it went on awaiting: no driver handles that; close it
            self._coro.close()
            self._end(None, error)

    def _end(self, value: T | None, error: BaseException | None) -> None:
        self._value, self._error, self.done = value, error, True
        self._ended(self)


async def finish(cleanup: Coroutine[Any, Any, T], own: bool = False) -> T:
    """Await ``cleanup`` to its end, even if the calling task is cancelled meanwhile.

    A rollback, close or COMMIT cut short at one of its awaits would leave the
    connection checked out of the pool for good (or, for a COMMIT, invalidation
    before the database's answer). The cleanup runs in a Task (``Detached`` if it
    is dal's own code, ``own``: a driver's COMMIT); a cancellation that arrives
    while waiting is raised once it has finished (failed or not: a cancellation is
    never swallowed), so the caller never returns before its connection is back.
    A session's cleanup runs a user's listeners, which may want a Task of their own.
    """
    loop = asyncio.get_running_loop()
    waiting = [loop.create_future()]
    run: Detached[T] | asyncio.Task[T]
    if own:
        run = Detached(cleanup, loop, lambda run: _settle(waiting[0])).start()
    else:
        run = loop.create_task(cleanup)
        run.add_done_callback(lambda run: _settle(waiting[0]))
    cancelled: asyncio.CancelledError | None = None
    while not (run.done if isinstance(run, Detached) else run.done()):
        try:
            await waiting[0]
        except asyncio.CancelledError as exc:
            cancelled = exc  # raised below, once the cleanup is over
            waiting[0] = loop.create_future()
    if cancelled is not None:
        # Failed too, the cleanup still ends in the cancellation: never swallowed.
        raise cancelled
    return run.result()


def _settle(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


def detachable(dbapi_connection: Any) -> bool:
    """Whether the driver's awaits on this pooled (adapted) connection may run
    ``Detached``: none of them under an asyncio timeout. From Python 3.12
    ``wait_for`` is ``asyncio.timeout``, bound to the current Task, the caller's in
    a first step: its expiry would cancel the caller and leave the wait running.
    asyncmy waits for every reply under ``wait_for`` once ``read_timeout`` is set."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    return not getattr(driver, "_read_timeout", None)
