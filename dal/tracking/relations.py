"""How far a write reaches: from the tables a statement names to every table it changed.

The database changes more than a statement names: ``ON DELETE CASCADE`` and ``SET NULL``
foreign keys change referencing rows, ``TRUNCATE ... CASCADE`` empties referencing
tables whatever their actions, a write through a view writes its base tables, a view's
rows change with its base tables, and a user trigger may write anything (so a write
to a table with user triggers for that event invalidates every table). Models'
MetaData tell the foreign keys they declare; the database's catalog (``dal.tracking.catalog``)
tells the rest, asked once per table on the writer's connection and remembered for
``CATALOG_TTL`` seconds, or until dal sees DDL.
"""

from __future__ import annotations

import threading
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any

from sqlalchemy import Connection, MetaData, Table

from ..store.keys import table_key
from . import catalog
from .statements import ALL, SCHEMA, Write

__all__ = ["CATALOG_TTL", "Relations"]

#: Seconds the catalog's answer for a table is trusted before it is asked again (a
#: trigger or view created by another program is seen within this time).
CATALOG_TTL = 30.0

_EVERYTHING: list[Write] = [(ALL, None, "other")]

#: The catalog's answers, shared by every Database of this process on one database URL
#: (a table's triggers and foreign keys do not depend on who asks).
_learned: dict[tuple[str, str], tuple[catalog.Info, float]] = {}
_learned_lock = threading.Lock()
_ACTING = {"CASCADE", "SET NULL", "SET DEFAULT"}
_ANY_EVENT = frozenset({"insert", "update", "delete", "truncate"})


class Relations:
    """Foreign keys, views and triggers of the tables one Database writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metadata: list[MetaData] = []
        # From models' MetaData: parent key -> child keys (replaced whole, never mutated)
        self._on_delete: dict[str, frozenset[str]] = {}
        self._on_update: dict[str, frozenset[str]] = {}
        self._referencing: dict[str, frozenset[str]] = {}
        self._known: frozenset[str] = frozenset()
        #: The database the catalog's answers are about (learned from the first connection).
        self._url = ""

    def watch(self, table: Table) -> None:
        """Learn the tables and foreign keys of ``table``'s MetaData (all its tables)."""
        metadata = table.metadata
        if any(m is metadata for m in self._metadata):
            return
        with self._lock:
            if any(m is metadata for m in self._metadata):
                return
            on_delete = {k: set(v) for k, v in self._on_delete.items()}
            on_update = {k: set(v) for k, v in self._on_update.items()}
            referencing = {k: set(v) for k, v in self._referencing.items()}
            for child in metadata.tables.values():
                for fk in child.foreign_keys:
                    try:
                        parent = table_key(fk.column.table.name)
                    except Exception:  # an unresolvable foreign key: nothing to learn
                        continue
                    name = table_key(child.name)
                    referencing.setdefault(parent, set()).add(name)
                    if (fk.ondelete or "").upper() in _ACTING:
                        on_delete.setdefault(parent, set()).add(name)
                    if (fk.onupdate or "").upper() in _ACTING:
                        on_update.setdefault(parent, set()).add(name)
            self._on_delete = {k: frozenset(v) for k, v in on_delete.items()}
            self._on_update = {k: frozenset(v) for k, v in on_update.items()}
            self._referencing = {k: frozenset(v) for k, v in referencing.items()}
            self._known = self._known | {table_key(t.name) for t in metadata.tables.values()}
            self._metadata.append(metadata)

    @property
    def known(self) -> frozenset[str]:
        """Keys of the tables in every MetaData watched so far."""
        return self._known

    def forget(self) -> None:
        """The schema changed: ask the catalog again."""
        with _learned_lock:
            _learned.clear()

    def expand(self, writes: list[Write], conn: Connection | None) -> list[Write]:
        """``writes`` and every table the database changed with them.

        ``conn`` is the writer's connection, on which the catalog is asked about a
        table not asked about recently; without one (a failed statement, whose
        transaction may be aborted), a table never asked about means every table.
        """
        if any(op == "ddl" for _, _, op in writes):
            self.forget()
            writes = [w for w in writes if w[0] != SCHEMA]
        if conn is not None:
            self._url = conn.engine.url.render_as_string(hide_password=False)
        out = list(writes)
        seen: set[tuple[str, str]] = set()
        todo = [(table, "other" if op == "ddl" else op) for table, _, op in writes]
        while todo:
            table, op = todo.pop()
            if table == ALL:
                return list(_EVERYTHING)
            if (table, op) in seen:
                continue
            seen.add((table, op))
            info = self._info(table, conn)
            if info is None:
                return list(_EVERYTHING)
            more: list[tuple[str, str]] = [(t, "read") for t in info.readers]
            if op != "read":
                if info.triggers & (_ANY_EVENT if op == "other" else {op}):
                    return list(_EVERYTHING)  # a trigger may have written any table
                more += [(t, op) for t in info.writes_through]
                more += [(t, "other") for t in self._children(table, op, info)]
            for name, next_op in more:
                out.append((name, None, "other"))
                todo.append((name, next_op))
        return out

    def _children(self, table: str, op: str, info: catalog.Info) -> set[str]:
        """Tables whose rows the database changes through foreign keys to ``table``."""
        found: set[str] = set()
        if op in ("delete", "other"):
            found |= info.on_delete | self._on_delete.get(table, frozenset())
        if op in ("update", "other"):
            found |= info.on_update | self._on_update.get(table, frozenset())
        if op == "truncate":  # TRUNCATE ... CASCADE empties them whatever their actions
            found |= info.referencing | self._referencing.get(table, frozenset())
        return found

    def _info(self, table: str, conn: Connection | None) -> catalog.Info | None:
        key = (self._url, table)
        entry = _learned.get(key)
        if entry is not None and monotonic() - entry[1] < CATALOG_TTL:
            return entry[0]
        if conn is None:
            return entry[0] if entry is not None else None
        try:
            info = catalog.learn(conn, table)
        except Exception:
            return None  # the catalog could not say: every table
        with _learned_lock:
            _learned[key] = (info, monotonic())
        return info


def lookup_connection(conn: Any) -> Connection | None:
    """The Connection to ask the catalog on, if it can still run a statement."""
    return conn if isinstance(conn, Connection) and not conn.closed else None
