"""Promise 6: what a read returns cannot change what the cache holds or what another
caller sees. Records are immutable, slotted, equal by value, hashable, picklable."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import dal
from tests.models import Orders, Tags, User, Users


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    repo.add(id=1, email="a@example.com", name="A", balance=5)
    repo.add(id=2, email="b@example.com", name="B", balance=7)
    return repo


# --- records ------------------------------------------------------------------------------


def test_attributes_by_column_name(users: Users) -> None:
    user = users.get(1)

    assert (user.id, user.email, user.name, user.balance, user.version) == (
        1,
        "a@example.com",
        "A",
        5,
        0,
    )


def test_setting_an_attribute_raises(users: Users) -> None:
    user = users.get(1)

    for name in ("name", "id", "not_a_column"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(user, name, "changed")

    assert (users.get(1).id, users.get(1).name) == (1, "A")
    assert not hasattr(users.get(1), "not_a_column")


def test_deleting_an_attribute_raises(users: Users) -> None:
    user = users.get(1)

    with pytest.raises(AttributeError):
        del user.name

    assert users.get(1).name == "A"


def test_records_are_slotted(users: Users) -> None:
    user = users.get(1)

    assert not hasattr(user, "__dict__")


def test_every_read_shares_one_immutable_record(users: Users) -> None:
    """Immutable values need no copies: hits hand out the same object."""
    assert users.get(1) is users.get(1)
    assert copy.copy(users.get(1)) is users.get(1)
    assert copy.deepcopy(users.get(1)) is users.get(1)


def test_records_are_not_orm_instances(users: Users) -> None:
    user = users.get(1)

    assert not isinstance(user, User)
    assert type(user).__name__ == "UserRecord"


def test_asdict_is_a_fresh_dict_of_the_columns(users: Users) -> None:
    user = users.get(1)
    as_dict = user._asdict()

    assert as_dict == {"id": 1, "email": "a@example.com", "name": "A", "balance": 5, "version": 0}
    as_dict["name"] = "changed"
    assert user._asdict()["name"] == "A"
    assert users.get(1).name == "A"


def test_equality_and_hash_are_by_value(db: dal.Database, users: Users) -> None:
    first = users.get(1)
    same_values = users.find(id=1)[0]
    users.update(1, name="A")  # same values, a new load
    reloaded = users.get(1)

    assert first == same_values == reloaded
    assert hash(first) == hash(reloaded)
    assert len({first, same_values, reloaded}) == 1
    assert first != users.get(2)
    assert users.update(1, balance=6) != first


def test_records_of_different_models_are_never_equal(db: dal.Database, users: Users) -> None:
    Tags(db).add(kind="1", name="n", label="l")
    order = Orders(db).add(id=1, user_id=1, amount=1)

    assert order != users.get(1)
    assert users.get(1) != (1, "a@example.com", "A", 5, 0)


def test_repr_names_the_model_and_every_column(users: Users) -> None:
    assert repr(users.get(1)) == (
        "UserRecord(id=1, email='a@example.com', name='A', balance=5, version=0)"
    )


def test_records_are_picklable(users: Users) -> None:
    user = users.get(1)

    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(user, protocol=protocol))

        assert restored == user, f"protocol {protocol}"
        assert type(restored) is type(user)
        with pytest.raises(AttributeError):
            restored.name = "changed"


def test_composite_key_records_are_picklable(db: dal.Database) -> None:
    tag = Tags(db).add(kind="color", name="red", label="Red")

    assert pickle.loads(pickle.dumps(tag)) == tag


# --- containers a read returns ------------------------------------------------------------


def test_mutating_a_find_result_does_not_change_the_next(users: Users) -> None:
    found = users.find(order_by="id")
    found.append("junk")  # type: ignore[arg-type]
    found.reverse()

    assert [u.id for u in users.find(order_by="id")] == [1, 2]


def test_mutating_a_get_many_result_does_not_change_the_next(users: Users) -> None:
    found = users.get_many([1, 2])
    found.clear()

    assert users.get_many([1, 2]).keys() == {1, 2}


def test_mutating_a_returned_list_does_not_change_the_next_call(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    first = names()
    first.append("junk")
    first[0] = "changed"

    assert names() == ["A", "B"]
    assert names() is not names()


def test_mutating_a_returned_dict_does_not_change_the_next_call(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def balances(session: Session) -> dict[str, int]:
        return {u.name: u.balance for u in session.scalars(select(User))}

    first = balances()
    first["A"] = 1000
    first["C"] = 1

    assert balances() == {"A": 5, "B": 7}


def test_mutating_nested_containers_does_not_change_the_next_call(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def rows(session: Session) -> list[dict[str, Any]]:
        return [{"id": u.id, "tags": [u.name]} for u in session.scalars(select(User))]

    first = rows()
    first[0]["tags"].append("junk")
    first[0]["id"] = 99

    assert sorted(r["id"] for r in rows()) == [1, 2]
    assert all(len(r["tags"]) == 1 for r in rows())


def test_mutating_a_returned_set_does_not_change_the_next_call(
    db: dal.Database, users: Users
) -> None:
    @dal.cached_query(db, depends_on=[User])
    def ids(session: Session) -> set[int]:
        return set(session.scalars(select(User.id)))

    ids().add(99)

    assert ids() == {1, 2}


def test_mutating_a_returned_object_does_not_change_the_next_call(
    db: dal.Database, users: Users
) -> None:
    class Summary:
        def __init__(self, names: list[str]) -> None:
            self.names = names

    @dal.cached_query(db, depends_on=[User])
    def summary(session: Session) -> Summary:
        return Summary(list(session.scalars(select(User.name).order_by(User.id))))

    first = summary()
    first.names.append("junk")
    first.names = []

    assert summary().names == ["A", "B"]


def test_the_first_caller_cannot_change_what_the_cache_stores(
    db: dal.Database, users: Users
) -> None:
    """The miss returns a copy too, not the object that was stored."""
    calls: list[int] = []

    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        calls.append(1)
        return ["A", "B"]

    names().clear()

    assert names() == ["A", "B"]
    assert len(calls) == 1


def test_orm_instances_returned_are_detached_snapshots(db: dal.Database, users: Users) -> None:
    @dal.cached_query(db, depends_on=[User])
    def by_id(session: Session) -> dict[int, User]:
        return {u.id: u for u in session.scalars(select(User))}

    first = by_id()
    assert first[1] == users.get(1)
    with pytest.raises(AttributeError):
        first[1].name = "changed"
    first[1] = None  # type: ignore[assignment]

    assert by_id()[1].name == "A"
