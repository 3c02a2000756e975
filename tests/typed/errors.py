"""Mistakes mypy --strict must report: a line whose comment starts with E and a colon
has the error that the comment quotes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import dal

from .models import Customer, Purchase


class Customers(dal.Repository[Customer]):
    pass


class Mismatched(dal.Repository[Customer]):
    model = Purchase  # E: base class "Repository" defined the type as "type[Customer]"


db = dal.Database()
customers = Customers(db)
customer = customers.get(1)
customers.get(1).email  # E: Item "None" of "Record[Customer] | None" has no attribute "email"
assert customer is not None
customer.emial  # E: "Record[Customer]" has no attribute "emial"
count: int = customer.email  # E: (expression has type "str", variable has type "int")
customer.email = "b@example.com"  # E: variable has type "Never"
customer.purchases[0].amount = 1  # E: variable has type "Never"
customer.purchases[0].amont  # E: "Record[Purchase]" has no attribute "amont"
customer.metadata  # E: "Record[Customer]" has no attribute "metadata"


@dal.cached_query(db, depends_on=[Customer])
def richest(session: Session, limit: int) -> Sequence[Customer]:
    return session.scalars(select(Customer).limit(limit)).all()


richest(3)[0].email = "c@example.com"  # E: variable has type "Never"
richest.set([1], 3)  # E: Argument 1 to "set" of "CachedQuery" has incompatible type "list[int]"
richest("3")  # E: incompatible type "str"; expected "int"


class AsyncCustomers(dal.AsyncRepository[Customer]):
    pass


adb = dal.AsyncDatabase()


@dal.cached_query(adb, depends_on=[Customer])
async def async_richest(session: AsyncSession, limit: int) -> Sequence[Customer]:
    return (await session.scalars(select(Customer).limit(limit))).all()


async def use_async() -> None:
    found = await AsyncCustomers(adb).get(1)
    assert found is not None
    found.emial  # E: "Record[Customer]" has no attribute "emial"
    (await async_richest(3))[0].email = "c@example.com"  # E: variable has type "Never"
    await async_richest("3")  # E: incompatible type "str"; expected "int"
    pending = AsyncCustomers(adb).get(1)  # not awaited
    pending.email  # E: "Coroutine[Any, Any, Record[Customer] | None]" has no attribute "email"
