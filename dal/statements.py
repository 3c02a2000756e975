"""What a statement wrote: (table, primary keys) from Core DML, tables from text SQL.

Every write reaches the database through a Connection, whether it came from an ORM
flush, a Core statement or text, so this one analysis serves all of them. Where
the rows cannot be known exactly, the answer is the whole table (``None``), and
for text that names no known table, every table (``ALL``): over-invalidating
costs a reload, under-invalidating would serve stale data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.sql import operators
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    Grouping,
    TextClause,
)

__all__ = ["ALL", "NEW_ROWS", "Write", "writes_of"]

#: Table name standing for "every table": a write whose targets are unknown.
ALL = "*"


class _NewRows:
    def __repr__(self) -> str:
        return "NEW_ROWS"

    def __reduce__(self) -> str:
        return "NEW_ROWS_MARK"


NEW_ROWS_MARK = _NewRows()
#: Stands among primary keys for "rows were inserted whose keys are not known": an
#: insert can only make absences and queries stale, never a cached row.
NEW_ROWS: tuple[Any, ...] = (NEW_ROWS_MARK,)

#: (table name, primary-key tuples or None for any row, "insert"/"update"/"delete"/"other")
Write = tuple[str, "set[tuple[Any, ...]] | None", str]

_WRITE_WORDS = re.compile(
    r"\b(insert|update|delete|merge|upsert|replace|truncate|drop|alter|copy|call)\b", re.I
)


def writes_of(
    statement: object, result: Any, known_tables: Callable[[], Iterable[str]]
) -> list[Write]:
    """The writes ``statement`` made, as seen in an ``after_execute`` event.

    ``known_tables`` is called only for text SQL, to find the tables it names.
    """
    if isinstance(statement, UpdateBase):
        return [_dml(statement, result)]
    if isinstance(statement, (str, TextClause)):
        sql = statement if isinstance(statement, str) else statement.text
        return _text(sql, known_tables)
    if isinstance(statement, ExecutableDDLElement):
        target = getattr(statement, "element", None)
        return [(_name(target), None, "other")] if isinstance(target, Table) else []
    return []


def _name(table: Any) -> str:
    return str(getattr(table, "fullname", None) or table.name)


def _text(sql: str, known_tables: Callable[[], Iterable[str]]) -> list[Write]:
    if not _WRITE_WORDS.search(sql):
        return []
    named = [t for t in known_tables() if _mentions(sql, t)]
    return [(t, None, "other") for t in named] or [(ALL, None, "other")]


def _mentions(sql: str, table: str) -> bool:
    bare = table.rsplit(".", 1)[-1]
    return re.search(rf"(?<![\w$]){re.escape(bare)}(?![\w$])", sql, re.I) is not None


def _dml(statement: UpdateBase, result: Any) -> Write:
    table = statement.table
    name = _name(table)
    if isinstance(statement, Insert):
        return (name, _inserted(statement, table, result), "insert")
    op = "delete" if isinstance(statement, Delete) else "update"
    context = getattr(result, "context", None)
    compiled = getattr(context, "compiled", None)
    if compiled is None or not isinstance(statement, (Update, Delete)):
        return (name, None, op)
    # The compiled form may come from the statement cache: read its own statement
    # and bind names, with this execution's parameters.
    compiled_statement = compiled.statement
    params: Sequence[Mapping[str, Any]] = getattr(context, "compiled_parameters", ())
    pk_columns = list(table.primary_key.columns) if isinstance(table, Table) else []
    if not pk_columns:
        return (name, None, op)
    where = getattr(compiled_statement, "whereclause", None)
    alternatives = _match(where, {c.key for c in pk_columns}) if where is not None else None
    if alternatives is None:
        return (name, None, op)
    bind_names: Mapping[BindParameter[Any], str] = compiled.bind_names
    used = {bind_names.get(b) for alt in alternatives for b, _ in alt.values()}
    if op == "update" and any(c.key in p and c.key not in used for p in params for c in pk_columns):
        return (name, None, op)  # the update moves a row to another primary key
    pks = _evaluate(alternatives, [c.key for c in pk_columns], bind_names, params)
    return (name, pks, op)


# One alternative: pk column key -> (bind parameter, expanding?)
_Alt = dict[str, tuple[BindParameter[Any], bool]]


def _match(clause: Any, pk_keys: set[str]) -> list[_Alt] | None:
    """Alternatives whose union covers the rows ``clause`` selects.

    An alternative may bind only some columns of a composite key; ``_evaluate``
    accepts the answer only if every alternative binds them all.
    """
    while isinstance(clause, Grouping):
        clause = clause.element
    if isinstance(clause, BinaryExpression):
        alt = _compare(clause, pk_keys)
        return [alt] if alt else None
    if not isinstance(clause, BooleanClauseList):
        return None
    children = [_match(child, pk_keys) for child in clause.clauses]
    if clause.operator is operators.or_:
        if any(c is None or any(set(alt) != pk_keys for alt in c) for c in children):
            return None
        return [alt for c in children if c is not None for alt in c]
    if clause.operator is operators.and_:
        # An AND selects a subset of what any one conjunct selects: merge the
        # single-alternative conjuncts, or else keep one complete OR.
        merged: _Alt = {}
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


def _compare(clause: BinaryExpression[Any], pk_keys: set[str]) -> _Alt | None:
    left, right = clause.left, clause.right
    if isinstance(left, BindParameter) and isinstance(right, Column):
        left, right = right, left
    if not (isinstance(left, Column) and left.primary_key and left.key in pk_keys):
        return None
    if not isinstance(right, BindParameter):
        return None
    if clause.operator is operators.eq:
        return {left.key: (right, False)}
    if clause.operator is operators.in_op:
        return {left.key: (right, True)}
    return None


def _evaluate(
    alternatives: list[_Alt],
    pk_keys: list[str],
    bind_names: Mapping[BindParameter[Any], str],
    params: Sequence[Mapping[str, Any]],
) -> set[tuple[Any, ...]] | None:
    pks: set[tuple[Any, ...]] = set()
    for param_set in params:
        for alt in alternatives:
            if set(alt) != set(pk_keys):
                return None
            columns = []
            for key in pk_keys:
                bind, expanding = alt[key]
                name = bind_names.get(bind)
                if name is None or name not in param_set:
                    return None
                value = param_set[name]
                columns.append(list(value) if expanding else [value])
            pks.update(itertools.product(*columns))
    return pks


def _inserted(statement: Insert, table: Any, result: Any) -> set[tuple[Any, ...]] | None:
    # An upsert may change an existing row (and SQLite reports no key for it).
    if getattr(statement, "_post_values_clause", None) is not None:
        return None
    if statement.select is not None:
        return {NEW_ROWS}
    if isinstance(result, CursorResult):
        rows: Any
        try:
            rows = result.inserted_primary_key_rows
        except InvalidRequestError:
            rows = []
        pks = {tuple(row) for row in rows}
        if pks and all(None not in pk for pk in pks):
            return pks
    context = getattr(result, "context", None)
    params = getattr(context, "compiled_parameters", None) or []
    keys = [c.key for c in table.primary_key.columns] if isinstance(table, Table) else []
    if not keys or not params or any(p.get(k) is None for p in params for k in keys):
        return {NEW_ROWS}
    return {tuple(p[k] for k in keys) for p in params}
