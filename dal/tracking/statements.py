"""What a statement wrote: (table, primary keys) from Core DML, tables from text SQL.

Every write reaches the database through a Connection, whether it came from an ORM
flush, a Core statement or text, so this one analysis serves all of them. A compiled
statement is analysed once (its *shape*, cached with it); each execution then only
reads its parameters. Text is read by ``dal.tracking.sqltext`` (cached per statement text).
Where the rows cannot be known exactly, the answer is the whole table (``None``), and
where not even the tables can, every table (``ALL``): over-invalidating costs a
reload, under-invalidating would serve stale data. Tables are named by
``keys.table_key``. What the database changes beyond the named tables (foreign-key
actions, views, triggers) is added by ``dal.tracking.relations``.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Column, Table
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.ddl import DDL, ExecutableDDLElement
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    Grouping,
    TextClause,
)
from sqlalchemy.sql.selectable import Join

from ..store.keys import table_key
from . import sqltext

__all__ = ["ALL", "NEW_ROWS", "SCHEMA", "Write", "failed_writes_of", "writes_of"]

#: Table name standing for "every table": a write whose targets are unknown.
ALL = sqltext.ALL
#: Table name of a write that changed the schema only (nothing to invalidate, but
#: what dal knows of views, triggers and foreign keys must be asked again).
SCHEMA = ""


class _NewRows:
    def __repr__(self) -> str:
        return "NEW_ROWS"

    def __reduce__(self) -> str:
        return "NEW_ROWS_MARK"


NEW_ROWS_MARK = _NewRows()
#: Stands among primary keys for "rows were inserted whose keys are not known": an
#: insert can only make absences and queries stale, never a cached row.
NEW_ROWS: tuple[Any, ...] = (NEW_ROWS_MARK,)

#: (table key, primary-key tuples or None for any row,
#:  "insert" / "update" / "delete" / "truncate" / "other" / "ddl")
Write = tuple[str, "set[tuple[Any, ...]] | None", str]


def writes_of(statement: object, context: Any, result: Any, dialect: str) -> list[Write]:
    """The writes an executed ``statement`` made.

    ``statement`` is what ``after_execute`` received, or the SQL string of a
    driver-level execution; ``dialect`` (``Dialect.name``) says how to read text.
    Should the analysis itself fail, the answer is every table: never a write left unseen.
    """
    try:
        return _writes_of(statement, context, result, dialect)
    except Exception:
        return [(ALL, None, "other")]


def _writes_of(statement: object, context: Any, result: Any, dialect: str) -> list[Write]:
    if isinstance(statement, str):
        return _text(statement, dialect)
    if isinstance(statement, TextClause):
        return _text(statement.text, dialect)
    if isinstance(statement, DDL):
        return _text(statement.statement, dialect)
    if isinstance(statement, ExecutableDDLElement):
        target = getattr(statement, "element", None)
        return [(_name(target) if isinstance(target, Table) else SCHEMA, None, "ddl")]
    compiled = getattr(context, "compiled", None)
    if compiled is None:
        return []
    shape = _shape(compiled)
    writes = list(shape.embedded)
    if shape.op:
        params: Sequence[Mapping[str, Any]] = getattr(context, "compiled_parameters", None) or ()
        writes.append((shape.table, _rows(shape, params, result), shape.op))
    return writes


def failed_writes_of(context: Any, dialect: str) -> list[Write]:
    """What a statement that raised may have written: its tables, whole.

    A failed executemany may keep the rows before the failing one.
    """
    try:
        return _failed_writes_of(context, dialect)
    except Exception:
        return [(ALL, None, "other")]


def _failed_writes_of(context: Any, dialect: str) -> list[Write]:
    compiled = getattr(context, "compiled", None)
    if compiled is None:
        statement = getattr(context, "statement", None)
        return _text(statement, dialect) if statement else []
    shape = _shape(compiled)
    writes = list(shape.embedded)
    if shape.op:
        writes.append((shape.table, None, shape.op))
    return writes


def table_of(compiled: Any) -> Table | None:
    """The Table a compiled DML statement writes (for its foreign keys)."""
    return _shape(compiled).table_object


def _text(sql: str, dialect: str) -> list[Write]:
    found = sqltext.analyse(sql, dialect)
    op = "ddl" if found.ddl else None
    writes: list[Write] = [(table, None, op or kind) for table, kind in found.tables]
    return writes or ([(SCHEMA, None, "ddl")] if found.ddl else [])


# -- the shape of a compiled statement ----------------------------------------------------

# One alternative: pk column key -> (compiled bind name, expanding?)
_Alt = dict[str, tuple[str, bool]]


class _Shape(NamedTuple):
    op: str  # "insert", "update", "delete", or "" for no top-level write
    table: str
    table_object: Table | None
    pk_keys: tuple[str, ...]
    #: update/delete: alternatives covering the written rows; None: the whole table
    alternatives: tuple[_Alt, ...] | None
    #: update: bind names read by the WHERE (other parameters are SET values)
    where_binds: frozenset[str]
    #: insert: whether the driver-reported key can be trusted
    insert_mode: str  # "keys", "new", "table"
    #: tables written by DML nested in CTEs: whole tables
    embedded: tuple[Write, ...]


_NO_WRITE = _Shape("", "", None, (), None, frozenset(), "", ())
_shapes: weakref.WeakKeyDictionary[Any, _Shape] = weakref.WeakKeyDictionary()
_shapes_lock = threading.Lock()


def _shape(compiled: Any) -> _Shape:
    shape = _shapes.get(compiled)
    if shape is None:
        statement = getattr(compiled, "statement", None)
        bind_names = getattr(compiled, "bind_names", None)
        # DDL compilers have no bind names; DDL is handled before it gets here.
        shape = (
            _NO_WRITE
            if statement is None or bind_names is None
            else _analyse(statement, bind_names)
        )
        with _shapes_lock:
            _shapes[compiled] = shape
    return shape


def _analyse(statement: Any, bind_names: Mapping[BindParameter[Any], str]) -> _Shape:
    embedded = tuple(
        (_name(_base(node.table)), None, "other")
        for node in visitors.iterate(statement)
        if isinstance(node, UpdateBase) and node is not statement
    )
    if not isinstance(statement, UpdateBase):
        return _NO_WRITE._replace(embedded=embedded) if embedded else _NO_WRITE
    op = (
        "insert"
        if isinstance(statement, Insert)
        else "delete"
        if isinstance(statement, Delete)
        else "update"
    )
    target = statement.table
    base = _base(target)
    if isinstance(base, Join):  # MySQL: UPDATE a JOIN b SET ... may set either table
        joined = tuple((_name(t), None, op) for t in _tables_of(base))
        return _NO_WRITE._replace(embedded=embedded + joined)
    if isinstance(statement, Update):
        # MySQL's multi-table UPDATE a, b SET b.x = ...: the other tables, whole.
        embedded += tuple((_name(t), None, op) for t in _other_set_tables(statement, base))
    table_object = base if isinstance(base, Table) else None
    pk_keys = tuple(c.key for c in base.primary_key.columns) if table_object is not None else ()
    shape = _Shape(op, _name(base), table_object, pk_keys, None, frozenset(), "", embedded)
    if isinstance(statement, Insert):
        mode = _insert_mode(statement)
        # REPLACE-like inserts delete or update rows: their foreign-key actions fire.
        return shape._replace(op="other" if mode == "table" else "insert", insert_mode=mode)
    where = getattr(statement, "whereclause", None)
    if not pk_keys or where is None:
        return shape
    found = _match(where, target, set(pk_keys))
    if found is None or any(set(alt) != set(pk_keys) for alt in found):
        return shape
    if isinstance(statement, Update) and _sets_primary_key(statement, pk_keys):
        return shape  # the row moves to another key: the whole table
    alternatives = []
    for alt in found:
        named = {}
        for key, (bind, expanding) in alt.items():
            name = bind_names.get(bind)
            if name is None:
                return shape
            named[key] = (name, expanding)
        alternatives.append(named)
    where_binds = frozenset(name for alt in alternatives for name, _ in alt.values())
    return shape._replace(alternatives=tuple(alternatives), where_binds=where_binds)


def _base(table: Any) -> Any:
    """The table behind an alias."""
    while not isinstance(table, Table):
        element = getattr(table, "element", None)
        if element is None or element is table:
            break
        table = element
    return table


def _plain(element: Any) -> Any:
    """The element without ORM annotations (``update(User).table`` is an annotated copy)."""
    deannotate = getattr(element, "_deannotate", None)
    return deannotate() if deannotate is not None else element


def _name(table: Any) -> str:
    return table_key(str(table.name))


def _tables_of(join: Join) -> list[Any]:
    found = []
    for side in (join.left, join.right):
        side = _base(side)
        found += _tables_of(side) if isinstance(side, Join) else [side]
    return found


def _other_set_tables(statement: Update, base: Any) -> list[Any]:
    ordered = getattr(statement, "_ordered_values", None) or ()  # SQLAlchemy 2.0
    keys = list((statement._values or {}).keys()) + [k for k, _ in ordered]
    tables = {}
    for key in keys:
        table = getattr(key, "table", None)
        if table is not None and _plain(_base(table)) is not _plain(base):
            tables[id(table)] = _base(table)
    return list(tables.values())


def _insert_mode(statement: Insert) -> str:
    if statement._prefixes or getattr(statement, "_post_values_clause", None) is not None:
        # INSERT OR REPLACE deletes conflicting rows; an upsert updates one; the
        # driver may report no key (or another row's) for either.
        return "table"
    return "new" if statement.select is not None else "keys"


def _sets_primary_key(statement: Update, pk_keys: tuple[str, ...]) -> bool:
    ordered = getattr(statement, "_ordered_values", None) or ()  # SQLAlchemy 2.0
    values = list((statement._values or {}).keys()) + [k for k, _ in ordered]
    return any(getattr(k, "key", k) in pk_keys for k in values)


def _match(clause: Any, target: Any, pk_keys: set[str]) -> list[dict[str, Any]] | None:
    """Alternatives whose union covers the rows ``clause`` selects.

    An alternative may bind only some columns of a composite key; the caller accepts
    the answer only if every alternative binds them all.
    """
    while isinstance(clause, Grouping):
        clause = clause.element
    if isinstance(clause, BinaryExpression):
        alt = _compare(clause, target, pk_keys)
        return [alt] if alt else None
    if not isinstance(clause, BooleanClauseList):
        return None
    children = [_match(child, target, pk_keys) for child in clause.clauses]
    if clause.operator is operators.or_:
        if any(c is None or any(set(alt) != pk_keys for alt in c) for c in children):
            return None
        return [alt for c in children if c is not None for alt in c]
    if clause.operator is operators.and_:
        # An AND selects a subset of what any one conjunct selects: merge the
        # single-alternative conjuncts, or else keep one complete OR.
        merged: dict[str, Any] = {}
        for c in children:
            if c is not None and len(c) == 1:
                merged.update(c[0])
        if set(merged) == pk_keys:
            return [merged]
        for c in children:
            if c is not None and len(c) > 1 and all(set(alt) == pk_keys for alt in c):
                return c
        return [merged] if merged else None
    return None


def _compare(clause: BinaryExpression[Any], target: Any, pk_keys: set[str]) -> dict[str, Any]:
    left, right = clause.left, clause.right
    if isinstance(left, BindParameter) and isinstance(right, Column):
        left, right = right, left
    # Only the written table's own key: UPDATE ... FROM other WHERE other.id = 7
    # says nothing about which rows of the target changed.
    if not (
        isinstance(left, Column)
        and _plain(left.table) is _plain(target)
        and left.primary_key
        and left.key in pk_keys
        and isinstance(right, BindParameter)
    ):
        return {}
    if clause.operator is operators.eq:
        return {left.key: (right, False)}
    if clause.operator is operators.in_op:
        return {left.key: (right, True)}
    return {}


# -- one execution ----------------------------------------------------------------


def _rows(shape: _Shape, params: Sequence[Mapping[str, Any]], result: Any) -> set[Any] | None:
    if shape.op == "insert":
        return _inserted(shape, params, result)
    if shape.alternatives is None:
        return None
    if shape.op == "update" and any(
        k in p and k not in shape.where_binds for p in params for k in shape.pk_keys
    ):
        return None  # a SET parameter moves the row to another key
    pks: set[tuple[Any, ...]] = set()
    try:
        for param_set in params:
            for alt in shape.alternatives:
                columns = [_bound(param_set, *alt[key]) for key in shape.pk_keys]
                pks.update(itertools.product(*columns))
    except (KeyError, TypeError):
        return None
    return pks


def _bound(param_set: Mapping[str, Any], name: str, expanding: bool) -> list[Any]:
    if name in param_set:
        value = param_set[name]
        return list(value) if expanding else [value]
    if not expanding:
        raise KeyError(name)
    # An expanding IN parameter appears as name_1, name_2, ... once expanded.
    prefix = f"{name}_"
    return [v for k, v in param_set.items() if k.startswith(prefix) and k[len(prefix) :].isdigit()]


def _auto_zero(shape: _Shape, params: Sequence[Mapping[str, Any]], result: Any) -> bool:
    """MySQL: an AUTO_INCREMENT key given as 0 stores the next value, not 0."""
    table = shape.table_object
    column = None if table is None else table.autoincrement_column
    if column is None or column.key not in shape.pk_keys:
        return False
    dialect = getattr(getattr(result, "context", None), "dialect", None)
    return getattr(dialect, "name", None) == "mysql" and any(p.get(column.key) == 0 for p in params)


def _inserted(
    shape: _Shape, params: Sequence[Mapping[str, Any]], result: Any
) -> set[tuple[Any, ...]] | None:
    if shape.insert_mode == "table":
        return None
    if shape.insert_mode == "new" or _auto_zero(shape, params, result):
        return {NEW_ROWS}
    if isinstance(result, CursorResult):
        rows: Any
        try:
            rows = result.inserted_primary_key_rows
        except InvalidRequestError:  # explicit RETURNING, or an executemany without keys
            rows = []
        pks = {tuple(row) for row in rows}
        if pks and all(None not in pk for pk in pks):
            return pks
    keys = shape.pk_keys
    if not keys or not params or any(p.get(k) is None for p in params for k in keys):
        return {NEW_ROWS}
    return {tuple(p[k] for k in keys) for p in params}
