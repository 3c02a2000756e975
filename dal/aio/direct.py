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

from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection
from sqlalchemy.util.queue import AsyncAdaptedQueue

__all__ = ["Fetch", "Pool", "checkout_now", "ready", "returns_now"]

#: ``fetch(adapted_connection, sql, parameters)``: the rows and their description.
Fetch = Callable[[Any, str, Any], Awaitable[tuple[list[Any], Any]]]


class _Queue(AsyncAdaptedQueue[Any]):
    """The pool's queue: an idle connection is handed out without awaiting, also
    once the pool is at its size limit (where SQLAlchemy's awaits the queue's get)."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not self._queue.empty():
            return self.get_nowait()
        return super().get(block, timeout)


class Pool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` whose checkout of an idle connection never awaits."""

    _queue_class = _Queue


def ready(pool: Any) -> bool:
    """Whether ``pool`` (a ``Pool``) can hand out a connection without awaiting: it
    has an idle one that needs no reconnect, recycle or ping, and no checkout
    listener would run."""
    if pool._pre_ping or pool.dispatch.checkout:
        return False
    idle = pool._pool._queue._queue  # the asyncio.Queue's deque; its next is [0]
    if not idle:
        return False
    record = idle[0]
    started = record.starttime
    # What ``_ConnectionRecord.get_connection`` would connect again for:
    return not (
        record.dbapi_connection is None
        or (pool._recycle > -1 and time.time() - started > pool._recycle)
        or pool._invalidate_time > started
        or record._soft_invalidate_time > started
    )


def checkout_now(pool: Any) -> PoolProxiedConnection | None:
    """A connection checked out of ``pool`` without awaiting, or None (see ``ready``)."""
    return pool.connect() if ready(pool) else None


def returns_now(pool: Any) -> bool:
    """Whether a connection goes back to ``pool`` without awaiting: no listener on
    its return (close() adds one that closes what comes back)."""
    return not (pool.dispatch.checkin or pool.dispatch.reset)
