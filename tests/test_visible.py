"""Promise 10: whenever anyone listens, every statement dal sends is seen.

Tracing (OpenTelemetry), error reporting (Sentry) and slow-query logs hook
SQLAlchemy's ``before_cursor_execute`` / ``after_cursor_execute`` / ``handle_error``
events and the ``sqlalchemy.engine`` logger. Primary-key misses take a raw DBAPI
path that skips them, so that path is allowed only while nobody but dal listens.
Which path ran shows in ``engine_connect``: Core's path opens a Connection, the
raw one does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event

import dal
from tests.models import Users
from tests.test_errors import Ghosts  # a model whose table does not exist


class Connects:
    """Counts the Connections Core opens on an engine: the evented path's mark."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "engine_connect", self._add)

    def _add(self, conn: Any) -> None:
        self.count += 1


@pytest.fixture
def connects(db: dal.Database) -> Connects:
    return Connects(db.engine)


@pytest.fixture
def rows(db: dal.Database) -> list[int]:
    users = Users(db)
    pks = [users.add(email=f"u{i}@example.com", name=f"user {i}").id for i in range(4)]
    db.cache_clear()
    return pks


def test_nobody_listening_means_the_raw_path(
    db: dal.Database, rows: list[int], connects: Connects
) -> None:
    users = Users(db)
    assert users.get(rows[0]) is not None
    assert len(users.get_many(rows[1:])) == 3
    assert connects.count == 0  # dal's own listeners are nobody


def test_a_cursor_listener_sees_get_and_get_many_misses(
    db: dal.Database, rows: list[int], connects: Connects
) -> None:
    users = Users(db)
    seen: list[tuple[str, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(("before", statement))

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(("after", statement))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        assert users.get(rows[0]).name == "user 0"  # type: ignore[union-attr]
        assert {pk: r.name for pk, r in users.get_many(rows[1:]).items()} == {
            pk: f"user {i}" for i, pk in enumerate(rows[1:], start=1)
        }
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
    assert [when for when, _ in seen] == ["before", "after"] * 2
    assert all("FROM users" in sql and sql.lstrip().startswith("SELECT") for _, sql in seen)
    assert connects.count == 2

    # Listeners gone: back on the raw path.
    db.cache_clear()
    assert users.get(rows[0]) is not None
    assert connects.count == 2


def test_a_listener_on_the_engine_class_counts_too(
    db: dal.Database, rows: list[int], connects: Connects
) -> None:
    # Sentry's SQLAlchemy integration listens on the Engine class.
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        assert Users(db).get(rows[0]) is not None
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert len(seen) == 1 and "FROM users" in seen[0]


def test_the_sqlalchemy_engine_log_at_info_sees_misses(
    db: dal.Database, rows: list[int], connects: Connects, caplog: pytest.LogCaptureFixture
) -> None:
    users = Users(db)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        assert users.get(rows[0]) is not None
        assert len(users.get_many(rows[1:])) == 3
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
    assert sum("FROM users" in m for m in logged) == 2, logged
    assert connects.count == 2

    # Back at WARNING (the default): the raw path again, and nothing logged.
    caplog.clear()
    db.cache_clear()
    assert users.get(rows[0]) is not None
    assert connects.count == 2
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]


def test_echo_sees_misses(db: dal.Database, rows: list[int], connects: Connects) -> None:
    db.engine.echo = True
    try:
        assert Users(db).get(rows[0]) is not None
    finally:
        db.engine.echo = False
    assert connects.count == 1


@pytest.fixture
def errors_seen(db: dal.Database) -> Iterator[list[BaseException]]:
    seen: list[BaseException] = []

    def on_error(context: Any) -> None:
        seen.append(context.original_exception)

    event.listen(db.engine, "handle_error", on_error)
    try:
        yield seen
    finally:
        event.remove(db.engine, "handle_error", on_error)


@pytest.mark.parametrize("read", ["get", "get_many"])
def test_a_handle_error_listener_sees_a_failed_miss(
    db: dal.Database, errors_seen: list[BaseException], read: str
) -> None:
    ghosts = Ghosts(db)
    with pytest.raises(dal.DatabaseError):
        ghosts.get(1) if read == "get" else ghosts.get_many([1, 2])
    assert len(errors_seen) == 1
    assert "ghosts" in str(errors_seen[0])
