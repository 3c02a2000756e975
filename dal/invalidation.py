"""Write tracking: statements -> pending changes -> invalidation after the real commit.

SQLAlchemy's ``ConnectionEvents.commit`` fires *before* COMMIT is sent; invalidating
there lets a reader refill the old row while the COMMIT is in flight. The point that
is truly after the commit is the end of the DBAPI connection's own ``commit()``, so
the pool's connections are made from a subclass of the driver's connection class
(the drivers' documented ``factory`` / ``connection_factory`` argument) whose
``commit()`` invalidates once the database has answered. ORM flushes, Core DML and
text all pass through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table

from .cache import Store
from .statements import ALL, writes_of

__all__ = ["Pending", "Tracker", "connection_class"]

#: Changes of one transaction: table -> primary-key tuples, or None for any row.
Pending = dict[str, "set[tuple[Any, ...]] | None"]

#: Past this many keys of one table in one transaction, invalidate the whole table.
MAX_KEYS_PER_TABLE = 10_000

_CASCADING = {"CASCADE", "SET NULL", "SET DEFAULT"}


class Tracker:
    """Collects each connection's writes and applies them when it commits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Called with (dbapi connection, changes) inside the transaction, just before
        #: COMMIT (the cross-process bus sends its NOTIFY there).
        self.before_commit: Callable[[Any, Pending], None] | None = None
        #: Called with the changes after they were applied locally.
        self.after_apply: Callable[[Pending], None] | None = None
        self._lock = threading.Lock()
        # parent table -> tables whose rows the database changes when a parent row is
        # deleted or updated (ON DELETE / ON UPDATE actions of their foreign keys)
        self._on_delete: dict[str, set[str]] = {}
        self._on_update: dict[str, set[str]] = {}

    def watch(self, table: Table) -> None:
        """Learn ``table``'s foreign-key actions, so cascades invalidate its rows too."""
        with self._lock:
            for fk in table.foreign_keys:
                try:
                    parent = fk.column.table.fullname
                except Exception:
                    continue
                if (fk.ondelete or "").upper() in _CASCADING:
                    self._on_delete.setdefault(parent, set()).add(table.fullname)
                if (fk.onupdate or "").upper() in _CASCADING:
                    self._on_update.setdefault(parent, set()).add(table.fullname)

    # -- SQLAlchemy event --------------------------------------------------------

    def after_execute(
        self,
        conn: Any,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        """``ConnectionEvents.after_execute``: note what the statement wrote."""
        writes = writes_of(clauseelement, result, lambda: self.store.tables)
        if not writes:
            return
        dbapi = conn.connection.dbapi_connection
        pending: Pending | None = getattr(dbapi, "dal_pending", None)
        if pending is None:
            pending = {}
        for table, pks, op in writes:
            _merge(pending, table, pks)
            for child in self._cascades(table, op):
                _merge(pending, child, None)
        if dbapi.dal_in_transaction():
            dbapi.dal_pending = pending
        else:
            # Autocommit: the statement has committed already.
            dbapi.dal_pending = None
            self.publish(dbapi, pending)
            self.commit(dbapi, pending)

    def _cascades(self, table: str, op: str) -> set[str]:
        """Tables the database itself changes when ``table`` is written (transitively)."""
        edges = {
            "delete": [self._on_delete],
            "update": [self._on_update],
            "other": [self._on_delete, self._on_update],  # text, DDL, TRUNCATE
        }.get(op, [])
        found: set[str] = set()
        todo = [table]
        while todo:
            parent = todo.pop()
            for children in edges:
                for child in children.get(parent, ()):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
        return found

    # -- commit hooks (called by the connection class) ---------------------------

    def publish(self, dbapi: Any, pending: Pending) -> None:
        if self.before_commit is not None:
            self.before_commit(dbapi, pending)

    def commit(self, dbapi: Any, pending: Pending) -> None:
        """Apply a committed transaction's changes to this process's cache."""
        self.store.invalidate({ALL: None} if ALL in pending else pending)
        if self.after_apply is not None:
            self.after_apply(pending)


def _merge(pending: Pending, table: str, pks: set[tuple[Any, ...]] | None) -> None:
    if table in pending:
        known = pending[table]
        if known is None:
            return
        if pks is None or len(known) + len(pks) > MAX_KEYS_PER_TABLE:
            pending[table] = None
        else:
            known.update(pks)
    else:
        pending[table] = None if pks is None or len(pks) > MAX_KEYS_PER_TABLE else set(pks)


def connection_class(base: type, tracker: Tracker, in_transaction: Callable[[Any], bool]) -> type:
    """A subclass of the driver's connection class that invalidates after COMMIT.

    ``in_transaction(conn)`` tells whether a transaction is open on ``conn``; after
    a write statement, "no" means the statement committed on its own (autocommit).
    """

    class TrackedConnection(base):  # type: ignore[misc]
        dal_pending: Pending | None = None

        def dal_in_transaction(self) -> bool:
            return in_transaction(self)

        def commit(self) -> None:
            pending = self.dal_pending
            if not pending:
                super().commit()
                return
            tracker.publish(self, pending)
            try:
                super().commit()
            finally:
                # Also when COMMIT failed: whether it took effect may be unknown,
                # and a needless invalidation only costs a reload.
                self.dal_pending = None
                tracker.commit(self, pending)

        def rollback(self) -> None:
            self.dal_pending = None
            super().rollback()

    TrackedConnection.__qualname__ = TrackedConnection.__name__ = f"Tracked{base.__name__}"
    return TrackedConnection
