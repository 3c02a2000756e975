"""Waiting for a condition another thread (or task) brings about, bounded by a deadline
(or by turns of the event loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["turns_until", "wait_until"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout``.

    The outcome never depends on timing: the deadline only bounds a hang.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        pause.wait(0.001)


async def turns_until(condition: Callable[[], bool], turns: int = 100_000) -> None:
    """Let the event loop run until ``condition()`` holds; fail the test if it does not
    within ``turns`` turns of the loop. Counted in turns, not time: never a race."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not met within {turns} turns of the loop: {condition}")
