"""Primary-key reads on the pool's own DBAPI connections: the cheap miss path.

A miss by primary key is the hottest read. SQLAlchemy Core spends most of a SQLite
read, and half of a PostgreSQL one, in Python around the driver call (execution
context, result object, event dispatch). This runs the same compiled SELECT on a
pooled DBAPI cursor and converts values with the column types' own bind and result
processors, so it returns what Core would. It only reads, so no write tracking is
needed around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, and_, bindparam, select
from sqlalchemy.engine import Dialect

__all__ = ["PkRead"]

Processor = Callable[[Any], Any] | None


class PkRead:
    """``SELECT <columns> FROM <table> WHERE <pk> = ...``, compiled once for one dialect."""

    def __init__(
        self, dialect: Dialect, columns: Sequence[Column[Any]], pk_columns: Sequence[Column[Any]]
    ) -> None:
        names = [f"pk{i}" for i in range(len(pk_columns))]
        statement = select(*columns).where(
            and_(*(c == bindparam(n) for c, n in zip(pk_columns, names, strict=True)))
        )
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        order = compiled.positiontup if compiled.positional else None
        self._order: list[int] | None = None if order is None else [names.index(n) for n in order]
        self._names = names
        self._binds: list[Processor] = [
            c.type.dialect_impl(dialect).bind_processor(dialect) for c in pk_columns
        ]
        self._types = [c.type.dialect_impl(dialect) for c in columns]
        self._dialect = dialect
        # Result processors depend on the driver's type codes: known after a first run.
        self._results: list[Processor] | None = None

    def run(self, cursor: Any, pk: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The row with primary key ``pk`` (values in column order), or None."""
        values = [v if p is None else p(v) for v, p in zip(pk, self._binds, strict=True)]
        if self._order is None:
            cursor.execute(self.sql, dict(zip(self._names, values, strict=True)))
        else:
            cursor.execute(self.sql, tuple(values[i] for i in self._order))
        row = cursor.fetchone()
        if row is None:
            return None
        processors = self._results
        if processors is None:
            processors = self._results = [
                t.result_processor(self._dialect, d[1])
                for t, d in zip(self._types, cursor.description, strict=True)
            ]
        if not any(processors):
            return tuple(row)
        return tuple(v if p is None else p(v) for v, p in zip(row, processors, strict=True))
