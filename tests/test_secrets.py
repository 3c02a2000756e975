"""A password in the database URL never appears in a dal error message or a repr."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import dal
from dal.config import Settings
from tests.failures import error_of
from tests.models import User, Users

PASSWORD = "s3cr3t-pw"


def _with_password(url: str, port: int | None = None) -> str:
    parsed = make_url(url).set(password=PASSWORD)
    if port is not None:
        parsed = parsed.set(port=port)
    return parsed.render_as_string(hide_password=False)


def _assert_hidden(error: BaseException, label: str) -> None:
    for text in (str(error), repr(error)):
        assert PASSWORD not in text, f"{label}: {text}"


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg2://app:{PASSWORD}@db:notaport/app",
        f"postgresql+asyncpg://app:{PASSWORD}@db/app",
        f"oracle://app:{PASSWORD}@db/app",
    ],
)
def test_config_errors_hide_the_password(url: str) -> None:
    error = error_of(lambda: dal.Database(url))

    assert isinstance(error, dal.ConfigError)
    _assert_hidden(error, url)


def test_a_bad_setting_hides_the_password() -> None:
    url = f"postgresql+psycopg2://app:{PASSWORD}@127.0.0.1/app"
    error = error_of(lambda: dal.Database(url, pool_size=0))

    assert isinstance(error, dal.ConfigError)
    _assert_hidden(error, "pool_size=0")


def test_settings_and_database_reprs_hide_the_password(postgres_url: str) -> None:
    db = dal.Database(_with_password(postgres_url))
    try:
        for text in (repr(db), repr(db.settings), str(db.settings), repr(db.settings.url)):
            assert PASSWORD not in text, text
    finally:
        db.close()


# --- errors from the database ----------------------------------------------------------------


@pytest.fixture
def secret_db(pg_db: dal.Database) -> Iterator[dal.Database]:
    """A Database on the test's PostgreSQL tables whose URL has a password (trust auth)."""
    url = pg_db.settings.url.render_as_string(hide_password=False)
    other = dal.Database(_with_password(url))
    try:
        yield other
    finally:
        other.close()


def test_a_database_message_that_echoes_the_password_is_masked(
    secret_db: dal.Database,
) -> None:
    """PostgreSQL quotes a bad value back; the value here is the password itself."""
    users = Users(secret_db)

    error = error_of(lambda: users.find(balance=PASSWORD))

    assert isinstance(error, dal.DatabaseError)
    assert "***" in str(error)
    _assert_hidden(error, "find")


def test_a_refused_connection_hides_the_password(postgres_url: str, closed_port: int) -> None:
    db = dal.Database(_with_password(postgres_url, closed_port), pool_timeout=1)
    users = Users(db)

    @dal.cached_query(db, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name)))

    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: users.get(1),
        "get_many": lambda: users.get_many([1, 2]),
        "find": lambda: users.find(name="A"),
        "add": lambda: users.add(email="a@example.com", name="A"),
        "update": lambda: users.update(1, name="B"),
        "cached_query": names,
        "session": lambda: _write_in_session(db),
    }
    try:
        for label, call in calls.items():
            error = error_of(call)
            assert isinstance(error, dal.DatabaseError), f"{label}: {error!r}"
            assert "refused" in str(error).lower(), f"{label}: {error}"
            _assert_hidden(error, label)
    finally:
        db.close()


def _write_in_session(db: dal.Database) -> None:
    with db.session() as s:
        s.add(User(email="a@example.com", name="A"))


def test_redact_masks_every_form_of_the_password() -> None:
    url = make_url("postgresql+psycopg2://app:p%40ss%20w@db/app")  # "p@ss w"
    masked = Settings(url=url).redact("dsn p@ss w, quoted p%40ss%20w, plus p%40ss+w")

    assert masked == "dsn ***, quoted ***, plus ***"
