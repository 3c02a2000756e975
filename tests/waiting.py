"""Waiting for a condition another thread brings about, bounded by a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["wait_until"]


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
