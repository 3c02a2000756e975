"""Promise 1 for writes whose effect reaches past the tables they name: TRUNCATE ...
CASCADE, REFRESH MATERIALIZED VIEW, EXECUTE of a prepared statement, writes through a
view, rows changed by a trigger or a foreign key the models do not declare.

Each test caches a row or a query of the table the database changes, runs the
statement (through ``db.engine`` as text and as driver SQL, and inside ``db.session()``),
and asserts that the next read is fresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text, update

import dal
from tests.models import Tags, User, Users
from tests.sqllog import StatementLog

Run = Callable[[dal.Database, str], None]


def _engine(db: dal.Database, sql: str) -> None:
    with db.engine.begin() as conn:
        for statement in sql.split(";"):
            conn.execute(text(statement))


def _driver(db: dal.Database, sql: str) -> None:
    with db.engine.begin() as conn:
        for statement in sql.split(";"):
            conn.exec_driver_sql(statement)


def _session(db: dal.Database, sql: str) -> None:
    with db.session() as s:
        for statement in sql.split(";"):
            s.execute(text(statement))


@pytest.fixture(params=[_engine, _driver, _session], ids=["engine", "driver-sql", "session"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs SQL statements (separated by ``;``) one way dal must see."""
    runner: Run = request.param
    return runner


@pytest.fixture
def schema(db: dal.Database) -> Iterator[Callable[[str, str], None]]:
    """``schema(create, drop)``: runs DDL now, and its undoing after the test."""
    undo: list[str] = []

    def make(create: str, drop: str) -> None:
        _whole(db, create)
        undo.append(drop)

    yield make
    for drop in reversed(undo):
        _whole(db, drop)


def _whole(db: dal.Database, sql: str) -> None:
    """One statement that may contain ``;`` (a trigger's body)."""
    with db.engine.begin() as conn:
        conn.execute(text(sql))


def _count(db: dal.Database, table: str) -> Callable[[], int]:
    """A cached query of ``table``'s row count that depends on it by name only."""

    @dal.cached_query(db, depends_on=[table])
    def count(session: Any) -> int:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar())

    return count


def _seed(db: dal.Database) -> Users:
    repo = Users(db)
    for i in (1, 2):
        repo.add(id=i, email=f"u{i}@example.com", name=f"user{i}")
    return repo


@pytest.fixture
def users(db: dal.Database) -> Users:
    return _seed(db)


def _audit(db: dal.Database, schema: Callable[[str, str], None]) -> None:
    """A user trigger: every update of a user row adds a row to ``audit``."""
    if db.settings.backend == "mysql":
        schema(
            "CREATE TABLE audit (id INTEGER AUTO_INCREMENT PRIMARY KEY, user_id INTEGER)",
            "DROP TABLE audit",
        )
        schema(
            "CREATE TRIGGER users_audit AFTER UPDATE ON users FOR EACH ROW "
            "INSERT INTO audit (user_id) VALUES (NEW.id)",
            "DROP TRIGGER users_audit",
        )
        return
    schema("CREATE TABLE audit (id INTEGER PRIMARY KEY, user_id INTEGER)", "DROP TABLE audit")
    if db.settings.backend == "sqlite":
        schema(
            "CREATE TRIGGER users_audit AFTER UPDATE ON users BEGIN "
            "INSERT INTO audit (user_id) VALUES (NEW.id); END",
            "DROP TRIGGER users_audit",
        )
        return
    schema("CREATE SEQUENCE audit_ids", "DROP SEQUENCE IF EXISTS audit_ids CASCADE")
    _engine(db, "ALTER TABLE audit ALTER id SET DEFAULT nextval('audit_ids')")
    schema(
        "CREATE FUNCTION users_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$f$ BEGIN INSERT INTO audit (user_id) VALUES (NEW.id); RETURN NULL; END $f$",
        "DROP FUNCTION users_audit() CASCADE",
    )
    schema(
        "CREATE TRIGGER users_audit AFTER UPDATE ON users FOR EACH ROW "
        "EXECUTE FUNCTION users_audit()",
        "DROP TRIGGER IF EXISTS users_audit ON users",
    )


# --- PostgreSQL statements ------------------------------------------------------------------


def test_truncate_cascade_empties_tables_whatever_their_foreign_key_actions(
    pg_db: dal.Database, run: Run
) -> None:
    users = _seed(pg_db)
    db = pg_db
    # No ON DELETE action: only TRUNCATE ... CASCADE empties it along with users.
    _engine(db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users)")
    try:
        _engine(db, "INSERT INTO notes VALUES (1, 1)")
        notes = _count(db, "notes")
        assert notes() == 1
        assert users.get(1) is not None

        run(db, "TRUNCATE users CASCADE")

        assert notes() == 0
        assert users.get(1) is None
    finally:
        _engine(db, "DROP TABLE notes")


def test_refresh_materialized_view(pg_db: dal.Database, run: Run) -> None:
    users = _seed(pg_db)
    db = pg_db
    _engine(db, "CREATE MATERIALIZED VIEW user_total AS SELECT count(*) AS n FROM users")
    try:
        total = _count(db, "user_total")

        @dal.cached_query(db, depends_on=["user_total"])
        def n(session: Any) -> int:
            return int(session.execute(text("SELECT n FROM user_total")).scalar())

        assert n() == 2
        users.add(id=3, email="u3@example.com", name="user3")
        assert total() == 1

        run(db, "REFRESH MATERIALIZED VIEW user_total")

        assert n() == 3
    finally:
        _engine(db, "DROP MATERIALIZED VIEW user_total")


def test_execute_of_a_prepared_statement(pg_db: dal.Database, run: Run) -> None:
    users = _seed(pg_db)
    name = f"rename_{uuid.uuid4().hex[:8]}"
    assert users.get(1).name == "user1"

    run(
        pg_db,
        f"PREPARE {name} (int, text) AS UPDATE users SET name = $2 WHERE id = $1;"
        f"EXECUTE {name}(1, 'prepared');"
        f"DEALLOCATE {name}",
    )

    assert users.get(1).name == "prepared"


def test_execute_of_a_statement_dal_did_not_see_prepared_drops_everything(
    pg_db: dal.Database,
) -> None:
    users = _seed(pg_db)
    name = f"unseen_{uuid.uuid4().hex[:8]}"
    assert users.get(1).name == "user1"

    with pg_db.engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # below dal: PREPARE unseen
        cursor.execute(f"PREPARE {name} AS UPDATE users SET name = 'unseen' WHERE id = 1")
        conn.execute(text(f"EXECUTE {name}"))
        cursor.execute(f"DEALLOCATE {name}")

    assert users.get(1).name == "unseen"


def test_a_write_through_a_view_refreshes_its_base_table_only(
    pg_db: dal.Database, run: Run
) -> None:
    users = _seed(pg_db)
    """PostgreSQL says which tables a view reads: they are written, and nothing else."""
    db = pg_db
    statements = StatementLog(db.engine).attach()
    _engine(db, "CREATE VIEW people AS SELECT id, name FROM users")
    try:
        tags = Tags(db)
        assert tags.get(("k", "n")) is None
        assert users.get(1).name == "user1"

        run(db, "UPDATE people SET name = 'via view' WHERE id = 1")

        assert users.get(1).name == "via view"
        statements.clear()
        assert tags.get(("k", "n")) is None
        assert statements.selects() == [], "a write to users dropped an unrelated table"
    finally:
        statements.detach()
        _engine(db, "DROP VIEW people")


def test_dal_own_bus_triggers_are_not_user_triggers(pg_db: dal.Database) -> None:
    db = pg_db
    db.install_triggers(User)  # before dal first asks the catalog about users
    users = _seed(pg_db)
    statements = StatementLog(db.engine).attach()
    try:
        tags = Tags(db)
        assert tags.get(("k", "n")) is None

        users.update(1, name="renamed")

        statements.clear()
        assert tags.get(("k", "n")) is None
        assert statements.selects() == [], "dal's own triggers were taken for user triggers"
        assert users.get(1).name == "renamed"
    finally:
        statements.detach()
        db.uninstall_triggers(User)


# --- both backends ----------------------------------------------------------------------------


def test_a_query_over_a_view_is_refreshed_by_a_write_to_its_base_table(
    db: dal.Database, users: Users, schema: Callable[[str, str], None]
) -> None:
    schema("CREATE VIEW people AS SELECT id, name FROM users", "DROP VIEW people")

    @dal.cached_query(db, depends_on=["people"])
    def names(session: Any) -> list[str]:
        return list(session.execute(text("SELECT name FROM people ORDER BY id")).scalars())

    assert names() == ["user1", "user2"]

    users.update(1, name="renamed")

    assert names() == ["renamed", "user2"]


@pytest.mark.parametrize("how", ["repository", "core", "session"])
def test_rows_written_by_a_trigger_that_a_dal_write_fired(
    db: dal.Database, users: Users, schema: Callable[[str, str], None], how: str
) -> None:
    _audit(db, schema)
    audited = _count(db, "audit")
    assert audited() == 0

    if how == "repository":
        users.update(1, name="renamed")
    elif how == "core":
        with db.engine.begin() as conn:
            conn.execute(update(User).where(User.id == 1).values(name="renamed"))
    else:
        with db.session() as s:
            s.get(User, 1).name = "renamed"  # type: ignore[union-attr]

    assert audited() == 1


def test_a_trigger_created_after_dal_first_wrote_the_table(
    db: dal.Database, users: Users, schema: Callable[[str, str], None]
) -> None:
    """dal asks the catalog again once it has seen DDL."""
    users.update(2, name="before the trigger")  # the catalog is asked about users now
    _audit(db, schema)
    audited = _count(db, "audit")
    assert audited() == 0

    users.update(1, name="renamed")

    assert audited() == 1


def test_a_foreign_key_action_the_models_do_not_declare(
    db: dal.Database, users: Users, schema: Callable[[str, str], None], run: Run
) -> None:
    schema(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY,"
        " user_id INTEGER REFERENCES users (id) ON DELETE CASCADE)",
        "DROP TABLE notes",
    )
    _engine(db, "INSERT INTO notes VALUES (1, 1)")
    notes = _count(db, "notes")
    assert notes() == 1

    run(db, "DELETE FROM users WHERE id = 1")

    assert notes() == 0
