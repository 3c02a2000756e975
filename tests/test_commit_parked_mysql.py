"""Promise 1 at the real COMMIT, on MariaDB: invalidation follows the server's answer.

MariaDB has no deferred constraint trigger to wait in (the PostgreSQL proof's way),
and with ``log_bin=OFF`` there is no binary-log group commit to hold either. What
does block inside COMMIT is the backup lock: ``BACKUP STAGE BLOCK_COMMIT`` lets
statements run but makes every COMMIT of a transaction that wrote wait ("Waiting for
backup lock") until ``BACKUP STAGE END``. It blocks every commit on the server, so
the test runs on a throwaway server of its own, never on a shared one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, event, update
from sqlalchemy.pool import NullPool

import dal
from tests import mysqlserver
from tests.models import Base, User, Users
from tests.waiting import wait_until

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

DATABASE = "dal_parked"


@pytest.fixture(scope="module")
def private_server() -> Iterator[str]:
    """The URL of a database on a throwaway MariaDB server started for this module."""
    binaries = mysqlserver.find_binaries()
    if binaries is None:
        message = "mariadb-install-db/mariadbd not found: no private server to park COMMIT on"
        if mysqlserver.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = mysqlserver.ThrowawayServer(*binaries)
    server.start()
    try:
        admin = mysqlserver.connect(server.url)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            admin.close()
        yield f"{server.url}{DATABASE}"
    finally:
        server.stop()


@pytest.fixture
def private_db(private_server: str) -> Iterator[dal.Database]:
    engine = create_engine(private_server, poolclass=NullPool)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    db = dal.Database(private_server)
    try:
        yield db
        assert db.stats()["pool"]["checked_out"] == 0
    finally:
        db.close()


class CommitBlock:
    """``BACKUP STAGE BLOCK_COMMIT`` held on a connection of the test's own."""

    def __init__(self, url: str) -> None:
        self._conn = mysqlserver.connect(url)
        with self._conn.cursor() as cur:
            cur.execute("BACKUP STAGE START")
            cur.execute("BACKUP STAGE BLOCK_COMMIT")
        self.held = True

    def parked(self) -> bool:
        """Whether a COMMIT of this database waits inside the server for the lock."""
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE db = DATABASE() AND info = 'COMMIT'"
                " AND state = 'Waiting for backup lock'"
            )
            row = cur.fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                with self._conn.cursor() as cur:
                    cur.execute("BACKUP STAGE END")
            finally:
                self._conn.close()


def _repository_update(db: dal.Database, pk: int, name: str) -> None:
    Users(db).update(pk, name=name)


def _orm_update(db: dal.Database, pk: int, name: str) -> None:
    with db.session() as session:
        user = session.get(User, pk)
        assert user is not None
        user.name = name


def _core_update(db: dal.Database, pk: int, name: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.id == pk).values(name=name))


Write = Callable[[dal.Database, int, str], None]


@pytest.mark.parametrize(
    "write", [_repository_update, _orm_update, _core_update], ids=["repository", "orm", "core"]
)
def test_a_row_cached_while_commit_is_in_the_server_is_dropped_when_it_returns(
    private_db: dal.Database, private_server: str, write: Write
) -> None:
    users = Users(private_db)
    pk = users.add(email="a@example.com", name="old").id
    committing = threading.Event()
    event.listen(private_db.engine, "commit", lambda conn: committing.set())
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write(private_db, pk, "new")
        except BaseException as exc:
            errors.append(exc)

    block = CommitBlock(private_server)
    try:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        # Past SQLAlchemy's commit event, and waiting inside the server's COMMIT.
        wait_until(block.parked)
        assert committing.is_set() and thread.is_alive()

        # COMMIT has not returned: this thread reads the old row and caches it.
        assert users.get(pk).name == "old"
        assert users.get(pk).name == "old"
        assert private_db.stats()["cache"]["loads"] == 1  # the second read was a hit

        block.release()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        block.release()
    assert errors == []
    # The writer has returned, so its COMMIT has: no later read may see the old row.
    assert users.get(pk).name == "new"


def test_reads_and_uncommitted_writes_pass_the_commit_block(
    private_db: dal.Database, private_server: str
) -> None:
    # What the proof relies on: only COMMIT waits, not the statements before it.
    users = Users(private_db)
    pk = users.add(email="a@example.com", name="old").id
    block = CommitBlock(private_server)
    try:
        with private_db.engine.connect() as conn:
            conn.execute(update(User).where(User.id == pk).values(name="uncommitted"))
            assert users.get(pk).name == "old"
            conn.rollback()
        assert not block.parked()
    finally:
        block.release()
    assert users.get(pk).name == "old"
