"""The direct hit path of ``Repository.get``: what it may skip, and what it must not."""

from __future__ import annotations

import threading
from typing import Any

import dal
from tests.models import User, Users


def test_a_session_open_in_another_thread_does_not_touch_this_threads_hits(
    db: dal.Database, statements: Any
) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="old")
    assert users.get(1).name == "old"  # cached
    wrote, done = threading.Event(), threading.Event()
    seen: list[str] = []

    def writer() -> None:
        with db.session() as session:
            session.get(User, 1).name = "new"
            session.flush()
            seen.append(users.get(1).name)  # the session's own write
            wrote.set()
            done.wait(10)
            session.rollback()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert wrote.wait(10)
    statements.clear()
    hits = users.cache_info().hits

    assert users.get(1).name == "old"  # uncommitted elsewhere: the cached row
    assert users.cache_info().hits == hits + 1
    assert statements.selects() == []
    done.set()
    thread.join(10)
    assert seen == ["new"]
    assert db._sessions_open == 0


def test_a_subclass_that_overrides_get_keeps_its_override(db: dal.Database) -> None:
    calls: list[Any] = []

    class Audited(Users):
        def get(self, pk: Any) -> Any:
            calls.append(pk)
            return super().get(pk)

    audited = Audited(db)
    Users(db).add(id=1, email="a@example.com", name="A")

    assert audited.get(1).name == "A"
    assert audited.get(1).name == "A"
    assert calls == [1, 1]
    assert audited.cache_info().hits == 1
