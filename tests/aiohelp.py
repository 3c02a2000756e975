"""Helpers for the AsyncDatabase tests: a cached entry to watch, and a pause at an await.

``Names`` is the smallest read-through cache over an AsyncDatabase's store (what
``AsyncRepository`` builds on): a test caches a value, writes, and sees whether the
entry was dropped. ``Pause`` parks a task at an exact await inside dal, from a sync
SQLAlchemy event that runs in the task's greenlet, so a test can cancel it there
without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.util import await_only

from dal import AsyncDatabase
from dal.store.keys import table_key
from tests.models import User

__all__ = ["Names", "Pause", "until"]


class Names:
    """``users.name`` by id through ``db._read``, cached in ``db._store``; any write to
    users drops every entry (a table-wide namespace)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.ns = db._store.namespace(("tests", "names"), "names", [table_key("users")], None)

    def cached(self, pk: int) -> bool:
        return pk in self.ns.entries

    async def get(self, pk: int) -> str | None:
        slot = self.ns.entries.get(pk)
        if slot is not None:
            return slot.value  # type: ignore[no-any-return]
        value = await self.fetch(pk)
        self.db._store.put(self.ns, (self.ns, pk), value)
        return value

    async def fetch(self, pk: int) -> str | None:
        """The committed name, uncached."""
        statement = select(User.name).where(User.id == pk)
        return await self.db._read(lambda conn: conn.execute(statement).scalar())


class Pause:
    """``hook(*args)`` parks the calling task (inside a greenlet) until ``release()``.

    ``reached`` is set when a task is parked; ``times`` counts the hooks passed, and
    ``skip`` lets the first few through. It parks once: later calls (the cleanup of a
    task cancelled while parked) pass.
    """

    def __init__(self, skip: int = 0) -> None:
        self.reached = asyncio.Event()
        self._go = asyncio.Event()
        self.skip = skip
        self.times = 0

    def hook(self, *args: Any, **kwargs: Any) -> None:
        self.times += 1
        if self.times <= self.skip or self.reached.is_set():
            return
        self.reached.set()
        await_only(self._go.wait())

    def release(self) -> None:
        self._go.set()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """``tests.waiting.wait_until`` for a coroutine: polls while letting the loop run.

    The outcome never depends on timing: the deadline only bounds a hang.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        await asyncio.sleep(0.001)


def join_aiosqlite_threads() -> None:
    """Wait for the threads of failed aiosqlite connects to end.

    aiosqlite stops a connection's thread after its connect failed without waiting
    for it; if the event loop closes first, that thread dies on "Event loop is
    closed", which pytest reports as an error of whatever test runs then. Call it
    once the test's databases are closed: every such thread is ending.
    """
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            thread.join(10)
