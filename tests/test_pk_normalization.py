"""Primary keys are normalized to the column's type, so ``get("7")`` and a write that
names ``7`` meet on one cache key; values that cannot be converted exactly are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

import dal
from tests.models import Pair, Pairs, Tag, Tags, User, Users
from tests.sqllog import StatementLog


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    repo.add(id=7, email="seven@example.com", name="seven")
    repo.add(id=8, email="eight@example.com", name="eight")
    return repo


def test_string_and_int_share_a_key(users: Users, statements: StatementLog) -> None:
    statements.clear()

    assert users.get("7").name == "seven"
    assert users.get(7) is users.get("7")

    assert len(statements.selects()) == 1
    assert users.cache_info().currsize == 1


def test_the_record_carries_the_column_type(users: Users) -> None:
    assert users.get("7").id == 7
    assert type(users.get("7").id) is int


def test_an_absence_is_shared_too(users: Users, statements: StatementLog) -> None:
    statements.clear()

    assert users.get("404") is None
    assert users.get(404) is None

    assert len(statements.selects()) == 1


def test_update_of_int_refreshes_a_get_of_string(users: Users) -> None:
    assert users.get("7").name == "seven"

    users.update(7, name="renamed")

    assert users.get("7").name == "renamed"


def test_update_of_string_refreshes_a_get_of_int(users: Users) -> None:
    assert users.get(7).name == "seven"

    users.update("7", name="renamed")

    assert users.get(7).name == "renamed"


def test_core_update_refreshes_a_get_of_string(
    db: dal.Database, users: Users, statements: StatementLog
) -> None:
    assert users.get("7").name == "seven"
    assert users.get("8").name == "eight"

    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.id == 7).values(name="core"))

    assert users.get("7").name == "core"
    statements.clear()
    assert users.get("8").name == "eight"
    assert statements.selects() == []


def test_session_update_refreshes_a_get_of_string(db: dal.Database, users: Users) -> None:
    assert users.get("7").name == "seven"

    with db.session() as s:
        s.get(User, 7).name = "session"

    assert users.get("7").name == "session"


def test_delete_and_add_by_string(users: Users) -> None:
    assert users.get(7) is not None
    assert users.delete("7") is True
    assert users.get(7) is None

    users.add(id=7, email="again@example.com", name="again")

    assert users.get("7").name == "again"


def test_get_many_keys_are_normalized(users: Users) -> None:
    found = users.get_many(["7", 8])

    assert found.keys() == {7, 8}
    assert found[7] is users.get(7)


def _refusal(get: Callable[[Any], Any], pk: Any) -> dal.UncacheableArgument:
    """The UncacheableArgument ``get(pk)`` raised; fails naming ``pk`` otherwise."""
    try:
        found = get(pk)
    except dal.UncacheableArgument as exc:
        return exc
    pytest.fail(f"get({pk!r}) was accepted and returned {found!r}")


def test_a_value_that_is_not_exactly_an_int_is_refused(
    users: Users, statements: StatementLog
) -> None:
    statements.clear()

    for pk in ["abc", "7.0", "07", " 7", "", 7.5, 7.0, None, b"7"]:
        error = _refusal(users.get, pk)

        assert isinstance(error, TypeError)
        assert repr(pk) in str(error)
        assert "users.id" in str(error)

    assert statements.all == []


def test_writes_refuse_a_bad_key_before_any_sql(users: Users, statements: StatementLog) -> None:
    statements.clear()

    with pytest.raises(dal.UncacheableArgument):
        users.update("abc", name="x")
    with pytest.raises(dal.UncacheableArgument):
        users.delete("abc")

    assert statements.all == []


def test_a_bool_is_not_an_int_primary_key(users: Users, statements: StatementLog) -> None:
    """bool subclasses int, but True is not a primary key value (PostgreSQL refuses it)."""
    statements.clear()

    with pytest.raises(dal.UncacheableArgument):
        users.get(True)

    assert statements.all == []


# --- composite keys -----------------------------------------------------------------------


@pytest.fixture
def tags(db: dal.Database) -> Tags:
    repo = Tags(db)
    repo.add(kind="color", name="red", label="Red")
    repo.add(kind="color", name="blue", label="Blue")
    return repo


def test_composite_key_is_a_tuple_in_primary_key_order(tags: Tags) -> None:
    assert tags.get(("color", "red")).label == "Red"
    assert tags.get(("red", "color")) is None


def test_composite_key_writes_refresh_the_tuple_key(
    db: dal.Database, tags: Tags, statements: StatementLog
) -> None:
    assert tags.get(("color", "red")).label == "Red"
    assert tags.get(("color", "blue")).label == "Blue"

    with db.session() as s:
        s.get(Tag, ("color", "red")).label = "Crimson"

    assert tags.get(("color", "red")).label == "Crimson"
    statements.clear()
    assert tags.get(("color", "blue")).label == "Blue"
    assert statements.selects() == []


def test_a_malformed_composite_key_is_refused(tags: Tags, statements: StatementLog) -> None:
    _learn_collations(tags)
    statements.clear()

    for pk in ["color", ("color",), ("color", "red", "extra"), ["color", "red"]]:
        _refusal(tags.get, pk)

    assert statements.all == []


def test_a_value_that_is_not_a_string_is_refused_for_a_string_column(
    tags: Tags, statements: StatementLog
) -> None:
    """str() accepts anything: None must not become the key 'None'."""
    _learn_collations(tags)
    statements.clear()

    for name in [None, ["red"], object()]:
        _refusal(tags.get, ("color", name))

    assert statements.all == []


def test_a_composite_key_follows_the_primary_key_constraint_order(
    db: dal.Database, statements: StatementLog
) -> None:
    # Keys are given in the constraint's order (b, a), as Session.get takes them.
    pairs = Pairs(db)
    pairs.add(a="x", b="y", label="old")
    assert pairs.get(("y", "x")).label == "old"
    pairs.update(("y", "x"), label="new")
    assert pairs.get(("y", "x")).label == "new"
    with db.engine.begin() as conn:
        conn.execute(update(Pair).where(Pair.a == "x", Pair.b == "y").values(label="core"))
    assert pairs.get(("y", "x")).label == "core"
    statements.clear()
    assert pairs.get(("y", "x")).label == "core"
    assert statements.selects() == []


def _learn_collations(tags: Tags) -> None:
    """MySQL reads the key columns' collations once, at the first lookup: do it now."""
    tags.get(("color", "warm-up"))
