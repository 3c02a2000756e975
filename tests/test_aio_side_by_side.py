"""A sync Database on ThreadPoolExecutor workers and an AsyncDatabase on the event loop,
in one process on one database (seed 004's shape): each serves its callers, keeps its
own cache fresh after its own writes, and returns every connection."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update

import dal
from tests.aiohelp import Names
from tests.models import User, Users

WORKERS = 4


async def test_sync_workers_and_async_tasks_side_by_side(
    adb: dal.AsyncDatabase, adb_sync_url: str
) -> None:
    async with adb.session() as s:
        s.add(User(id=1, email="a@example.com", name="old"))
    loop = asyncio.get_running_loop()
    names = Names(adb)
    # pool_size sized to the executor: every worker can hold a connection at once.
    with (
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
        dal.Database(adb_sync_url, pool_size=WORKERS) as db,
    ):
        users = Users(db)

        def sync_name() -> str:
            found = users.get(1)
            assert found is not None
            return found.name

        async def both() -> tuple[list[str], list[str | None]]:
            threaded = [loop.run_in_executor(pool, sync_name) for _ in range(WORKERS * 2)]
            awaited = [names.get(1) for _ in range(WORKERS * 2)]
            return list(await asyncio.gather(*threaded)), list(await asyncio.gather(*awaited))

        assert await both() == (["old"] * WORKERS * 2, ["old"] * WORKERS * 2)

        # Each one's writes keep its own cache fresh (across processes or Databases
        # that is the bus's job).
        await loop.run_in_executor(pool, lambda: users.update(1, name="sync"))
        assert await loop.run_in_executor(pool, sync_name) == "sync"
        await adb._write(lambda conn: conn.execute(update(User).values(name="async")))
        assert await names.get(1) == "async"
        assert await loop.run_in_executor(pool, lambda: users.cache_clear() or sync_name()) == (
            "async"
        )
        assert db.stats()["pool"]["checked_out"] == 0
    assert adb.stats()["pool"]["checked_out"] == 0
