"""Cleanup that a cancellation cannot cut short."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["finish"]

T = TypeVar("T")


async def finish(cleanup: Coroutine[Any, Any, T]) -> T:
    """Await ``cleanup`` to its end, even if the calling task is cancelled meanwhile.

    A rollback or close cut short at one of its awaits would leave the connection
    checked out of the pool for good. The cleanup runs in a task of its own; a
    cancellation that arrives while waiting is raised once it has finished (failed
    or not: a cancellation is never swallowed), so the caller never returns before
    its connection is back.
    """
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        except BaseException:
            if cancelled is None:
                raise
            break  # the cleanup failed too: still the cancellation, never swallowed
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result
