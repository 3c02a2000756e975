"""Records with unhashable column values (JSON) hash consistently with equality.

A cached function that returns a set of such records must work as it does uncached.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import JSON, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dal
from dal.records import record_type


class _Base(DeclarativeBase):
    pass


class Doc(_Base):
    __tablename__ = "hash_docs"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    body: Mapped[Any] = mapped_column(JSON)


class Docs(dal.Repository[Doc]):
    model = Doc


BODIES = [
    {"tags": ["a", "b"], "meta": {"n": 1, "s": {"deep": [1, 2]}}},
    [1, [2, 3], {"k": None}],
    "plain",
    None,
]


@pytest.fixture
def docs(db: dal.Database) -> Iterator[Docs]:
    _Base.metadata.create_all(db.engine)
    try:
        repo = Docs(db)
        for i, body in enumerate(BODIES, start=1):
            repo.add(id=i, title=f"doc{i}", body=body)
        yield repo
    finally:
        _Base.metadata.drop_all(db.engine)


def test_a_cached_function_may_return_a_set_of_records_with_json(
    db: dal.Database, docs: Docs
) -> None:
    def all_docs(session: Session) -> set[Any]:
        return set(session.scalars(select(Doc)))

    cached = dal.cached_query(db, depends_on=[Doc])(all_docs)

    first, second = cached(), cached()

    assert [d.body for d in sorted(first, key=lambda d: d.id)] == BODIES
    assert first == second
    assert cached.cache_info().hits == 1
    assert len(first) == len(BODIES)


def test_equal_records_hash_alike_and_unequal_ones_stay_apart(docs: Docs) -> None:
    make = record_type(Doc).make
    a = make((1, "t", {"x": [1, 2], "y": {"z": 3}}))
    b = make((1, "t", {"y": {"z": 3}, "x": [1, 2]}))  # the same dict, another order
    c = make((1, "t", {"x": [2, 1], "y": {"z": 3}}))  # a list in another order

    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    read = docs.get(1)
    assert read is not None
    assert read == make((1, "doc1", BODIES[0])) and hash(read) == hash(make((1, "doc1", BODIES[0])))
    assert {read, docs.get(1)} == {read}


def test_a_hashable_json_value_hashes_as_before(docs: Docs) -> None:
    """Records whose values are all hashable keep the plain tuple hash."""
    read = docs.get(3)
    assert read is not None
    assert hash(read) == hash((type(read), (3, "doc3", "plain")))
