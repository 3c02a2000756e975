"""AsyncRepository[T] and async cached queries: Repository's contract, awaited.

Every test runs on each async backend (the ``adb`` fixture). Statements are counted
below SQLAlchemy (``tests.sqllog``) to prove that a hit issues no query.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import dal
from tests.models import Base, Order, Tag, User
from tests.sqllog import StatementLog


class AUsers(dal.AsyncRepository[User]):
    pass


class ATags(dal.AsyncRepository[Tag]):
    pass


async def _seed(users: AUsers, n: int = 3) -> None:
    for i in range(1, n + 1):
        await users.add(id=i, email=f"u{i}@example.com", name=f"user{i}", balance=10 * i)


async def test_get_loads_once_then_hits(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    await _seed(users, 1)
    adb_statements.clear()

    first = await users.get(1)
    second = await users.get(1)

    assert first is not None and first.name == "user1"
    assert second is first  # the cached record itself: records are immutable
    assert len(adb_statements.selects()) == 1
    assert await users.get(404) is None and await users.get(404) is None
    assert len(adb_statements.selects()) == 2  # the absence is cached too
    assert users.cache_info()[:2] == (2, 2)


async def test_keys_are_normalized_as_repositorys_are(adb: dal.AsyncDatabase) -> None:
    users, tags = AUsers(adb), ATags(adb)
    await _seed(users, 1)
    await tags.add(kind="k", name="n", label="L")

    assert await users.get("1") == await users.get(1) == await users.get({"id": 1})
    assert (await tags.get(("k", "n"))).label == "L"  # type: ignore[union-attr]
    with pytest.raises(dal.UncacheableArgument, match="not a valid value"):
        await users.get(1.5)


async def test_get_many_reads_the_misses_in_one_query(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    await _seed(users, 3)
    await users.get(1)
    adb_statements.clear()

    found = await users.get_many([1, 2, "3", 404, 2])

    assert sorted(found) == [1, 2, 3] and found[3].name == "user3"
    assert len(adb_statements.selects()) == 1
    assert await users.get_many([2, 3, 404]) == {2: found[2], 3: found[3]}
    assert len(adb_statements.selects()) == 1
    with pytest.raises(dal.InvalidArgument, match="iterable of primary keys"):
        await users.get_many(7)  # type: ignore[arg-type]


async def test_get_or_raise(adb: dal.AsyncDatabase) -> None:
    users = AUsers(adb)
    await _seed(users, 1)
    assert (await users.get_or_raise(1)).id == 1
    with pytest.raises(dal.NotFoundError, match="User 9 does not exist"):
        await users.get_or_raise(9)


async def test_find_count_exists_are_cached_and_follow_writes(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    await _seed(users, 3)
    adb_statements.clear()

    rich = await users.find(User.balance > 10, order_by="-balance")
    assert [u.id for u in rich] == [3, 2]
    assert await users.find(User.balance > 10, order_by="-balance") == rich
    assert (await users.find_one(name="user2")).id == 2  # type: ignore[union-attr]
    assert await users.count(User.balance >= 20) == 2
    assert await users.exists(name="nobody") is False
    assert len(adb_statements.selects()) == 4  # find, find_one, count, exists: each once

    await users.update(1, balance=99)

    assert [u.id for u in await users.find(User.balance > 10, order_by="-balance")] == [1, 3, 2]
    assert await users.count(User.balance >= 20) == 3
    with pytest.raises(dal.UnknownColumnError):
        await users.find(nmae="x")


async def test_writes_return_records_and_refresh_reads(adb: dal.AsyncDatabase) -> None:
    users = AUsers(adb)
    added = await users.add(User(email="a@example.com", name="A"))
    assert (await users.get(added.id)) == added

    updated = await users.update(added.id, name="B")
    assert updated.name == "B" and (await users.get(added.id)) == updated
    with pytest.raises(dal.NotFoundError):
        await users.update(404, name="nobody")
    with pytest.raises(dal.InvalidArgument, match="at least one column"):
        await users.update(added.id)

    assert await users.delete(added.id) is True
    assert await users.delete(added.id) is False
    assert await users.get(added.id) is None


async def test_a_session_reads_its_own_writes_and_caches_none_of_them(
    adb: dal.AsyncDatabase,
) -> None:
    users = AUsers(adb)
    await _seed(users, 2)
    assert (await users.get(1)).name == "user1"  # type: ignore[union-attr]

    with pytest.raises(RuntimeError):
        async with adb.session() as session:
            user = await session.get(User, 1)
            assert user is not None
            user.name = "uncommitted"
            await session.flush()
            assert (await users.get(1)).name == "uncommitted"  # type: ignore[union-attr]
            assert (await users.get_many([1, 2]))[1].name == "uncommitted"
            assert [u.name for u in await users.find(name="uncommitted")] == ["uncommitted"]
            assert await users.count(name="uncommitted") == 1
            assert (await users.update(2, name="joined")).name == "joined"
            raise RuntimeError("roll back")

    assert (await users.get(1)).name == "user1"  # type: ignore[union-attr]
    assert (await users.get(2)).name == "user2"  # type: ignore[union-attr]


async def test_cache_info_and_cache_clear_are_plain_calls(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    await _seed(users, 2)
    await users.get(1)
    await users.find(name="user2")
    assert users.cache_info().currsize == 2

    users.cache_clear()

    assert users.cache_info().currsize == 0
    adb_statements.clear()
    await users.get(1)
    assert len(adb_statements.selects()) == 1


async def test_each_repository_takes_its_own_kind_of_database(
    adb: dal.AsyncDatabase, sqlite_db: dal.Database
) -> None:
    class Users(dal.Repository[User]):
        pass

    with pytest.raises(dal.ConfigError, match=r"AUsers is a dal.AsyncRepository and takes a"):
        AUsers(sqlite_db)  # type: ignore[arg-type]
    with pytest.raises(dal.ConfigError, match=r"Users is a dal.Repository and takes a dal.Da"):
        Users(adb)  # type: ignore[arg-type]


def test_a_repository_class_is_named_in_its_mistakes() -> None:
    with pytest.raises(dal.ConfigError, match=r"does not match AsyncRepository\[User\]"):

        class Mismatched(dal.AsyncRepository[User]):
            model = Order  # type: ignore[assignment]


# -- async cached queries --------------------------------------------------------------------


async def test_a_cached_async_function_loads_once_per_arguments(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    users = AUsers(adb)
    await _seed(users, 3)
    calls: list[int] = []

    @dal.cached_query(adb, depends_on=[User])
    async def names_over(session: AsyncSession, balance: int) -> list[str]:
        calls.append(balance)
        query = select(User.name).where(User.balance > balance).order_by(User.id)
        return list(await session.scalars(query))

    adb_statements.clear()
    assert await names_over(10) == ["user2", "user3"]
    got = await names_over(balance=10)
    assert got == ["user2", "user3"] and calls == [10]
    got.append("mutated")  # promise 6: the caller's copy, never the cached value
    assert await names_over(10) == ["user2", "user3"]
    assert len(adb_statements.selects()) == 1
    assert names_over.cache_info()[:2] == (2, 1)

    await users.add(id=4, email="u4@example.com", name="user4", balance=40)
    assert await names_over(10) == ["user2", "user3", "user4"]  # the write dropped it

    names_over.invalidate(10)
    assert await names_over(10) == ["user2", "user3", "user4"] and calls == [10, 10, 10]
    names_over.cache_clear()
    assert names_over.cache_info().currsize == 0


async def test_orm_results_arrive_as_records_and_refresh_and_set_store(
    adb: dal.AsyncDatabase,
) -> None:
    users = AUsers(adb)
    await _seed(users, 2)

    @dal.cached_query(adb, depends_on=[User])
    async def everyone(session: AsyncSession) -> list[User]:
        return list(await session.scalars(select(User).order_by(User.id)))

    found = await everyone()
    assert [u.name for u in found] == ["user1", "user2"]
    assert all(isinstance(u, dal.records.Record) for u in found)

    async with adb.session() as session:  # a write that dal sees, then a fresh load
        (await session.get(User, 1)).name = "renamed"  # type: ignore[union-attr]
    assert [u.name for u in await everyone.refresh()] == ["renamed", "user2"]

    await everyone.set([])
    assert await everyone() == []
    assert [u.name for u in await everyone.uncached()] == ["renamed", "user2"]


async def test_a_cached_function_in_a_writing_session_sees_its_writes(
    adb: dal.AsyncDatabase,
) -> None:
    users = AUsers(adb)
    await _seed(users, 1)

    @dal.cached_query(adb, depends_on=[User])
    async def total(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.sum(User.balance))) or 0)

    assert await total() == 10
    async with adb.session() as session:
        session.add(User(id=2, email="u2@example.com", name="user2", balance=5))
        await session.flush()
        assert await total() == 15  # the session's own write, nothing cached
    assert await total() == 15  # committed: the earlier result was dropped


async def test_decoration_refuses_the_wrong_kind_of_function(
    sqlite_db: dal.Database, tmp_path: Path
) -> None:
    async_db = dal.AsyncDatabase(f"sqlite+aiosqlite:///{tmp_path}/async.db")

    def plain(session: Any) -> int:
        return 1

    async def coroutine(session: Any) -> int:
        return 1

    async def generator(session: Any) -> Any:
        yield 1

    with pytest.raises(dal.ConfigError, match="plain def, and the Database is an AsyncDatabase"):
        dal.cached_query(async_db, depends_on=[User])(plain)
    with pytest.raises(dal.ConfigError, match="async function, and the Database is synchronous"):
        dal.cached_query(sqlite_db, depends_on=[User])(coroutine)
    with pytest.raises(dal.ConfigError, match="generator function"):
        dal.cached_query(async_db, depends_on=[User])(generator)

    async def sessionless() -> int:
        return 1

    with pytest.raises(dal.ConfigError, match="passes an AsyncSession"):
        dal.cached_query(async_db, depends_on=[User])(sessionless)  # type: ignore[arg-type]
    await async_db.close()


async def test_another_threads_event_loop_gets_the_second_loop_error(
    adb: dal.AsyncDatabase,
) -> None:
    """Hits included: a call from a loop in another thread is refused, not answered."""
    users = AUsers(adb)
    await _seed(users, 1)

    @dal.cached_query(adb, depends_on=[User])
    async def one(session: AsyncSession) -> int:
        return 1

    assert (await users.get(1)) is not None and await one() == 1  # both cached now

    calls = {
        "hit": lambda: users.get(1),
        "miss": lambda: users.get(404),
        "find": lambda: users.find(),
        "write": lambda: users.add(email="b@example.com", name="B"),
        "cached query": one,
    }
    for name, call in calls.items():
        with pytest.raises(dal.ConfigError, match="one AsyncDatabase per event loop"):
            await asyncio.to_thread(asyncio.run, call())
        assert await users.get(1) is not None, name  # fine on its own loop


async def test_composite_keys_and_the_databases_key_equality(
    adb: dal.AsyncDatabase, adb_statements: StatementLog
) -> None:
    """Keys the database takes for one row are one entry: on MariaDB its collations are
    learned by an awaited read before the first lookup (case-insensitive, PAD SPACE)."""
    tags = ATags(adb)
    await tags.add(kind="Books", name="Ada", label="L")
    await tags.add(kind="Books", name="Bo", label="M")
    adb_statements.clear()

    first = await tags.get(("Books", "Ada"))
    found = await tags.get_many([("Books", "Ada"), ("Books", "Bo"), ("Books", "none")])

    assert first is not None and any(record is first for record in found.values())
    assert sorted(record.label for record in found.values()) == ["L", "M"]
    # The get, then get_many's two misses at once (and on MariaDB, first, the collations).
    mysql = adb.settings.backend == "mysql"
    assert len(adb_statements.selects()) == 2 + mysql
    if mysql:
        assert await tags.get(("books", "ADA ")) is first
    await tags.update(("Books", "Ada"), label="N")
    assert (await tags.get(("Books", "Ada"))).label == "N"  # type: ignore[union-attr]


def test_a_later_event_loop_in_the_same_thread_gets_the_error_on_a_hit(
    sqlite_url: str,
) -> None:
    engine = create_engine(sqlite_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    adb = dal.AsyncDatabase(sqlite_url.replace("sqlite://", "sqlite+aiosqlite://"))
    users = AUsers(adb)
    first = asyncio.new_event_loop()
    try:
        pk = first.run_until_complete(users.add(email="a@example.com", name="A")).id
        assert first.run_until_complete(users.get(pk)) == first.run_until_complete(users.get(pk))
        assert users.cache_info().hits == 1
        with pytest.raises(dal.ConfigError, match="one AsyncDatabase per event loop"):
            asyncio.run(users.get(pk))  # a hit, on another loop of this thread
        assert first.run_until_complete(users.get(pk)) is not None
    finally:
        first.run_until_complete(adb.close())
        first.close()
