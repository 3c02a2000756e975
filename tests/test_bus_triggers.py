"""Triggers: writes by clients that know nothing of dal invalidate every dal cache.

The outside writer is a plain psycopg2 connection. The command line is run as a
real subprocess (``python -m dal``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Date, MetaData, String, Table, create_engine, update
from sqlalchemy.pool import NullPool

import dal
from dal.bus.triggers import FUNCTION, TRIGGERS
from tests.models import Order, Tag, User
from tests.test_bus import (
    MakeDb,
    Messages,
    Tags,
    Users,
    admin,
    bus_stats,
    hit,
    make_bus_db,
    seed,
)
from tests.waiting import wait_until

__all__ = ["make_bus_db"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def outside(postgres_url: str) -> Iterator[Any]:
    """A cursor of a client that knows nothing of dal, in autocommit."""
    conn = admin(postgres_url)
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def triggers_on(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname LIKE 'dal%%'"
        " ORDER BY tgname",
        (table,),
    )
    return [row[0] for row in cursor.fetchall()]


def function_exists(cursor: Any) -> bool:
    cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (FUNCTION,))
    row = cursor.fetchone()
    return bool(row and row[0])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "dal", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


# --- writes from outside -------------------------------------------------------------------


def test_an_outside_update_invalidates_the_row(make_bus_db: MakeDb, outside: Any) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    a.install_triggers(User)
    messages = Messages(a)
    users.get(1)
    users.get(2)

    outside.execute("UPDATE users SET name = 'psql' WHERE id = 1")

    message = messages.wait_for("users")
    assert message.sender == "trigger" and message.changes == {"users": {(1,)}}
    assert users.get(1).name == "psql"
    assert hit(users, 2).name == "user2"  # only the written key was dropped


def test_outside_inserts_deletes_and_truncates_invalidate(
    make_bus_db: MakeDb, outside: Any
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    a.install_triggers(User, Order)
    assert users.get(9) is None

    outside.execute(
        "INSERT INTO users (id, email, name, balance, version) VALUES (9, 'x', 'nine', 0, 0)"
    )
    wait_until(lambda: users.get(9) is not None)

    users.get(1)
    outside.execute("DELETE FROM users WHERE id = 1")
    wait_until(lambda: users.get(1) is None)

    users.get(2)
    outside.execute("TRUNCATE users CASCADE")
    wait_until(lambda: users.get(2) is None)


def test_an_outside_key_change_drops_the_old_and_the_new_key(
    make_bus_db: MakeDb, outside: Any
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users, 2)
    a.install_triggers(User)
    users.get(2)
    assert users.get(5) is None

    outside.execute("UPDATE users SET id = 5 WHERE id = 2")

    wait_until(lambda: users.get(2) is None and users.get(5) is not None)


def test_composite_keys_from_a_trigger(make_bus_db: MakeDb, outside: Any) -> None:
    a = make_bus_db()
    tags = Tags(a)
    tags.add(kind="color", name="red", label="Red")
    tags.add(kind="color", name="blue", label="Blue")
    a.install_triggers(Tag)
    messages = Messages(a)
    tags.get(("color", "red"))

    outside.execute("UPDATE tags SET label = 'Crimson' WHERE name = 'red'")

    assert messages.wait_for("tags").changes == {"tags": {("color", "red")}}
    assert tags.get(("color", "red")).label == "Crimson"


def test_a_statement_over_thousands_of_rows_names_the_whole_table(
    make_bus_db: MakeDb, outside: Any
) -> None:
    a = make_bus_db()
    a.install_triggers(User)
    users = Users(a)
    outside.execute(
        "INSERT INTO users (id, email, name, balance, version)"
        " SELECT i, 'u' || i, 'user' || i, 0, 0 FROM generate_series(1, 5000) AS i"
    )
    messages = Messages(a)  # after the insert's message, which names 5000 keys too
    wait_until(lambda: len(users.get_many(range(1, 101))) == 100)
    messages.clear()
    users.get_many(range(1, 101))

    outside.execute("UPDATE users SET balance = 1")

    assert messages.wait_for("users").changes == {"users": None}
    assert all(u.balance == 1 for u in users.get_many(range(1, 101)).values())


def test_a_statement_that_changes_no_row_sends_nothing(make_bus_db: MakeDb, outside: Any) -> None:
    a = make_bus_db()
    Users(a).add(id=1, email="e", name="n")
    a.install_triggers(User, Order)
    messages = Messages(a)

    outside.execute("UPDATE users SET name = 'x' WHERE id = -1")
    outside.execute("INSERT INTO orders (id, user_id, amount) VALUES (1, 1, 5)")

    messages.wait_for("orders")
    assert [m.changes for m in messages.all] == [{"orders": {(1,)}}]


def test_keys_json_cannot_carry_exactly_name_the_whole_table(
    make_bus_db: MakeDb, outside: Any, postgres_url: str
) -> None:
    events = Table(
        "dal_test_events",
        MetaData(),
        Column("day", Date, primary_key=True),
        Column("note", String(50)),
    )
    engine = create_engine(postgres_url, poolclass=NullPool)
    events.create(engine)
    try:
        a = make_bus_db()
        a.install_triggers(events)
        messages = Messages(a)
        outside.execute("INSERT INTO dal_test_events VALUES ('2024-01-02', 'x')")
        assert messages.wait_for("dal_test_events").changes == {"dal_test_events": None}
    finally:
        events.drop(engine)
        engine.dispose()


# --- dal's own writes to tables with triggers --------------------------------------------------


def test_dal_sends_no_second_message_for_a_table_with_triggers(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a)  # before the triggers, which would announce these writes to A as well
    b.install_triggers(User)
    assert bus_stats(b)["tables_with_triggers"] == ["users"]
    messages = Messages(a)
    sent = bus_stats(b)["messages_sent"]

    Users(b).update(1, name="by b")
    Users(b).update(2, name="by b")
    with b.engine.begin() as conn:  # no triggers on orders: dal announces it
        conn.execute(update(Order).values(amount=0))

    messages.wait_for("orders")
    assert [(m.sender, m.changes) for m in messages.all] == [
        ("trigger", {"users": {(1,)}}),
        ("trigger", {"users": {(2,)}}),
        (bus_stats(b)["sender"], {"orders": None}),
    ]
    assert bus_stats(b)["messages_sent"] == sent + 1


def test_triggers_dropped_behind_dals_back_do_not_lose_messages(
    make_bus_db: MakeDb, outside: Any
) -> None:
    a, b = make_bus_db(), make_bus_db()
    users_a = Users(a)
    seed(users_a)
    b.install_triggers(User)
    users_a.get(1)
    # Dropped without telling anyone: B still believes users has triggers.
    for trigger in TRIGGERS:
        outside.execute(f"DROP TRIGGER {trigger} ON users")
    assert bus_stats(b)["tables_with_triggers"] == ["users"]

    Users(b).update(1, name="still announced")

    wait_until(lambda: users_a.get(1).name == "still announced")


def test_install_is_idempotent_and_uninstall_removes_everything(
    make_bus_db: MakeDb, outside: Any
) -> None:
    a = make_bus_db()
    a.install_triggers(User, Tag)
    a.install_triggers(User)
    assert triggers_on(outside, "users") == sorted(TRIGGERS)
    assert triggers_on(outside, "tags") == sorted(TRIGGERS)

    a.uninstall_triggers(User)
    assert triggers_on(outside, "users") == []
    assert function_exists(outside)  # tags still use it
    # The listener may still be refreshing from an earlier install's message.
    wait_until(lambda: bus_stats(a)["tables_with_triggers"] == ["tags"])

    a.uninstall_triggers(Tag, User)
    assert triggers_on(outside, "tags") == []
    assert not function_exists(outside)
    wait_until(lambda: bus_stats(a)["tables_with_triggers"] == [])


def test_every_listener_learns_of_new_triggers(make_bus_db: MakeDb) -> None:
    a, b = make_bus_db(), make_bus_db()
    a.install_triggers(User)
    wait_until(lambda: bus_stats(b)["tables_with_triggers"] == ["users"])
    a.uninstall_triggers(User)
    wait_until(lambda: bus_stats(b)["tables_with_triggers"] == [])


def test_triggers_need_postgresql(sqlite_db: dal.Database) -> None:
    with pytest.raises(dal.ConfigError, match="PostgreSQL"):
        sqlite_db.install_triggers(User)


def test_install_names_a_missing_table(pg_db: dal.Database) -> None:
    with pytest.raises(dal.ConfigError, match="no_such_table"):
        pg_db.install_triggers("no_such_table")
    with pytest.raises(dal.ConfigError, match="not a mapped model"):
        pg_db.install_triggers(42)


def test_a_database_without_the_bus_can_install_triggers(
    pg_db: dal.Database, make_bus_db: MakeDb, outside: Any
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)
    pg_db.install_triggers(User)
    users.get(1)

    outside.execute("UPDATE users SET name = 'psql' WHERE id = 1")

    wait_until(lambda: users.get(1).name == "psql")


# --- the command line --------------------------------------------------------------------------


def test_the_command_line_installs_and_uninstalls(
    make_bus_db: MakeDb, outside: Any, postgres_url: str
) -> None:
    a = make_bus_db()
    users = Users(a)
    seed(users)

    done = run_cli("install-triggers", "--db", postgres_url, "users", "tags")

    assert done.returncode == 0, done.stderr
    assert "users" in done.stdout
    assert triggers_on(outside, "users") == sorted(TRIGGERS)
    wait_until(lambda: bus_stats(a)["tables_with_triggers"] == ["tags", "users"])
    users.get(1)
    outside.execute("UPDATE users SET name = 'psql' WHERE id = 1")
    wait_until(lambda: users.get(1).name == "psql")

    done = run_cli("uninstall-triggers", "--db", postgres_url, "users", "tags")

    assert done.returncode == 0, done.stderr
    assert triggers_on(outside, "users") == []
    assert not function_exists(outside)
    wait_until(lambda: bus_stats(a)["tables_with_triggers"] == [])


def test_the_command_line_takes_a_libpq_url_and_reports_errors(
    pg_db: dal.Database, postgres_url: str, outside: Any
) -> None:
    libpq = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    done = run_cli("install-triggers", "--db", libpq, "orders")
    assert done.returncode == 0, done.stderr
    assert triggers_on(outside, "orders") == sorted(TRIGGERS)

    missing = run_cli("install-triggers", "--db", postgres_url, "no_such_table")
    assert missing.returncode == 1
    assert "no_such_table" in missing.stderr
    assert triggers_on(outside, "orders") == sorted(TRIGGERS)  # nothing half-done

    usage = run_cli("install-triggers", "--db", postgres_url)
    assert usage.returncode == 2

    done = run_cli("uninstall-triggers", "--db", postgres_url, "orders")
    assert done.returncode == 0, done.stderr
    assert triggers_on(outside, "orders") == []
