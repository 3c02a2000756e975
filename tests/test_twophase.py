"""Promise 1 with two-phase commit on PostgreSQL (``Connection.begin_twophase``).

psycopg2's dialect commits with the driver's ``tpc_*`` calls, past ``do_commit`` and
the cursor events. The shared server runs with max_prepared_transactions=0, so these
tests start a throwaway cluster that allows prepared transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

import dal
from tests import pgserver
from tests.conftest import _open_database
from tests.models import User, Users
from tests.test_bus import bus_stats
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def twophase_url() -> Iterator[str]:
    """A throwaway cluster's database, with prepared transactions allowed."""
    binaries = pgserver.find_binaries()
    cluster = None if binaries is None else pgserver.ThrowawayCluster(*binaries)
    try:
        if cluster is None:
            raise pgserver.PostgresNotFound("initdb/pg_ctl not found")
        cluster.options = "-c max_prepared_transactions=10"
        cluster.start()
    except (pgserver.PostgresNotFound, OSError) as exc:
        message = f"no PostgreSQL cluster with prepared transactions: {exc}"
        if pgserver.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def tpc_db(twophase_url: str) -> Iterator[dal.Database]:
    yield from _open_database(twophase_url)


def _seed(db: dal.Database) -> Users:
    users = Users(db)
    users.add(id=1, email="u1@example.com", name="old")
    assert users.get(1).name == "old"
    return users


def _rename(conn: Any, name: str) -> None:
    conn.execute(update(User).where(User.id == 1).values(name=name))


@pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "one-phase"])
def test_two_phase_commit_invalidates_when_it_commits(tpc_db: dal.Database, prepare: bool) -> None:
    users = _seed(tpc_db)
    with tpc_db.engine.connect() as conn:
        tx = conn.begin_twophase()
        _rename(conn, "new")
        if prepare:
            tx.prepare()
            assert users.get(1).name == "old"  # prepared, not committed
        tx.commit()
        # Before the connection goes back to the pool.
        assert users.get(1).name == "new"


def test_two_phase_rollback_keeps_the_cache(tpc_db: dal.Database) -> None:
    users = _seed(tpc_db)
    invalidations = tpc_db.stats()["cache"]["invalidations"]
    with tpc_db.engine.connect() as conn:
        tx = conn.begin_twophase()
        _rename(conn, "new")
        tx.prepare()
        tx.rollback()
    assert users.get(1).name == "old"
    assert tpc_db.stats()["cache"]["invalidations"] == invalidations


def test_committing_another_connections_prepared_transaction_invalidates_everything(
    tpc_db: dal.Database, twophase_url: str
) -> None:
    users = _seed(tpc_db)
    other = pgserver.connect(twophase_url)
    try:
        other.autocommit = False
        xid = other.xid(0, "dal-test", "other")
        other.tpc_begin(xid)
        with other.cursor() as cur:
            cur.execute("UPDATE users SET name = 'theirs' WHERE id = 1")
        other.tpc_prepare()
    finally:
        other.close()
    with tpc_db.engine.connect() as conn:
        (recovered,) = conn.recover_twophase()
        conn.commit_prepared(recovered, recover=True)
        assert users.get(1).name == "theirs"


def test_two_phase_commit_is_refused_with_the_bus(tpc_db: dal.Database, twophase_url: str) -> None:
    # PostgreSQL cannot PREPARE a transaction that sent NOTIFY; announcing after
    # COMMIT PREPARED could lose the message. dal refuses before anything is written.
    bus_db = dal.Database(twophase_url, invalidation="postgres")
    try:
        wait_until(lambda: bus_stats(bus_db)["state"] == "listening")
        users = _seed(bus_db)
        with bus_db.engine.connect() as conn, pytest.raises(dal.ConfigError, match="two-phase"):
            conn.begin_twophase()
        assert users.get(1).name == "old"
        assert bus_db.stats()["pool"]["checked_out"] == 0
    finally:
        bus_db.close()
