"""A typed program that uses dal as documented: mypy --strict finds nothing."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, assert_type

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

import dal
from dal.records import Record

from .models import Customer, Purchase


class Customers(dal.Repository[Customer]):  # model inferred from the type argument
    ttl = 60.0


class Purchases(dal.Repository[Purchase]):
    model = Purchase


db = dal.Database()
customers = Customers(db)

found = customers.get(1)
assert_type(found, Record[Customer] | None)
if found is not None:
    assert_type(found.id, int)
    assert_type(found.email, str)
    assert_type(found.nickname, str | None)
    assert_type(found.purchases, tuple[Record[Purchase], ...])
    assert_type(found.purchases[0].customer, Record[Customer])
    assert_type(found._replace(email="new@example.com"), Record[Customer])
    assert_type(found._asdict(), dict[str, Any])
    assert_type(found._fields, tuple[str, ...])

assert_type(customers.find(email="a@example.com"), list[Record[Customer]])
assert_type(customers.add(email="a@example.com").id, int)
assert_type(Purchases(db).update(1, amount=5).amount, int)
assert_type(Purchases(db).update(1, amount=5).quantity, int)
assert_type(Purchases(db).update(1, amount=5).note, Any)
assert_type(customers.get_many([1, 2]), dict[Hashable, Record[Customer]])


@dal.cached_query(db, depends_on=[Customer])
def with_purchases(session: Session, limit: int) -> Sequence[Customer]:
    query = select(Customer).options(selectinload(Customer.purchases)).limit(limit)
    return session.scalars(query).all()


@dal.cached_query(db, depends_on=[Customer, Purchase])
def pairs(session: Session) -> list[Row[tuple[Customer, Purchase]]]:
    return list(session.execute(select(Customer, Purchase).join(Customer.purchases)))


@dal.cached_query(db, depends_on=[Customer])
def emails(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Customer.id, Customer.email)).tuples().all())


assert_type(with_purchases(10), Sequence[Record[Customer]])
assert_type(with_purchases(10)[0].purchases[0].amount, int)
assert_type(with_purchases.refresh(10), Sequence[Record[Customer]])
assert_type(with_purchases.uncached(limit=10), Sequence[Record[Customer]])
assert_type(pairs(), list[Row[tuple[Record[Customer], Record[Purchase]]]])
assert_type(emails(), dict[int, str])
with_purchases.set(with_purchases(10), 10)  # records, as the call returns them
with_purchases.set([Customer(email="a@example.com")], 10)  # or instances


# -- async: the same types, awaited ----------------------------------------------------------


class AsyncCustomers(dal.AsyncRepository[Customer]):
    pass


adb = dal.AsyncDatabase()
async_customers = AsyncCustomers(adb)


@dal.cached_query(adb, depends_on=[Customer])
async def async_with_purchases(session: AsyncSession, limit: int) -> Sequence[Customer]:
    query = select(Customer).options(selectinload(Customer.purchases)).limit(limit)
    return (await session.scalars(query)).all()


async def use_async() -> None:
    found = await async_customers.get(1)
    assert_type(found, Record[Customer] | None)
    if found is not None:
        assert_type(found.email, str)
    assert_type(await async_customers.get_many([1]), dict[Hashable, Record[Customer]])
    assert_type(await async_customers.find(email="a@example.com"), list[Record[Customer]])
    assert_type(await async_customers.find_one(), Record[Customer] | None)
    assert_type(await async_customers.count(), int)
    assert_type(await async_customers.exists(), bool)
    assert_type((await async_customers.add(email="a@example.com")).id, int)
    assert_type(await async_customers.delete(1), bool)
    assert_type(async_customers.cache_info().hits, int)
    assert_type(await async_with_purchases(10), Sequence[Record[Customer]])
    assert_type(await async_with_purchases.refresh(10), Sequence[Record[Customer]])
    await async_with_purchases.set(await async_with_purchases(10), 10)
    async_with_purchases.invalidate(10)
