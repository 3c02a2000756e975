"""Promise 8 when the database cannot be reached at all: every public call raises
``dal.DatabaseError`` chained to the driver's error, and nothing is cached.

PostgreSQL and MySQL (each driver) URLs to a port nobody listens on, and SQLite files
that cannot be opened (a path in a missing directory, a directory).
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

import dal
from tests import pgserver
from tests.conftest import MYSQL_DRIVERS, require_mysql_driver
from tests.models import User, Users


def _cached_query(db: dal.Database) -> Any:
    @dal.cached_query(db, depends_on=[User])
    def names(session: Any) -> list[str]:
        return list(session.scalars(select(User.name)))

    return names()


def _session(db: dal.Database) -> Any:
    with db.session() as session:
        return session.execute(text("SELECT 1")).all()


CALLS: dict[str, Callable[[dal.Database], Any]] = {
    "get": lambda db: Users(db).get(1),
    "get_many": lambda db: Users(db).get_many([1, 2]),
    "find": lambda db: Users(db).find(name="A"),
    "count": lambda db: Users(db).count(),
    "add": lambda db: Users(db).add(email="a@example.com", name="A"),
    "update": lambda db: Users(db).update(1, name="B"),
    "delete": lambda db: Users(db).delete(1),
    "cached_query": _cached_query,
    "session": _session,
}


def _unreachable(kind: str, tmp_path: Path) -> tuple[str, type[BaseException]]:
    if kind == "closed-port":
        return f"postgresql://postgres@127.0.0.1:{pgserver.free_port()}/none", psycopg2.Error
    if kind.startswith("mysql+"):  # a MySQL driver on a closed port
        driver = kind.partition("+")[2]
        require_mysql_driver(driver)
        module = importlib.import_module(MYSQL_DRIVERS[driver])
        return f"{kind}://root@127.0.0.1:{pgserver.free_port()}/none", module.Error
    if kind == "missing-directory":
        return f"sqlite:///{tmp_path}/missing/dal.db", sqlite3.Error
    return f"sqlite:///{tmp_path}", sqlite3.Error  # a directory


@pytest.fixture(
    params=["closed-port", "mysql+pymysql", "mysql+mysqldb", "missing-directory", "directory"]
)
def unreachable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dal.Database, type[BaseException]]]:
    url, driver_error = _unreachable(request.param, tmp_path)
    db = dal.Database(url)
    try:
        yield db, driver_error
        assert db.stats()["pool"]["checked_out"] == 0
    finally:
        db.close()


@pytest.mark.parametrize("call", list(CALLS))
def test_a_database_that_cannot_be_reached_is_a_database_error(
    unreachable: tuple[dal.Database, type[BaseException]], call: str
) -> None:
    db, driver_error = unreachable
    with pytest.raises(dal.DatabaseError) as caught:
        CALLS[call](db)
    cause = caught.value.__cause__
    assert isinstance(cause, sqlalchemy.exc.DBAPIError), repr(cause)
    assert isinstance(cause.orig, driver_error)
    assert db.stats()["cache"]["currsize"] == 0
