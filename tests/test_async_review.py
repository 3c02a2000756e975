"""Adversarial interleavings of the async front end: each test forces one ordering
(events, a COMMIT parked in the server, loop steps) and checks a promise there.

- A load that raises a BaseException of its own (not a cancellation) reaches its
  leader instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from dal.aio import loads
from dal.store.cache import Store

# -- a load's own BaseException -----------------------------------------------------------


class Stop(BaseException):
    """Neither an Exception nor a cancellation (as pytest's ``fail`` raises)."""


def _loop_errors(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    """Everything the loop reports to its exception handler ("never retrieved", ...)."""
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    return seen


def _stopping_load() -> tuple[list[int], Any]:
    calls = [0]

    async def load() -> Any:
        calls[0] += 1
        await asyncio.sleep(0)
        raise Stop

    return calls, load


async def test_a_load_raising_a_base_exception_of_its_own_reaches_its_callers() -> None:
    store = Store(100)
    ns = store.namespace("ns", "rows.get", ["t"], None)
    seen = _loop_errors(asyncio.get_running_loop())
    calls, load = _stopping_load()
    callers = [asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load)) for _ in range(3)]
    done, _ = await asyncio.wait(callers, timeout=10)  # bounds a hang only
    assert len(done) == 3, f"callers still retrying after {calls[0]} loads"
    assert all(isinstance(c.exception(), Stop) for c in callers)
    # Each caller met it in a load it led: none retried a load that raised it.
    assert calls[0] <= 3
    assert store.stats()["in_flight"] == 0 and not loads._running
    assert seen == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is 3.11+")
async def test_a_load_raising_cancelled_error_uncancelled_is_not_retried_forever() -> None:
    store = Store(100)
    ns = store.namespace("ns", "rows.get", ["t"], None)
    calls = [0]

    async def load() -> Any:
        calls[0] += 1
        gone = asyncio.get_running_loop().create_future()
        gone.cancel()
        return await gone  # something the load awaited was cancelled, not the load

    caller = asyncio.create_task(loads.get_or_load(store, ns, (ns, 1), load))
    done, _ = await asyncio.wait([caller], timeout=10)  # bounds a hang only
    assert done, f"still retrying after {calls[0]} loads"
    assert caller.cancelled() and calls[0] == 1
    assert store.stats()["in_flight"] == 0
