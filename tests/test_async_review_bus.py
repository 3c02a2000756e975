"""Promise 2 across processes for coroutines: another Database's commit, delivered by
the bus's listener thread while a coroutine's load is in flight, revokes its lease."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.util import await_only

import dal
from tests.aiohelp import until
from tests.models import Users
from tests.test_aio_bus import bus_adb
from tests.test_aio_repository import AUsers
from tests.test_bus import MakeDb, bus_stats, make_bus_db, seed

__all__ = ["bus_adb", "make_bus_db"]  # fixtures, used here


async def test_a_commit_announced_while_a_coroutine_loads_revokes_its_fill(
    bus_adb: dal.AsyncDatabase,
    make_bus_db: MakeDb,
) -> None:
    other = make_bus_db()
    seeded = bus_stats(bus_adb)["messages_applied"]  # type: ignore[arg-type]
    seed(Users(other))  # its announcements reach this cache too: all in before the load
    sent = bus_stats(other)["messages_sent"]
    await until(lambda: bus_stats(bus_adb)["messages_applied"] >= seeded + sent)  # type: ignore[arg-type]
    users = AUsers(bus_adb)
    read, go = asyncio.Event(), asyncio.Event()

    def park(*args: Any) -> None:  # after the load's SELECT returned the old row
        if not read.is_set():
            read.set()
            await_only(go.wait())

    event.listen(bus_adb._engine.sync_engine, "after_cursor_execute", park)
    applied = bus_stats(bus_adb)["messages_applied"]  # type: ignore[arg-type]
    load = asyncio.create_task(users.get(1))
    await read.wait()
    Users(other).update(1, name="new")  # another process's commit, over the bus
    await until(lambda: bus_stats(bus_adb)["messages_applied"] > applied)  # type: ignore[arg-type]
    go.set()
    assert (await load).name == "user1"  # read before the commit: fine to return once
    assert bus_adb.stats()["cache"]["stale_fills_prevented"] == 1
    assert (await users.get(1)).name == "new"  # type: ignore[union-attr]
