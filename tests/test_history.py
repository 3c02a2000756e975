"""Promise 1 as a history check: threads read and write a few rows at random through
every write path; no read may return a version older than the newest write to that
row that had committed before the read began."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

import dal
from tests.models import User, Users

ROWS = 3
READERS = 3
OPERATIONS = 300


def _writers(db: dal.Database, users: Users) -> list[Callable[[int], int]]:
    """Ways to add one to a row's version; each returns the version it committed."""

    def repository(pk: int) -> int:
        return int(users.update(pk, version=User.version + 1).version)

    def core(pk: int) -> int:
        statement = update(User).where(User.id == pk).values(version=User.version + 1)
        with db.engine.begin() as conn:
            if conn.dialect.update_returning:
                return int(conn.execute(statement.returning(User.version)).scalar_one())
            # MySQL/MariaDB: no UPDATE ... RETURNING; the row lock holds until COMMIT.
            conn.execute(statement)
            return int(conn.scalar(select(User.version).where(User.id == pk)))

    def orm(pk: int) -> int:
        with db.session() as session:
            user = session.get(User, pk)
            assert user is not None
            user.version = User.version + 1  # type: ignore[assignment]
            session.flush()
            return int(session.scalar(select(User.version).where(User.id == pk)))

    return [repository, core, orm]


def test_no_read_is_older_than_a_write_committed_before_it_began(db) -> None:
    users = Users(db)
    pks = [users.add(email=f"u{i}@example.com", name="n").id for i in range(ROWS)]

    @dal.cached_query(db, depends_on=[User])
    def version_of(session: Any, pk: int) -> int:
        return int(session.scalar(select(User.version).where(User.id == pk)))

    readers: list[Callable[[int], int]] = [
        lambda pk: int(users.get(pk).version),
        lambda pk: int(users.find(id=pk)[0].version),
        version_of,
    ]
    writes: list[tuple[int, int, int]] = []  # (pk, version, committed at)
    reads: list[tuple[int, int, int]] = []  # (pk, version, began at)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(seed: int, ops: list[Callable[[int], int]], log: list[Any], write: bool) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(OPERATIONS):
                pk = rng.choice(pks)
                began = time.perf_counter_ns()
                version = rng.choice(ops)(pk)
                ended = time.perf_counter_ns()
                with lock:
                    log.append((pk, version, ended if write else began))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(i, [w], writes, True))
        for i, w in enumerate(_writers(db, users))
    ] + [
        threading.Thread(target=work, args=(100 + i, readers, reads, False)) for i in range(READERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert len(writes) == 3 * OPERATIONS and len(reads) == READERS * OPERATIONS
    stale = []
    for pk, version, began in reads:
        committed = [v for p, v, at in writes if p == pk and at < began]
        if committed and version < max(committed):
            stale.append((pk, version, max(committed)))
    assert stale == []
    # The cache did serve reads (a run with no hits would prove nothing).
    assert db.stats()["cache"]["hits"] > 0
