"""The primary-key miss awaited straight from the coroutine: no greenlet.

Every other async read runs dal's sync code in a greenlet (``dal.aio.greenlets``),
four greenlet switches per statement. A primary-key miss is the hottest read and
needs none of that code: a pooled connection, one statement, its rows. When the
pool can hand out a connection without awaiting (an idle one that needs no
reconnect, recycle or ping, and no checkout listener), it is checked out here,
the driver's own fetch (``adapters._FetchingCursor.fetch``) is awaited, and the
connection goes back at once; anything that would await inside the pool (a new
connection, a full pool, a listener on its return) takes the greenlet path, which
is the same read. Driver errors are raised as the raw path raises them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection
from sqlalchemy.util.queue import AsyncAdaptedQueue

from .tasks import detachable

__all__ = ["Checkout", "Fetch", "Pool", "returns_now"]

#: ``fetch(adapted_connection, sql, parameters)``: the rows and their description.
Fetch = Callable[[Any, str, Any], Awaitable[tuple[list[Any], Any]]]


class _Queue(AsyncAdaptedQueue[Any]):
    """The pool's queue: an idle connection is handed out without awaiting, also
    once the pool is at its size limit (where SQLAlchemy's awaits the queue's get),
    unless a task waits for one: a connection that comes back is the waiters' first
    (``waiting`` counts them until they have it), or they could be passed over until
    their ``pool_timeout``."""

    waiting = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not self.waiting and not self._queue.empty():
            return self.get_nowait()
        self.waiting += 1
        try:
            return super().get(block, timeout)
        finally:
            self.waiting -= 1


class Pool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` whose checkout of an idle connection never awaits."""

    _queue_class = _Queue


class Checkout:
    """Whether a ``Pool`` can hand out a connection without awaiting, and the checkout.

    ``own`` is how many checkout listeners dal installed (a driver's, counted once
    the engine is set up), each of which ``quiet(dbapi_connection)`` says will send
    nothing; anybody else's listener may await. The pool is the engine's at each
    call: ``engine.dispose()`` puts a new one in its place.
    """

    __slots__ = ("_engine", "_own", "_quiet")

    def __init__(self, engine: Engine, quiet: Callable[[Any], bool] | None) -> None:
        self._engine = engine
        self._own = len(engine.pool.dispatch.checkout)
        self._quiet = quiet

    def ready(self) -> bool:
        """An idle connection that needs no reconnect, recycle or ping is next, no
        checkout listener would await, and its read can run without a Task."""
        pool: Any = self._engine.pool
        if pool._pre_ping or pool._pool.waiting or len(pool.dispatch.checkout) != self._own:
            return False
        idle = pool._pool._queue._queue  # the asyncio.Queue's deque; its next is [0]
        if not idle:
            return False
        record = idle[0]
        started = record.starttime
        # What ``_ConnectionRecord.get_connection`` would connect again for:
        if (
            record.dbapi_connection is None
            or (pool._recycle > -1 and time.time() - started > pool._recycle)
            or pool._invalidate_time > started
            or record._soft_invalidate_time > started
        ):
            return False
        if not detachable(record.dbapi_connection):  # its read may need a Task
            return False
        return self._own == 0 or self._quiet is None or self._quiet(record.dbapi_connection)

    def now(self) -> PoolProxiedConnection:
        """A connection checked out without awaiting, in the turn ``ready`` said so."""
        return self._engine.pool.connect()


def returns_now(pool: Any) -> bool:
    """Whether a connection goes back to ``pool`` without awaiting: no listener on
    its return (close() adds one that closes what comes back), and room for it
    among the idle ones (else, an overflow connection, it is closed)."""
    return not (pool.dispatch.checkin or pool.dispatch.reset or pool._pool.full())
