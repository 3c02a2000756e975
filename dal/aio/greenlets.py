"""Sync code run from a coroutine, on greenlets kept for reuse: SQLAlchemy's
``greenlet_spawn`` without a new greenlet per call.

Inside, ``sqlalchemy.util.await_only`` awaits as it does under ``greenlet_spawn``:
the greenlet hands the awaitable to the coroutine that runs it, which awaits it and
switches back with the result. A new greenlet per call also costs a new stack chunk
for its Python frames, which CPython maps and unmaps with the kernel (two system
calls, the dearest part of a call where system calls are dear, as under a
hypervisor); a greenlet kept between calls keeps its chunk. Each thread keeps its
own, as greenlets never switch across threads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

#: Idle greenlets kept per thread; more concurrent calls than this make new ones.
KEPT = 64


class _Idle(threading.local):
    """This thread's idle workers, and greenlet's calls: imported at first use, as
    ``import dal`` works without the async extra."""

    workers: list[Any] | None = None
    make: Callable[[Callable[..., None], Any], Any]
    current: Callable[[], Any]

    async def start(self) -> list[Any]:
        from greenlet import getcurrent  # type: ignore[import-untyped,unused-ignore]
        from sqlalchemy.util import greenlet_spawn

        # SQLAlchemy's own greenlet class, the one its ``await_only`` accepts (2.0
        # checks the class and switches to ``.driver``; 2.1 checks a flag and
        # switches to ``.parent``): the class of the greenlet it spawns.
        base: Any = type(await greenlet_spawn(getcurrent))

        class Worker(base):  # type: ignore[misc]
            """A reused greenlet ``await_only`` accepts."""

        self.make, self.current = Worker, getcurrent
        self.workers = []
        return self.workers


_idle = _Idle()

#: What a worker switches back with when its call is over; its outcome, ``(True,
#: value)`` or ``(False, error)``, is on its ``outcome`` until the caller takes it, so
#: that an idle worker keeps nothing alive. Anything else it switches with is an
#: awaitable of ``await_only``.
_DONE: Any = object()


def _serve(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
    """A worker's life: run each job it is switched to, hand back its outcome."""
    from greenlet import GreenletExit, getcurrent  # type: ignore[import-untyped,unused-ignore]

    me = getcurrent()
    while True:
        fn, args = job
        del job
        try:
            me.outcome = (True, fn(*args))
        except GreenletExit:
            raise  # the worker is being discarded
        except BaseException as exc:  # handed to the caller, which raises it
            me.outcome = (False, exc)
        del fn, args
        job = me.parent.switch(_DONE)


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """``await greenlet_spawn(fn, *args)``, on a reused greenlet."""
    local = _idle
    idle = local.workers
    if idle is None:
        idle = await local.start()
    current = local.current()
    worker = idle.pop() if idle else local.make(_serve, current)
    worker.parent = worker.driver = current  # where await_only switches to (2.1, 2.0)
    # As greenlet_spawn: the caller's context itself, so ContextVars set inside
    # are the caller's.
    worker.gr_context = current.gr_context
    result = worker.switch((fn, args))
    while result is not _DONE:
        try:
            value = await result
        except BaseException:
            result = worker.throw(*sys.exc_info())
        else:
            result = worker.switch(value)
    ok, value = worker.outcome
    worker.outcome = None
    if not worker.dead and len(idle) < KEPT:
        worker.gr_context = None  # keep no caller's context alive
        idle.append(worker)
    if ok:
        return value  # type: ignore[no-any-return]
    try:
        raise value
    finally:
        del value  # no cycle through this frame's traceback
