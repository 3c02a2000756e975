"""The PostgreSQL bus between Databases: a commit in one invalidates the others.

Two ``Database`` objects in one process are two caches, so most of these tests
need no second process (``test_bus_processes`` has those). Waits poll a condition
under a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

import dal
from dal.bus import Bus
from dal.bus.messages import CHANNEL, Message
from dal.store.cache import Store
from tests import pgserver
from tests.models import Order, Orders, Tags, User, Users
from tests.waiting import wait_until

__all__ = ["Messages", "Orders", "Tags", "Users", "admin", "bus_stats", "make_bus_db"]


MakeDb = Callable[..., dal.Database]

users_table = User.__table__


@pytest.fixture
def make_bus_db(pg_db: dal.Database, postgres_url: str) -> Iterator[MakeDb]:
    """Makes ``Database(invalidation="postgres")`` objects on the test tables, listening.

    At the end: no pooled connection left out, and each listener stopped.
    """
    made: list[dal.Database] = []

    def make(**kwargs: Any) -> dal.Database:
        db = dal.Database(postgres_url, invalidation="postgres", **kwargs)
        made.append(db)
        wait_until(lambda: bus_stats(db)["state"] == "listening")
        return db

    yield make
    for db in made:
        checked_out = db.stats()["pool"]["checked_out"]
        db.close()
        assert checked_out == 0, f"{checked_out} pooled connection(s) still checked out"
        assert bus_stats(db)["state"] == "stopped"


def bus_stats(db: dal.Database) -> dict[str, Any]:
    stats: dict[str, Any] = db.stats()["bus"]
    return stats


def admin(postgres_url: str) -> Any:
    """A plain psycopg2 connection in autocommit: a client that knows nothing of dal."""
    return pgserver.connect(postgres_url)


class Messages:
    """Records the messages a Database's listener applies (its ``observer``)."""

    def __init__(self, db: dal.Database) -> None:
        self._lock = threading.Lock()
        self._seen: list[Message] = []
        assert db._bus is not None
        db._bus.observer = self._record

    def _record(self, message: Message) -> None:
        with self._lock:
            self._seen.append(message)

    @property
    def all(self) -> list[Message]:
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def wait_for(self, table: str) -> Message:
        """The first message naming ``table``, waiting for it if need be."""
        found: list[Message] = []

        def arrived() -> bool:
            found[:] = [m for m in self.all if table in m.changes]
            return bool(found)

        wait_until(arrived)
        return found[0]


def seed(users: Users, n: int = 3) -> None:
    for i in range(1, n + 1):
        users.add(id=i, email=f"u{i}@example.com", name=f"user{i}", balance=10 * i)


def hit(users: Users, pk: Any) -> Any:
    """``users.get(pk)``, asserting it was answered by the cache."""
    before = users.cache_info().hits
    value = users.get(pk)
    assert users.cache_info().hits == before + 1, f"get({pk!r}) was not a cache hit"
    return value


# --- two Databases, one process -----------------------------------------------------------


def test_a_repository_write_in_one_database_invalidates_the_other(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, users_b = Users(a), Users(b)
    seed(users_a)
    assert users_a.get(1).name == "user1"
    assert hit(users_a, 1).name == "user1"

    users_b.update(1, name="renamed")

    wait_until(lambda: users_a.get(1).name == "renamed")
    wait_until(lambda: bus_stats(a)["messages_applied"] >= 1)
    assert bus_stats(b)["messages_sent"] >= 1


def test_each_database_skips_only_its_own_messages(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, users_b = Users(a), Users(b)
    seed(users_a)
    users_b.get(2)

    users_a.update(2, name="from a")
    wait_until(lambda: users_b.get(2).name == "from a")

    users_a.get(2)
    users_b.update(2, name="from b")
    wait_until(lambda: users_a.get(2).name == "from b")
    # Each hears its own messages too (after the other's, perhaps) and skips them.
    wait_until(lambda: bus_stats(a)["messages_skipped_own"] >= 1)
    wait_until(lambda: bus_stats(b)["messages_skipped_own"] >= 1)


def test_session_and_core_writes_are_announced(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a)
    users_a.get(1)
    users_a.get(2)

    with b.session() as session:
        session.get(User, 1).name = "orm"  # type: ignore[union-attr]
    wait_until(lambda: users_a.get(1).name == "orm")

    with b.engine.begin() as conn:
        conn.execute(update(User).where(User.id == 2).values(name="core"))
    wait_until(lambda: users_a.get(2).name == "core")

    with b.engine.begin() as conn:
        conn.execute(text("UPDATE users SET name = 'text' WHERE id = 1"))
    wait_until(lambda: users_a.get(1).name == "text")


def test_cached_queries_and_finds_are_invalidated(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, users_b = Users(a), Users(b)
    seed(users_a)

    @dal.cached_query(a, depends_on=[User])
    def names(session: Session) -> list[str]:
        return list(session.scalars(select(User.name).order_by(User.id)))

    assert names() == ["user1", "user2", "user3"]
    assert [u.id for u in users_a.find(balance=10)] == [1]

    users_b.add(id=4, email="u4@example.com", name="user4", balance=10)

    wait_until(lambda: names() == ["user1", "user2", "user3", "user4"])
    wait_until(lambda: [u.id for u in users_a.find(balance=10)] == [1, 4])


def test_an_insert_replaces_a_cached_absence(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, users_b = Users(a), Users(b)
    assert users_a.get(7) is None
    assert hit(users_a, 7) is None

    users_b.add(id=7, email="u7@example.com", name="seven")

    wait_until(lambda: users_a.get(7) is not None)


def test_an_insert_with_unknown_keys_drops_cached_absences(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    assert users_a.get(8) is None

    with b.engine.begin() as conn:
        conn.execute(
            insert(User).from_select(
                ["id", "email", "name"], select(text("8"), text("'u8@x'"), text("'eight'"))
            )
        )

    wait_until(lambda: users_a.get(8) is not None)


def test_only_the_written_keys_are_dropped(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a, 20)
    messages = Messages(a)
    users_a.get_many(range(1, 21))
    assert users_a.cache_info().currsize == 20

    with b.engine.begin() as conn:
        for pk in range(1, 6):
            conn.execute(update(users_table).where(users_table.c.id == pk).values(balance=0))

    assert messages.wait_for("users").changes["users"] == {(i,) for i in range(1, 6)}
    assert users_a.cache_info().currsize == 15
    assert hit(users_a, 6).balance == 60


def test_one_message_per_transaction(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, orders_b = Users(a), Orders(b)
    seed(users_a)
    messages = Messages(a)
    sent = bus_stats(b)["messages_sent"]

    with b.session() as session:
        session.add(Order(id=1, user_id=1, amount=5))
        session.flush()
        session.get(User, 2).name = "two"  # type: ignore[union-attr]

    message = messages.wait_for("orders")
    assert message.changes == {"orders": {(1,)}, "users": {(2,)}}
    assert bus_stats(b)["messages_sent"] == sent + 1
    assert orders_b.get(1) is not None


def test_writes_that_commit_on_their_own_are_announced(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a)
    users_a.get(1)

    # The COMMIT in the text ends the transaction: the NOTIFY must not open another
    # one that nobody commits.
    with b.engine.connect() as conn:
        conn.exec_driver_sql("UPDATE users SET name = 'committed' WHERE id = 1; COMMIT")

    wait_until(lambda: users_a.get(1).name == "committed")


def test_a_notify_after_the_transaction_ended_is_not_left_in_a_new_one(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a = make_bus_db()
    messages = Messages(a)
    publisher = Bus(lambda: None, Store(10))  # never started: it only publishes
    conn = admin(postgres_url)
    conn.autocommit = False  # and no transaction open: psycopg2 would send BEGIN first
    try:
        publisher.publish(conn, {"users": {(1,)}})

        # Delivered with nothing committed: it did not wait in a transaction of its own.
        assert messages.wait_for("users").changes == {"users": {(1,)}}
        assert conn.status == psycopg2.extensions.STATUS_READY and not conn.autocommit
    finally:
        conn.close()
        publisher.stop()


def test_a_write_of_thousands_of_keys_invalidates_the_whole_table(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    messages = Messages(a)
    rows = [{"id": i, "email": f"u{i}@x", "name": f"user{i}"} for i in range(1, 5001)]
    with a.engine.begin() as conn:
        conn.execute(insert(User), rows)
    users_a.get_many(range(1, 101))
    assert users_a.cache_info().currsize == 100
    table_wide = bus_stats(b)["messages_sent_table_wide"]

    # An executemany: dal knows all 5000 keys, too many for one payload.
    statement = update(users_table).where(users_table.c.id == bindparam("uid")).values(balance=1)
    with b.engine.begin() as conn:
        conn.execute(statement, [{"uid": i} for i in range(1, 5001)])

    wait_until(lambda: any(m.changes.get("users", ()) is None for m in messages.all))
    assert bus_stats(b)["messages_sent_table_wide"] == table_wide + 1
    assert all(u.balance == 1 for u in users_a.get_many(range(1, 101)).values())


def test_a_rollback_announces_nothing(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a, users_b = Users(a), Users(b)
    seed(users_a)
    messages = Messages(a)
    users_a.get(1)

    with pytest.raises(RuntimeError), b.session() as session:
        session.get(User, 1).name = "never"  # type: ignore[union-attr]
        session.flush()
        raise RuntimeError("roll back")
    users_b.update(3, name="marker")  # commits after the rollback: delivered after it

    messages.wait_for("users")
    assert [m.changes for m in messages.all] == [{"users": {(3,)}}]
    assert hit(users_a, 1).name == "user1"


def test_text_that_names_no_known_table_clears_every_other_cache(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a)
    users_a.get(1)
    with b.engine.begin() as conn:
        conn.execute(text("CREATE VIEW user_names AS SELECT id, name FROM users"))
    users_a.get(1)

    # B knows no table this names: it may write anything, so every cache is dropped.
    with b.engine.begin() as conn:
        conn.execute(text("UPDATE user_names SET name = 'via view' WHERE id = 1"))

    wait_until(lambda: users_a.get(1).name == "via view")
    with b.engine.begin() as conn:
        conn.execute(text("DROP VIEW user_names"))


def test_a_schema_qualified_name_reaches_the_bare_table(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a = make_bus_db()
    users_a = Users(a)
    seed(users_a)
    users_a.get(1)
    users_a.get(2)

    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:
            payload = '{"v": 1, "s": "other", "c": {"public.users": [[1]]}}'
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
    finally:
        conn.close()

    wait_until(lambda: users_a.cache_info().currsize == 1)
    assert hit(users_a, 2).id == 2


def test_a_message_that_cannot_be_read_clears_the_cache(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a = make_bus_db()
    users_a = Users(a)
    seed(users_a)
    users_a.get(1)

    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_notify(%s, 'garbage')", (CHANNEL,))
    finally:
        conn.close()

    wait_until(lambda: bus_stats(a)["errors"] == 1)
    assert users_a.cache_info().currsize == 0
    assert "BadMessage" in bus_stats(a)["last_error"]


def test_stats_report_the_listener(make_bus_db: MakeDb, postgres_url: str) -> None:
    a = make_bus_db()
    stats = bus_stats(a)
    assert stats["state"] == "listening" and stats["channel"] == CHANNEL
    assert stats["reconnects"] == 0 and stats["errors"] == 0
    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                (stats["backend_pid"],),
            )
            assert cur.fetchone() == ("dal listener",)
    finally:
        conn.close()
    assert a.stats()["cache"]["paused"] == []


def test_lag_is_measured(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    Users(b).add(id=1, email="e", name="n")
    wait_until(lambda: bus_stats(a)["last_lag_ms"] is not None)
    assert 0 <= bus_stats(a)["last_lag_ms"] < 5_000


def test_close_stops_the_listener_and_its_connection(
    make_bus_db: MakeDb, postgres_url: str
) -> None:
    a = make_bus_db()
    pid = bus_stats(a)["backend_pid"]
    a.close()
    assert bus_stats(a)["state"] == "stopped"
    assert not any(t.name == "dal-bus-listener" for t in threading.enumerate())
    conn = admin(postgres_url)
    try:
        with conn.cursor() as cur:

            def gone() -> bool:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                row = cur.fetchone()
                return row is not None and row[0] == 0

            wait_until(gone)
    finally:
        conn.close()


def test_a_database_dropped_without_close_stops_its_listener(
    pg_db: dal.Database, postgres_url: str
) -> None:
    db = dal.Database(postgres_url, invalidation="postgres")
    bus = db._bus
    assert bus is not None and bus._thread is not None
    thread = bus._thread
    wait_until(lambda: bus.state == "listening")

    del db
    gc.collect()

    wait_until(lambda: not thread.is_alive())
    assert bus.state == "stopped"


def test_the_option_needs_postgresql(sqlite_url: str) -> None:
    with pytest.raises(dal.ConfigError, match="PostgreSQL"):
        dal.Database(sqlite_url, invalidation="postgres")


def test_a_database_without_the_option_has_no_bus(pg_db: dal.Database) -> None:
    assert "bus" not in pg_db.stats()
    assert pg_db._tracker.before_commit is None


def test_importing_dal_starts_nothing() -> None:
    code = (
        "import threading, dal, dal.bus, dal.bus.triggers, dal.__main__; "
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_psycopg2_notifications_arrive_in_commit_order(postgres_url: str) -> None:
    """What the rollback test relies on: later commits are delivered later."""
    listener, writer = admin(postgres_url), admin(postgres_url)
    try:
        with listener.cursor() as cur:
            cur.execute("LISTEN dal_test_order")
        with writer.cursor() as cur:
            for i in range(20):
                cur.execute("SELECT pg_notify('dal_test_order', %s)", (str(i),))
        received: list[str] = []

        def drained() -> bool:
            listener.poll()
            received.extend(n.payload for n in listener.notifies)
            listener.notifies.clear()
            return len(received) == 20

        wait_until(drained)
        assert received == [str(i) for i in range(20)]
    finally:
        listener.close()
        writer.close()


def test_tags_composite_keys_travel(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    tags_a, tags_b = Tags(a), Tags(b)
    tags_b.add(kind="color", name="red", label="Red")
    assert tags_a.get(("color", "red")).label == "Red"

    tags_b.update(("color", "red"), label="Crimson")

    wait_until(lambda: tags_a.get(("color", "red")).label == "Crimson")
