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
from typing import Any, Generic, TypeVar

from sqlalchemy import ARRAY, Column, and_, any_, bindparam, cast, select
from sqlalchemy.engine import Dialect

__all__ = ["PkRead", "PkRun"]

Processor = Callable[[Any], Any] | None

R = TypeVar("R")


#: The most keys one ``IN`` list carries; more are read in several queries.
MAX_KEYS = 1024


class PkRead:
    """``SELECT <columns> FROM <table> WHERE <pk> = ...``, compiled once for one dialect.

    For single-column keys also a read of many: on PostgreSQL ``... WHERE <pk> =
    ANY(CAST(<array> AS <type>[]))``, one statement for any number of keys; elsewhere
    ``... WHERE <pk> IN (...)``, compiled once for each power-of-two list size (a
    shorter list repeats its last key). Padding costs PostgreSQL a larger plan for
    every call (64 values planned for 50 keys measured 1.6x the time of ANY).
    """

    def __init__(
        self, dialect: Dialect, columns: Sequence[Column[Any]], pk_columns: Sequence[Column[Any]]
    ) -> None:
        names = [f"pk{i}" for i in range(len(pk_columns))]
        statement = select(*columns).where(
            and_(*(c == bindparam(n) for c, n in zip(pk_columns, names, strict=True)))
        )
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._columns = list(columns)
        self._pk_columns = list(pk_columns)
        self._many: dict[int, tuple[str, bool]] = {}
        order = compiled.positiontup if compiled.positional else None
        self._order: list[int] | None = None if order is None else [names.index(n) for n in order]
        self._names = names
        self._binds: list[Processor] = [
            c.type.dialect_impl(dialect).bind_processor(dialect) for c in pk_columns
        ]
        self._types = [c.type.dialect_impl(dialect) for c in columns]
        self._dialect = dialect
        self._array = dialect.name == "postgresql"
        # Result processors depend on the driver's type codes: known after a first run.
        self._results: list[Processor] | None = None

    def run(self, cursor: Any, pk: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The row with primary key ``pk`` (values in column order), or None."""
        cursor.execute(self.sql, self.parameters(pk))
        row = cursor.fetchone()
        return None if row is None else self._convert(cursor.description, [row])[0]

    def parameters(self, pk: tuple[Any, ...]) -> Any:
        """The statement's parameters for ``pk``, as the driver takes them."""
        values = [v if p is None else p(v) for v, p in zip(pk, self._binds, strict=True)]
        if self._order is None:
            return dict(zip(self._names, values, strict=True))
        return tuple(values[i] for i in self._order)

    def row(self, rows: Sequence[Any], description: Any) -> tuple[Any, ...] | None:
        """``run``'s answer from the rows a driver fetched (and their description)."""
        if not rows:
            return None
        return self._convert(description, rows[:1])[0]

    def run_many(self, cursor: Any, pks: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows whose single-column primary key is in ``pks`` (at most MAX_KEYS)."""
        bind = self._binds[0]
        values = [v if bind is None else bind(v) for v in pks]
        if self._array:
            sql, positional = self._array_sql()
            cursor.execute(sql, (values,) if positional else {"keys": values})
            return self._convert(cursor.description, cursor.fetchall())
        size = 1 << max(len(pks) - 1, 0).bit_length()
        sql, positional = self._many_sql(size)
        values += values[-1:] * (size - len(values))
        if positional:
            cursor.execute(sql, tuple(values))
        else:
            cursor.execute(sql, {f"k{i}": v for i, v in enumerate(values)})
        return self._convert(cursor.description, cursor.fetchall())

    def _many_sql(self, size: int) -> tuple[str, bool]:
        found = self._many.get(size)
        if found is None:
            column = self._pk_columns[0]
            # Bind names k0..kN in order, so a positional driver takes the values as listed.
            statement = select(*self._columns).where(
                column.in_([bindparam(f"k{i}") for i in range(size)])
            )
            compiled = statement.compile(dialect=self._dialect)
            found = self._many[size] = (str(compiled), bool(compiled.positional))
        return found

    def _array_sql(self) -> tuple[str, bool]:
        found = self._many.get(0)
        if found is None:
            column = self._pk_columns[0]
            keys = cast(bindparam("keys"), ARRAY(column.type))
            compiled = (
                select(*self._columns).where(column == any_(keys)).compile(dialect=self._dialect)
            )
            # asyncpg's dialect is positional ($1), psycopg2's named.
            found = self._many[0] = (str(compiled), bool(compiled.positional))
        return found

    def _convert(self, description: Any, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        processors = self._results
        if processors is None:
            processors = self._results = [
                t.result_processor(self._dialect, d[1])
                for t, d in zip(self._types, description, strict=True)
            ]
        if not any(processors):
            return [tuple(row) for row in rows]
        return [
            tuple(v if p is None else p(v) for v, p in zip(row, processors, strict=True))
            for row in rows
        ]


class PkRun(Generic[R]):
    """One read of ``reader`` by the key ``values``, its row made into ``make(row)``.

    Called on a DBAPI cursor, it runs the statement there; a driver that fetches
    by itself (``dal.aio.direct``) sends ``reader.sql`` with ``parameters()`` and
    hands the rows to ``answer``.
    """

    __slots__ = ("make", "reader", "values")

    def __init__(
        self, reader: PkRead, values: tuple[Any, ...], make: Callable[[tuple[Any, ...]], R]
    ) -> None:
        self.reader, self.values, self.make = reader, values, make

    def __call__(self, cursor: Any) -> R | None:
        row = self.reader.run(cursor, self.values)
        return None if row is None else self.make(row)

    def parameters(self) -> Any:
        return self.reader.parameters(self.values)

    def answer(self, rows: Sequence[Any], description: Any) -> R | None:
        row = self.reader.row(rows, description)
        return None if row is None else self.make(row)
