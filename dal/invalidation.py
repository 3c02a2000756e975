"""Write tracking: statements -> pending changes -> invalidation after the real commit.

SQLAlchemy's ``ConnectionEvents.commit`` fires *before* COMMIT is sent; invalidating
there lets a reader refill the old row while the COMMIT is in flight. The point that
is truly after the commit is the end of the DBAPI connection's own ``commit()``, so
the pool's connections are made from a subclass of the driver's connection class
(the drivers' documented ``factory`` / ``connection_factory`` argument) whose
``commit()`` invalidates once the database has answered. ORM flushes, Core DML and
text all pass through it.

A transaction can also end without ``commit()``: a statement in autocommit, or the
RELEASE of an outermost SQLite savepoint. After every statement, and at
``rollback()``, a connection that has pending writes but no open transaction has
committed them, and they are applied then. Only the rollback of an open transaction
discards them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import MetaData, Table

from .cache import Store
from .statements import Write, failed_writes_of, table_of, writes_of

__all__ = ["Pending", "Tracker", "connection_class"]

#: Changes of one transaction: table -> primary-key tuples, or None for any row.
Pending = dict[str, "set[tuple[Any, ...]] | None"]

#: Past this many keys of one table in one transaction, invalidate the whole table.
MAX_KEYS_PER_TABLE = 10_000

_CASCADING = {"CASCADE", "SET NULL", "SET DEFAULT"}


class Tracker:
    """Collects each connection's writes and applies them when they commit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Called with (dbapi connection, changes) inside the transaction, just before
        #: COMMIT (the cross-process bus sends its NOTIFY there).
        self.before_commit: Callable[[Any, Pending], None] | None = None
        #: Called with the changes after they were applied locally.
        self.after_apply: Callable[[Pending], None] | None = None
        self._lock = threading.Lock()
        self._metadata: list[MetaData] = []
        # parent table -> tables whose rows the database changes when a parent row is
        # deleted or updated (ON DELETE / ON UPDATE actions of their foreign keys)
        self._on_delete: dict[str, set[str]] = {}
        self._on_update: dict[str, set[str]] = {}

    def watch(self, table: Table) -> None:
        """Learn the foreign-key actions of ``table``'s MetaData (all its tables)."""
        metadata = table.metadata
        if any(m is metadata for m in self._metadata):
            return
        with self._lock:
            if any(m is metadata for m in self._metadata):
                return
            self._metadata.append(metadata)
            for child in metadata.tables.values():
                for fk in child.foreign_keys:
                    try:
                        parent = fk.column.table.fullname
                    except Exception:
                        continue
                    if (fk.ondelete or "").upper() in _CASCADING:
                        self._on_delete.setdefault(parent, set()).add(child.fullname)
                    if (fk.onupdate or "").upper() in _CASCADING:
                        self._on_update.setdefault(parent, set()).add(child.fullname)

    # -- SQLAlchemy events --------------------------------------------------------

    def after_execute(
        self,
        conn: Any,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        """``ConnectionEvents.after_execute``: note what a statement wrote."""
        context = getattr(result, "context", None)
        writes = writes_of(clauseelement, context, result, lambda: self.store.tables)
        if writes:
            compiled = getattr(context, "compiled", None)
            table = table_of(compiled) if compiled is not None else None
            if table is not None:
                self.watch(table)
            dbapi = conn.connection.dbapi_connection
            self._record(dbapi, writes)
            # SQLite commits an autocommit statement with RETURNING only once its rows
            # are read: settle it at the connection's next statement or rollback.
            if not (result.returns_rows and dbapi.dal_commits_when_read):
                self._settle(dbapi)

    def after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: Any
    ) -> None:
        """``ConnectionEvents.after_cursor_execute``: driver-level SQL, and transaction ends.

        ``exec_driver_sql`` (and SQLAlchemy's own SAVEPOINT statements) reach only this
        event, not ``after_execute``.
        """
        dbapi = cursor.connection
        if getattr(context, "compiled", None) is None:
            writes = writes_of(statement, None, None, lambda: self.store.tables)
            if writes:
                self._record(dbapi, writes)
        if getattr(dbapi, "dal_pending", None):
            self._settle(dbapi)

    def handle_error(self, context: Any) -> None:
        """``ConnectionEvents.handle_error``: a failed write may have written some rows."""
        try:
            dbapi = context.connection.connection.dbapi_connection
        except Exception:
            return
        writes = failed_writes_of(context.execution_context)
        if writes and hasattr(dbapi, "dal_in_transaction"):
            self._record(dbapi, writes)
            self._settle(dbapi)

    def _record(self, dbapi: Any, writes: list[Write]) -> None:
        pending: Pending = dbapi.dal_pending or {}
        for table, pks, op in writes:
            _merge(pending, table, pks)
            for child in self._cascades(table, op):
                _merge(pending, child, None)
        dbapi.dal_pending = pending

    def _settle(self, dbapi: Any) -> None:
        """Apply pending writes if the transaction they belong to has ended (committed)."""
        if not dbapi.dal_in_transaction():
            pending = dbapi.dal_pending
            dbapi.dal_pending = None
            if pending:
                self.publish(dbapi, pending)
                self.commit(dbapi, pending)

    def _cascades(self, table: str, op: str) -> set[str]:
        """Tables the database itself changes when ``table`` is written (transitively)."""
        on_delete, on_update = self._on_delete, self._on_update  # published, never changed
        edges = {
            "delete": [on_delete],
            "update": [on_update],
            "other": [on_delete, on_update],  # text, DDL, TRUNCATE
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
        self.store.invalidate(pending)
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


def connection_class(
    base: type,
    tracker: Tracker,
    in_transaction: Callable[[Any], bool],
    commits_when_read: bool,
) -> type:
    """A subclass of the driver's connection class that invalidates after COMMIT.

    ``in_transaction(conn)`` tells whether a transaction is open on ``conn``; after a
    write, "no" means it committed on its own. ``commits_when_read``: the driver
    commits an autocommit statement that returns rows only once they are read.
    """

    class TrackedConnection(base):  # type: ignore[misc]
        dal_pending: Pending | None = None
        dal_commits_when_read = commits_when_read

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
            pending = self.dal_pending
            self.dal_pending = None
            if pending and not in_transaction(self):
                # Nothing is open to roll back: the writes ended on their own
                # (autocommit, RELEASE of an outermost savepoint) and committed.
                tracker.publish(self, pending)
                tracker.commit(self, pending)
            super().rollback()

    TrackedConnection.__qualname__ = TrackedConnection.__name__ = f"Tracked{base.__name__}"
    return TrackedConnection
