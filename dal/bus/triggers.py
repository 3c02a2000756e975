"""Triggers that announce writes made by any client on the bus's channel.

One plpgsql function and, per table, statement-level AFTER INSERT / UPDATE /
DELETE triggers with transition tables plus an AFTER TRUNCATE trigger. A
statement sends one message with the primary keys it touched (old and new keys
for an UPDATE), aggregated in SQL, in the format of ``dal.bus.messages``; past
``MAX_KEYS`` keys or the payload limit it names the whole table. Row-level
triggers would send one message per row of a bulk statement.

``change`` does it all in one transaction on a raw pooled connection (DDL is no
write for the tracker to announce), for ``Database.install_triggers`` and the
command line (``python -m dal``) alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy import inspect as sa_inspect

from ..errors import ConfigError, DatabaseError
from .messages import CHANNEL, MAX_PAYLOAD, encode_control

__all__ = [
    "CHECKED_NOTIFY",
    "FUNCTION",
    "TRIGGERS",
    "Target",
    "change",
    "covered",
    "regclass",
]

FUNCTION = "dal_invalidation_notify"
TRIGGERS = (
    "dal_invalidate_insert",
    "dal_invalidate_update",
    "dal_invalidate_delete",
    "dal_invalidate_truncate",
)
#: Keys one statement may name before its message names the whole table
#: (more than this many keys never fit in a payload anyway).
MAX_KEYS = 2000
#: Key types whose JSON form reads back as the value dal caches under.
EXACT_TYPES = frozenset({"smallint", "integer", "bigint", "text", "character varying", "uuid"})
#: Transition tables with EXECUTE FUNCTION.
MIN_SERVER = 110000

_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $dal$
-- TG_ARGV: the table's name as dal knows it, then its key columns (none: send the table whole)
DECLARE
    cols text := '1';
    source text;
    n bigint;
    keys json;
    payload text;
BEGIN
    IF TG_OP <> 'TRUNCATE' THEN
        IF TG_NARGS > 1 THEN
            SELECT string_agg(quote_ident(c), ', ') INTO cols
            FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS c;
        END IF;
        source := CASE TG_OP
            WHEN 'INSERT' THEN format('SELECT %s FROM dal_new', cols)
            WHEN 'DELETE' THEN format('SELECT %s FROM dal_old', cols)
            ELSE format('SELECT %1$s FROM dal_old UNION SELECT %1$s FROM dal_new', cols)
        END;
        EXECUTE format(
            'SELECT count(*), json_agg(json_build_array(%s)) FROM (%s LIMIT %s) AS k',
            cols, source, {MAX_KEYS} + 1
        ) INTO n, keys;
        IF n = 0 THEN
            RETURN NULL;  -- the statement changed no row
        END IF;
        IF TG_NARGS < 2 OR n > {MAX_KEYS} THEN
            keys := NULL;
        END IF;
    END IF;
    payload := json_build_object(
        'v', 1, 's', 'trigger',
        't', round((extract(epoch FROM clock_timestamp()) * 1000)::numeric, 3),
        'c', json_build_object(TG_ARGV[0], keys))::text;
    IF octet_length(payload) > {MAX_PAYLOAD} THEN
        payload := json_build_object(
            'v', 1, 's', 'trigger',
            't', round((extract(epoch FROM clock_timestamp()) * 1000)::numeric, 3),
            'c', json_build_object(TG_ARGV[0], NULL))::text;
    END IF;
    PERFORM pg_notify('{CHANNEL}', payload);
    RETURN NULL;
END
$dal$
"""

# (trigger, event, REFERENCING clause): all FOR EACH STATEMENT
_DEFINITIONS = (
    (TRIGGERS[0], "INSERT", "REFERENCING NEW TABLE AS dal_new"),
    (TRIGGERS[1], "UPDATE", "REFERENCING OLD TABLE AS dal_old NEW TABLE AS dal_new"),
    (TRIGGERS[2], "DELETE", "REFERENCING OLD TABLE AS dal_old"),
    (TRIGGERS[3], "TRUNCATE", ""),
)

#: The publisher's NOTIFY when some written tables seem to have triggers: checked in
#: the writing transaction, which holds a lock on those tables that CREATE/DROP
#: TRIGGER must wait for, so the answer is the one that held for its own writes.
#: All triggers present: send ``without`` those tables (NULL: send nothing), else ``full``.
#: Returns a row if it sent one, saying whether that was ``full``.
CHECKED_NOTIFY = """
SELECT pg_notify(%(channel)s, payload), payload = %(full)s FROM (
    SELECT CASE WHEN (
        SELECT count(*) FROM pg_trigger
        WHERE tgrelid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name)
          AND tgname = ANY(%(triggers)s::text[]) AND tgenabled <> 'D'
    ) = %(expected)s THEN %(without)s ELSE %(full)s END AS payload
) AS message WHERE payload IS NOT NULL
"""


@dataclasses.dataclass(frozen=True)
class Target:
    """A table to give triggers: the name messages use, and its key columns."""

    #: As dal names it (``Table.fullname``: ``"users"``, or ``"schema.users"``).
    name: str
    #: Key columns in the order dal's keys use; None: the primary key, from the catalog.
    key_columns: tuple[str, ...] | None = None


def change(engine: Engine, items: Iterable[Any], *, install: bool, sender: str) -> frozenset[str]:
    """Install or uninstall the triggers of ``items`` (models, Tables, table names) in one
    transaction; the tables that have triggers afterwards.

    Runs on a raw connection: the DDL is not a write for dal's tracker to announce.
    """
    targets = [_target(item) for item in items]
    if not targets:
        raise ConfigError("name at least one model, Table or table name")
    import psycopg2

    try:
        # A pool's raw connection raises the driver's errors, connecting included.
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                if install:
                    _install(cursor, targets, sender)
                else:
                    _uninstall(cursor, [t.name for t in targets], sender)
                tables = covered(cursor)
            finally:
                cursor.close()
            raw.commit()
            return tables
        finally:
            raw.close()  # back to the pool, which rolls back what did not commit
    except psycopg2.Error as exc:
        cause = exc
    raise DatabaseError(str(cause).strip()) from cause


def regclass(name: str) -> str:
    """``name`` ("table" or "schema.table") quoted for ``to_regclass``, case kept."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split(".", 1))


def _install(cursor: Any, targets: Sequence[Target], sender: str) -> None:
    """Create (or replace) the function and every target's triggers; caller commits."""
    _check_server(cursor)
    # Concurrent CREATE OR REPLACE FUNCTION fails with "tuple concurrently updated".
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CHANNEL,))
    cursor.execute(_FUNCTION_SQL)
    for target in targets:
        relation = _relation(cursor, target.name)
        args = [target.name, *_key_columns(cursor, relation, target)]
        arguments = ", ".join(_literal(cursor, arg) for arg in args)
        for trigger, event, referencing in _DEFINITIONS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {relation}")
            cursor.execute(
                f"CREATE TRIGGER {trigger} AFTER {event} ON {relation} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}({arguments})"
            )
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, encode_control(sender)))


def _uninstall(cursor: Any, names: Iterable[str], sender: str) -> None:
    """Drop the triggers of ``names``, and the function once no table uses it."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CHANNEL,))
    for name in names:
        cursor.execute("SELECT to_regclass(%s)::text", (regclass(name),))
        row = cursor.fetchone()
        if row is None or row[0] is None:
            continue  # no such table: nothing to drop
        for trigger in TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {regclass(name)}")
    cursor.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s::text[])", (list(TRIGGERS),)
    )
    remaining = cursor.fetchone()
    if remaining is not None and remaining[0] == 0:
        cursor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, encode_control(sender)))


def covered(cursor: Any) -> frozenset[str]:
    """Names (without schema) of the tables that have dal's triggers."""
    cursor.execute(
        "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = ANY(%s::text[])",
        (list(TRIGGERS),),
    )
    return frozenset(str(row[0]) for row in cursor.fetchall())


def _target(item: Any) -> Target:
    if isinstance(item, str):
        return Target(item)
    table = (
        item
        if isinstance(item, Table)
        else getattr(sa_inspect(item, raiseerr=False), "local_table", None)
    )
    if not isinstance(table, Table):
        raise ConfigError(f"{item!r} is not a mapped model, a Table or a table name")
    # dal's keys list primary-key columns in the Table's order; the triggers must too.
    return Target(table.fullname, tuple(c.name for c in table.primary_key.columns) or None)


def _check_server(cursor: Any) -> None:
    cursor.execute("SHOW server_version_num")
    row = cursor.fetchone()
    version = int(row[0]) if row else 0
    if version < MIN_SERVER:
        raise ConfigError(
            f"dal's triggers need PostgreSQL 11 or newer (statement triggers with "
            f"transition tables); the server is {version}"
        )


def _relation(cursor: Any, name: str) -> str:
    """``name`` as a quoted, schema-qualified relation; ConfigError if it is no table."""
    cursor.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (regclass(name),),
    )
    row = cursor.fetchone()
    if row is None or row[1] not in ("r", "p"):
        raise ConfigError(f"cannot install triggers: no table {name!r} in this database")
    return str(row[0])


def _key_columns(cursor: Any, relation: str, target: Target) -> list[str]:
    """The key columns the triggers send, or none (whole table) if a type is not exact."""
    columns = target.key_columns
    if columns is None:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (relation,),
        )
        columns = tuple(str(row[0]) for row in cursor.fetchall())
    if not columns:
        return []  # no primary key: every write names the whole table
    cursor.execute(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = ANY(%s::text[]) AND NOT attisdropped",
        (relation, list(columns)),
    )
    types = {str(name): str(kind) for name, kind in cursor.fetchall()}
    missing = [c for c in columns if c not in types]
    if missing:
        raise ConfigError(f"cannot install triggers: {relation} has no column {missing[0]!r}")
    return list(columns) if all(types[c] in EXACT_TYPES for c in columns) else []


def _literal(cursor: Any, value: str) -> str:
    """A SQL string literal (trigger arguments cannot be bind parameters)."""
    quoted = cursor.mogrify("%s", (value,))
    return quoted.decode() if isinstance(quoted, bytes) else str(quoted)
