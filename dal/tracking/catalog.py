"""What the database itself knows about a table: user triggers, views over it, foreign keys.

A write reaches further than the table it names when the database acts on it: a
trigger writes elsewhere, a view's rows are its base tables' rows, a foreign key's
``ON DELETE CASCADE`` empties referencing rows. These queries ask the catalog, once
per table (``dal.tracking.relations`` remembers the answers), on the writer's own connection
so that they see its transaction's DDL too. dal's own bus triggers are not counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from ..store.keys import table_key
from .sqltext import names_in

__all__ = ["Info", "collations", "learn", "table_names"]


@dataclasses.dataclass(frozen=True)
class Info:
    """One table key's relations in the database (all relations of that bare name)."""

    #: The relation exists at all.
    exists: bool = False
    #: Write events ("insert", "update", "delete", "truncate") with user triggers or rules.
    triggers: frozenset[str] = frozenset()
    #: Relations a write to this one writes too: a view's base tables, a parent's partitions.
    writes_through: frozenset[str] = frozenset()
    #: Relations whose rows are read from this one (views over it, its parent tables).
    readers: frozenset[str] = frozenset()
    #: Tables whose foreign keys to this one act on delete / on update; all referencing tables.
    on_delete: frozenset[str] = frozenset()
    on_update: frozenset[str] = frozenset()
    referencing: frozenset[str] = frozenset()


def learn(conn: Connection, key: str) -> Info:
    """The catalog's answer for the table key ``key``."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _postgres(conn, key)
    if dialect in ("mysql", "mariadb"):
        return _mysql(conn, key)
    return _sqlite(conn, key)


def table_names(conn: Connection) -> list[str]:
    """Keys of the tables and views the database has (for error messages and checks)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        sql = (
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        )
    elif dialect in ("mysql", "mariadb"):
        sql = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    else:
        sql = (
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " UNION SELECT name FROM sqlite_temp_master WHERE type IN ('table', 'view')"
        )
    return sorted({table_key(str(row[0])) for row in conn.execute(text(sql))})


def collations(
    conn: Connection, schema: str | None, table: str, columns: Sequence[str]
) -> list[str | None]:
    """MySQL: the collation of each of ``columns`` (None where it has none or is unknown)."""
    rows = conn.execute(
        text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
        ),
        {"schema": schema, "table": table},
    )
    found = {str(name).lower(): coll for name, coll in rows}
    return [found.get(c.lower()) for c in columns]


# -- PostgreSQL ------------------------------------------------------------------------

_DAL_TRIGGERS = (
    "'dal_invalidate_insert', 'dal_invalidate_update', "
    "'dal_invalidate_delete', 'dal_invalidate_truncate'"
)
_PG = f"""
WITH rel AS (
    SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE lower(c.relname) = :name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
)
SELECT 'kind', relkind::text, '' FROM rel
UNION ALL
SELECT 'trigger', t.tgtype::text, '' FROM pg_trigger t JOIN rel ON t.tgrelid = rel.oid
WHERE NOT t.tgisinternal AND t.tgname NOT IN ({_DAL_TRIGGERS})
UNION ALL
SELECT 'rule', r.ev_type::text, '' FROM pg_rewrite r JOIN rel ON r.ev_class = rel.oid
WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT 'through', b.relname, '' FROM rel
JOIN pg_rewrite r ON r.ev_class = rel.oid AND r.rulename = '_RETURN' AND rel.relkind = 'v'
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
 AND d.refclassid = 'pg_class'::regclass
JOIN pg_class b ON b.oid = d.refobjid AND b.oid <> rel.oid
UNION ALL
SELECT 'through', ch.relname, '' FROM rel JOIN pg_inherits i ON i.inhparent = rel.oid
JOIN pg_class ch ON ch.oid = i.inhrelid
UNION ALL
SELECT 'reader', v.relname, '' FROM rel
JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = rel.oid
 AND d.classid = 'pg_rewrite'::regclass
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.oid <> rel.oid AND v.relkind = 'v'
UNION ALL
SELECT 'reader', p.relname, '' FROM rel JOIN pg_inherits i ON i.inhrelid = rel.oid
JOIN pg_class p ON p.oid = i.inhparent
UNION ALL
SELECT 'fk', ch.relname, con.confdeltype::text || con.confupdtype::text
FROM pg_constraint con JOIN rel ON con.confrelid = rel.oid
JOIN pg_class ch ON ch.oid = con.conrelid
WHERE con.contype = 'f'
"""
# pg_trigger.tgtype bits; pg_rewrite.ev_type codes
_TG_BITS = {4: "insert", 8: "delete", 16: "update", 32: "truncate"}
_RULE_EVENTS = {"2": "update", "3": "insert", "4": "delete"}
#: confdeltype / confupdtype codes of actions that change the referencing rows
_PG_ACTS = {"c", "n", "d"}


def _postgres(conn: Connection, key: str) -> Info:
    rows = conn.execute(text(_PG), {"name": key}).all()
    exists = False
    triggers: set[str] = set()
    through: set[str] = set()
    readers: set[str] = set()
    on_delete: set[str] = set()
    on_update: set[str] = set()
    referencing: set[str] = set()
    for what, value, acts in rows:
        if what == "kind":
            exists = True
        elif what == "trigger":
            triggers.update(e for bit, e in _TG_BITS.items() if int(value) & bit)
        elif what == "rule":
            triggers.add(_RULE_EVENTS.get(value, "update"))
        elif what == "through":
            through.add(table_key(value))
        elif what == "reader":
            readers.add(table_key(value))
        else:
            child = table_key(value)
            referencing.add(child)
            if acts[0] in _PG_ACTS:
                on_delete.add(child)
            if acts[1] in _PG_ACTS:
                on_update.add(child)
    return _info(exists, triggers, through, readers, on_delete, on_update, referencing)


def _info(exists: bool, *sets: set[str]) -> Info:
    return Info(exists, *(frozenset(s) for s in sets))


# -- SQLite ----------------------------------------------------------------------------

_SQLITE_OBJECTS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master"
    " UNION ALL SELECT type, name, tbl_name, sql FROM sqlite_temp_master"
)
_SQLITE_FKS = (
    'SELECT m.name, p.on_delete, p.on_update, p."table" FROM sqlite_master AS m,'
    " pragma_foreign_key_list(m.name) AS p WHERE m.type = 'table'"
)
_ACTS = {"CASCADE", "SET NULL", "SET DEFAULT"}


def _sqlite(conn: Connection, key: str) -> Info:
    objects = conn.execute(text(_SQLITE_OBJECTS)).all()
    exists = False
    triggers: set[str] = set()
    through: set[str] = set()
    readers: set[str] = set()
    relations = {table_key(name) for kind, name, _, _ in objects if kind in ("table", "view")}
    for kind, name, table, sql in objects:
        if kind in ("table", "view") and table_key(name) == key:
            exists = True
            if kind == "view":  # base tables: the relations its SELECT names
                through |= (names_in(sql or "", "sqlite") & relations) - {key}
        elif kind == "view" and key in names_in(sql or "", "sqlite"):
            readers.add(table_key(name))
        elif kind == "trigger" and table_key(table) == key:
            head = (sql or "").lower().split(" begin", 1)[0]
            triggers.update(e for e in ("insert", "update", "delete") if e in head)
    on_delete: set[str] = set()
    on_update: set[str] = set()
    referencing: set[str] = set()
    for child, deleting, updating, parent in conn.execute(text(_SQLITE_FKS)):
        if table_key(parent) != key:
            continue
        referencing.add(table_key(child))
        if str(deleting).upper() in _ACTS:
            on_delete.add(table_key(child))
        if str(updating).upper() in _ACTS:
            on_update.add(table_key(child))
    return _info(exists, triggers, through, readers, on_delete, on_update, referencing)


# -- MySQL / MariaDB -------------------------------------------------------------------


def _mysql(conn: Connection, key: str) -> Info:
    def rows(sql: str, **params: Any) -> list[Any]:
        return list(conn.execute(text(sql), params).all())

    schema = "= DATABASE()"
    tables = rows(
        f"SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA {schema}"
    )
    relations = {table_key(name) for name, _ in tables}
    exists = key in relations
    triggers = {
        str(event).lower()
        for (event,) in rows(
            "SELECT EVENT_MANIPULATION FROM information_schema.TRIGGERS"
            f" WHERE TRIGGER_SCHEMA {schema} AND lower(EVENT_OBJECT_TABLE) = :name",
            name=key,
        )
    }
    through: set[str] = set()
    readers: set[str] = set()
    for name, definition in rows(
        "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS"
        f" WHERE TABLE_SCHEMA {schema}"
    ):
        mentioned = names_in(str(definition or ""), "mysql")
        if table_key(name) == key:
            through |= (mentioned & relations) - {key}
        elif key in mentioned:
            readers.add(table_key(name))
    on_delete: set[str] = set()
    on_update: set[str] = set()
    referencing: set[str] = set()
    for child, deleting, updating in rows(
        "SELECT TABLE_NAME, DELETE_RULE, UPDATE_RULE"
        " FROM information_schema.REFERENTIAL_CONSTRAINTS"
        f" WHERE CONSTRAINT_SCHEMA {schema} AND lower(REFERENCED_TABLE_NAME) = :name",
        name=key,
    ):
        referencing.add(table_key(child))
        if str(deleting).upper() in _ACTS:
            on_delete.add(table_key(child))
        if str(updating).upper() in _ACTS:
            on_update.add(table_key(child))
    return _info(exists, triggers, through, readers, on_delete, on_update, referencing)
