"""A helper for tests that inspect the error a call raised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["error_of"]


def error_of(call: Callable[[], Any]) -> BaseException:
    """What ``call()`` raised; fails the test if it returned."""
    try:
        call()
    except BaseException as exc:  # returned for the caller's checks
        return exc
    pytest.fail("did not raise")
