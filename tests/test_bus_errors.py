"""The bus's error paths on a real PostgreSQL: a write on a dead connection, a server that
refuses or does not answer, and a password that must stay out of every message.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import psycopg2
import pytest
import sqlalchemy.exc
from sqlalchemy.engine import make_url

import dal
import dal.bus
from tests.models import User
from tests.test_bus import MakeDb, Users, admin, bus_stats, hit, make_bus_db, seed
from tests.waiting import wait_until

__all__ = ["make_bus_db"]

PASSWORD = "s3cr3t-pw"


def _kill_pooled_connections(postgres_url: str) -> int:
    """End every backend of the test database but the listeners': a server restart, for
    the pool."""
    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name <> 'dal listener'"
            )
            (killed,) = cur.fetchone()
    finally:
        conn.close()
    return int(killed)


def test_a_write_on_a_dead_connection_is_a_database_error_and_announces_nothing(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a, b = make_bus_db(), make_bus_db()
    writer, reader = Users(a), Users(b)
    seed(writer)
    # The seed's inserts reach the reader later and drop its key 1: wait for them first.
    wait_until(lambda: bus_stats(b)["messages_received"] >= bus_stats(a)["messages_sent"])
    for users in (writer, reader):
        users.get(1)
        assert hit(users, 1).name == "user1"
    sent = bus_stats(a)["messages_sent"]
    invalidations = a.stats()["cache"]["invalidations"]
    assert _kill_pooled_connections(postgres_url) >= 1

    with pytest.raises(dal.DatabaseError) as raised:
        writer.update(1, name="never committed")

    assert isinstance(raised.value.__cause__, sqlalchemy.exc.DBAPIError)
    assert bus_stats(a)["messages_sent"] == sent
    # Nor applied here: the write never committed, the cached row is still true.
    assert a.stats()["cache"]["invalidations"] == invalidations
    assert hit(writer, 1).name == "user1"
    assert bus_stats(a)["state"] == "listening"
    # The pool dropped its dead connections: the next write commits and is announced.
    writer.update(2, name="committed")
    wait_until(lambda: reader.get(2).name == "committed")
    assert reader.get(1).name == "user1"
    assert bus_stats(a)["messages_sent"] == sent + 1


def test_a_session_write_on_a_dead_connection_is_a_database_error(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    sent = bus_stats(a)["messages_sent"]
    assert _kill_pooled_connections(postgres_url) >= 1

    with pytest.raises(dal.DatabaseError), a.session() as s:
        held = s.get(User, 1)  # the first statement meets the dead connection
        assert held is not None
        held.name = "never committed"

    assert bus_stats(a)["messages_sent"] == sent
    assert users.get(1).name == "user1"


# --- a server that cannot be reached --------------------------------------------------------


def _url(postgres_url: str, port: int) -> str:
    url = make_url(postgres_url).set(port=port, password=PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose server accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])
    # Closing it resets the connections it held: a connect in progress fails now.


def test_a_database_with_the_bus_returns_at_once_when_the_server_does_not_answer(
    postgres_url: str, silent_port: int
) -> None:
    started = time.monotonic()
    db = dal.Database(_url(postgres_url, silent_port), invalidation="postgres")
    took = time.monotonic() - started
    try:
        # The listener's connect waits for its connect_timeout (10 s); the caller does not.
        assert took < 5.0, f"Database() took {took:.1f} s"  # a bound, not a measurement
        assert bus_stats(db)["state"] == "connecting"
        assert "bus" in db.stats()["cache"]["paused"]  # off until LISTEN is in place
    finally:
        started = time.monotonic()
        db.close()  # nor does close() wait for the connect
        took = time.monotonic() - started
    assert took < 5.0, f"close() took {took:.1f} s"
    assert bus_stats(db)["state"] == "stopped"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_server_pauses_caching_and_hides_the_password(
    postgres_url: str, closed_port: int
) -> None:
    db = dal.Database(_url(postgres_url, closed_port), invalidation="postgres")
    try:
        wait_until(lambda: bus_stats(db)["errors"] >= 1)
        stats = bus_stats(db)
        assert stats["state"] in ("connecting", "reconnecting")
        assert "refused" in stats["last_error"].lower()
        assert PASSWORD not in repr(db.stats())
        with pytest.raises(dal.DatabaseError) as raised:
            Users(db).find(name="A")
        assert PASSWORD not in str(raised.value)
        assert db.stats()["cache"]["currsize"] == 0
    finally:
        db.close()
    assert bus_stats(db)["state"] == "stopped"


def test_caching_resumes_once_the_listener_is_in_place(make_bus_db: MakeDb) -> None:
    a = make_bus_db()
    assert a._bus is not None
    assert a._bus.wait_listening(0)  # make_bus_db waited for it
    users = Users(a)
    seed(users)
    users.get(1)

    assert hit(users, 1).name == "user1"


def test_a_listener_error_that_quotes_the_password_is_masked(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def connector(engine: object) -> Callable[[], object]:
        def connect() -> object:
            raise psycopg2.OperationalError(f'could not connect with password "{PASSWORD}"')

        return connect

    monkeypatch.setattr(dal.bus, "connector", connector)
    db = dal.Database(_url(postgres_url, 5432), invalidation="postgres")
    try:
        wait_until(lambda: bus_stats(db)["errors"] >= 1)
        assert "***" in bus_stats(db)["last_error"]
        assert PASSWORD not in repr(db.stats())
    finally:
        db.close()
