"""get_many: {pk: record} for the rows that exist, one SELECT for all the misses."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert

import dal
from dal.drivers.pkread import MAX_KEYS
from tests.models import Tags, User, Users
from tests.sqllog import StatementLog


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    for i in range(1, 6):
        repo.add(id=i, email=f"u{i}@example.com", name=f"user{i}")
    return repo


def _asked_for(statement: str) -> list[int]:
    """The keys a SELECT ... IN (...) or = ANY(ARRAY[...]) lists, from its SQL text.

    An ``IN`` list of n keys is padded to a power of two by repeating its last key.
    """
    found = re.search(r"IN \(([^)]*)\)", statement) or re.search(r"ARRAY\[([^]]*)\]", statement)
    assert found is not None, statement
    return [int(v) for v in found.group(1).split(",")]


def test_one_select_for_all_misses(users: Users, statements: StatementLog) -> None:
    statements.clear()

    found = users.get_many([1, 2, 3])

    assert {pk: r.name for pk, r in found.items()} == {1: "user1", 2: "user2", 3: "user3"}
    assert len(statements.selects()) == 1
    assert set(_asked_for(statements.selects()[-1])) == {1, 2, 3}


def test_then_every_key_is_a_hit(users: Users, statements: StatementLog) -> None:
    users.get_many([1, 2, 3])
    statements.clear()

    assert users.get_many([3, 2, 1]).keys() == {1, 2, 3}
    assert users.get(2).name == "user2"
    assert statements.selects() == []


def test_mixed_hits_and_misses_query_only_the_misses(
    users: Users, statements: StatementLog
) -> None:
    users.get(1)
    users.get(3)
    statements.clear()

    found = users.get_many([1, 2, 3, 4])

    assert found.keys() == {1, 2, 3, 4}
    assert len(statements.selects()) == 1
    assert set(_asked_for(statements.selects()[0])) == {2, 4}


def test_missing_pks_are_omitted_and_their_absence_cached(
    users: Users, statements: StatementLog
) -> None:
    statements.clear()

    found = users.get_many([1, 404, 405])

    assert found.keys() == {1}
    assert len(statements.selects()) == 1
    assert users.get(404) is None
    assert users.get_many([404, 405]) == {}
    assert len(statements.selects()) == 1


def test_only_absent_pks(users: Users) -> None:
    assert users.get_many([404]) == {}


def test_empty_input_issues_no_query(users: Users, statements: StatementLog) -> None:
    statements.clear()

    assert users.get_many([]) == {}
    assert statements.all == []


def test_duplicates_are_loaded_once(users: Users, statements: StatementLog) -> None:
    statements.clear()

    found = users.get_many([2, 2, "2", 3])

    assert found.keys() == {2, 3}
    assert len(statements.selects()) == 1
    assert sorted(_asked_for(statements.selects()[-1])) == [2, 3]


def test_accepts_any_iterable(users: Users) -> None:
    assert users.get_many(pk for pk in (1, 2)).keys() == {1, 2}
    assert users.get_many({4, 5}).keys() == {4, 5}


def test_returns_the_same_records_as_get(users: Users) -> None:
    found = users.get_many([1, 2])

    assert found[1] is users.get(1)
    assert found[2] == users.get(2)


def test_reflects_committed_writes(users: Users) -> None:
    users.get_many([1, 2, 3])

    users.update(2, name="renamed")
    users.delete(3)
    users.add(id=6, email="u6@example.com", name="user6")

    found = users.get_many([1, 2, 3, 6])
    assert {pk: r.name for pk, r in found.items()} == {1: "user1", 2: "renamed", 6: "user6"}


def test_composite_keys(db: dal.Database, statements: StatementLog) -> None:
    tags = Tags(db)
    for kind, name in [("color", "red"), ("color", "blue"), ("size", "xl")]:
        tags.add(kind=kind, name=name, label=f"{kind}:{name}")
    tags.get(("color", "red"))
    statements.clear()

    found = tags.get_many([("color", "red"), ("color", "blue"), ("size", "xl"), ("size", "s")])

    assert {key: tag.label for key, tag in found.items()} == {
        ("color", "red"): "color:red",
        ("color", "blue"): "color:blue",
        ("size", "xl"): "size:xl",
    }
    assert len(statements.selects()) == 1
    statements.clear()
    assert tags.get(("size", "s")) is None
    assert tags.get_many([("color", "blue")]).keys() == {("color", "blue")}
    assert statements.selects() == []


def test_composite_keys_that_share_one_column_are_not_confused(db: dal.Database) -> None:
    """(a, b) IN ((x, y), ...) must not match the cross product of the columns."""
    tags = Tags(db)
    tags.add(kind="a", name="y", label="a:y")
    tags.add(kind="b", name="x", label="b:x")

    found = tags.get_many([("a", "x"), ("b", "y")])

    assert found == {}


def test_an_invalid_pk_is_rejected_before_any_query(users: Users, statements: StatementLog) -> None:
    statements.clear()

    with pytest.raises(dal.UncacheableArgument, match="abc"):
        users.get_many([1, "abc"])

    assert statements.all == []


def test_more_keys_than_one_in_list_takes_a_query_per_chunk(
    db: dal.Database, statements: StatementLog
) -> None:
    users = Users(db)
    n = MAX_KEYS + 10
    # From 1: MySQL stores the next AUTO_INCREMENT value for an id of 0.
    ids = range(1, n + 1)
    with db.engine.begin() as conn:
        conn.execute(
            insert(User), [{"id": i, "email": f"c{i}@example.com", "name": "c"} for i in ids]
        )
    statements.clear()

    found = users.get_many(ids)

    assert sorted(found) == list(ids)
    assert len(statements.selects()) == 2


def test_postgresql_reads_any_number_of_keys_with_one_unpadded_statement(
    pg_db: dal.Database,
) -> None:
    # Padding an IN list to a power of two makes PostgreSQL plan the extra values on
    # every call; an array parameter is one statement text for every batch size.
    users = Users(pg_db)
    for i in range(1, 8):
        users.add(id=i, email=f"u{i}@example.com", name=f"user{i}")
    users_table = User.__table__
    log = StatementLog(pg_db.engine).attach()
    try:
        pg_db._store.clear()
        assert users.get_many([1, 2, 3]).keys() == {1, 2, 3}
        assert users.get_many([4, 5, 6, 7, 99]).keys() == {4, 5, 6, 7}
    finally:
        log.detach()
    first, second = log.selects()
    assert _asked_for(first) == [1, 2, 3]
    assert _asked_for(second) == [4, 5, 6, 7, 99]
    shape = re.compile(r"ARRAY\[[^]]*\]")
    assert shape.sub("?", first) == shape.sub("?", second)
    assert f"{users_table.name}.id = ANY" in first
