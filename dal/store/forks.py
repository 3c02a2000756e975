"""After ``fork()``: each live Database in the child gets fresh locks, an empty cache,
no loads in flight, its own connections and, with the bus, its own listener.

Only the thread that called ``fork()`` exists in the child. A lock another thread
held at that moment stays held forever, and the data it guarded may be half
changed (gunicorn ``--preload``, multiprocessing's fork start method). The hook is
registered once, when the first Database is made; nothing happens at import.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

__all__ = ["watch"]


class _Forkable(Protocol):
    def _after_fork(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False


def watch(database: _Forkable) -> None:
    """Call ``database._after_fork()`` in every forked child while it lives."""
    global _registered
    _live.add(database)
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_child)
        _registered = True


def _in_child() -> None:
    from .. import records
    from ..tracking import statements

    # Module-level locks of dal, held for a moment on first use of a model or a
    # statement shape: a thread of the parent may have been inside.
    records._types_lock = threading.Lock()
    statements._shapes_lock = threading.Lock()
    for database in list(_live):
        database._after_fork()
