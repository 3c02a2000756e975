"""Engines for the competitors that are not dal, set up the way dal sets up its own."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["POOL_SIZE", "QueryCounter", "make_engine", "redact"]

#: dal's default pool limits, so pooled baselines queue on the same number of connections.
POOL_SIZE = 5
MAX_OVERFLOW = 10
#: Seconds a SQLite connection waits on another writer's lock (dal uses its pool timeout).
SQLITE_BUSY_TIMEOUT = 30.0


def make_engine(url: str, *, null_pool: bool = False) -> Engine:
    """A pooled engine (or one with ``NullPool``) with the SQLite settings dal uses."""
    kwargs: dict[str, Any]
    if null_pool:
        kwargs = {"poolclass": NullPool}
    else:
        kwargs = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
    engine = create_engine(url, **kwargs)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    # The same pragmas as dal's engine: a baseline must not pay for a stricter sync mode.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def redact(url: str) -> str:
    """``url`` without its password, for the report."""
    return make_url(url).render_as_string(hide_password=True)


class QueryCounter:
    """Counts the statements an engine sends to the database (``before_cursor_execute``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()  # `+=` is not atomic across threads: a stampede counts
        self._count = 0
        event.listen(engine, "before_cursor_execute", self._on_execute)

    @property
    def count(self) -> int:
        return self._count

    def _on_execute(self, *args: Any) -> None:
        with self._lock:
            self._count += 1

    def remove(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on_execute)
