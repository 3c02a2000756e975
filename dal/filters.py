"""What a repository query may say, checked before any SQL runs, and its cache key.

``find(User.balance > 5, order_by=User.balance.desc(), city="paris")`` mixes SQLAlchemy
column expressions with ``name=value`` filters. Every column they mention must be a
column of the repository's table: a cached result is dropped only by writes to that
table, so an expression that reads another table would go stale.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Column, ColumnElement, Result, Select, Table, func, literal, select
from sqlalchemy.sql import visitors

from .errors import InvalidArgument, UncacheableArgument, UnknownColumnError

__all__ = ["Filters", "Query"]


class Query(NamedTuple):
    """A checked find, count or exists: its clauses and its cache key."""

    call: str
    clauses: list[ColumnElement[bool]]
    ordering: list[ColumnElement[Any]]
    limit: int | None
    offset: int | None
    key: Hashable

    def statement(self, base: Select[Any], source: Any) -> Select[Any]:
        """The SELECT: ``base`` (columns or the ORM entity) for find, from ``source``."""
        if self.call == "count":
            return select(func.count()).select_from(source).where(*self.clauses)
        if self.call == "exists":
            return select(literal(1)).select_from(source).where(*self.clauses).limit(1)
        query = base.where(*self.clauses).order_by(*self.ordering)
        return query.limit(self.limit).offset(self.offset)

    def answer(self, result: Result[Any]) -> Any:
        """count's number or exists' truth from its result."""
        if self.call == "count":
            return result.scalar_one()
        return result.first() is not None


class Filters:
    """Checks and keys of one repository's where, order_by, limit and offset arguments."""

    def __init__(self, owner: str, model: Any, table: Table, columns: Mapping[str, Column[Any]]):
        self._owner = owner
        self._model = model.__name__
        self._table = table
        self._columns = columns

    def query(
        self,
        call: str,
        where: Sequence[Any],
        equals: Mapping[str, Any],
        order_by: Any = None,
        limit: Any = None,
        offset: Any = None,
    ) -> Query:
        """Check the arguments (UnknownColumnError, InvalidArgument) and key them."""
        clauses = self.where(where, equals, call)
        ordering = self.order(order_by)
        limit, offset = self.non_negative("limit", limit), self.non_negative("offset", offset)
        expressions = [*where, *(t for t in _terms(order_by) if not isinstance(t, str))]
        # name=value filters and column names key as themselves (the common, fast case).
        args = (
            call,
            tuple(sorted(equals.items())),
            self.key(expressions, call) if expressions else (),
            _names(order_by),
            limit,
            offset,
        )
        try:
            hash(args)
        except TypeError:
            raise self._unhashable(equals, call) from None
        return Query(call, clauses, ordering, limit, offset, args)

    def where(
        self, where: Sequence[Any], equals: Mapping[str, Any], call: str
    ) -> list[ColumnElement[bool]]:
        """The WHERE clauses of ``*where`` and ``**equals`` (None matches NULL)."""
        self.check_names(equals, call)
        clauses = [self._columns[name] == value for name, value in equals.items()]
        for clause in where:
            if not isinstance(clause, ColumnElement):
                raise InvalidArgument(
                    f"{self._owner}.{call}: {clause!r} is not a SQLAlchemy column expression "
                    f"(e.g. {self._model}.balance > 5); filter by value with name=value"
                )
            self._check_tables(clause, call)
            clauses.append(clause)
        return clauses

    def order(self, order_by: Any) -> list[ColumnElement[Any]]:
        """ORDER BY terms: column names, ``"-name"`` for descending, or expressions."""
        ordering: list[ColumnElement[Any]] = []
        for term in _terms(order_by):
            if isinstance(term, str):
                name = term.removeprefix("-")
                self.check_names({name: None}, "order_by")
                column = self._columns[name]
                ordering.append(column.desc() if term.startswith("-") else column)
            elif isinstance(term, ColumnElement):
                self._check_tables(term, "order_by")
                ordering.append(term)
            else:
                raise InvalidArgument(
                    f"{self._owner}.order_by takes column names ('-name' for descending) or "
                    f"column expressions ({self._model}.balance.desc()), not {term!r}"
                )
        return ordering

    def check_names(self, values: Mapping[str, Any], call: str) -> None:
        """UnknownColumnError unless every name in ``values`` is a column."""
        unknown = [name for name in values if name not in self._columns]
        if unknown:
            raise UnknownColumnError(
                f"{self._owner}.{call}: {self._model} has no column "
                f"{', '.join(map(repr, unknown))} (columns: {', '.join(self._columns)})"
            )

    def non_negative(self, name: str, value: Any) -> int | None:
        """``limit`` or ``offset``: None or a non-negative integer."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument(f"{name} must be a non-negative integer or None, not {value!r}")
        if value is not None and value < 0:
            raise InvalidArgument(f"{name} must be a non-negative integer or None, not {value!r}")
        return value

    def key(self, clauses: Sequence[ColumnElement[Any]], call: str) -> Hashable:
        """A hashable key for expressions: their structure and their bound values.

        SQLAlchemy's statement cache key is equal exactly when two expressions compile
        to the same SQL; the bound values (``> 5``, ``IN ('paris', 'rome')``) are added.
        """
        parts: list[Hashable] = []
        for clause in clauses:
            cache_key = clause._generate_cache_key()
            if cache_key is None:  # a construct SQLAlchemy cannot key: its SQL text
                compiled = clause.compile(compile_kwargs={"literal_binds": True})
                parts.append(str(compiled))
                continue
            values = tuple(_hashable(bind.effective_value) for bind in cache_key.bindparams)
            parts.append((cache_key.key, values))
        key = tuple(parts)
        try:
            hash(key)
        except TypeError:
            raise UncacheableArgument(
                f"{self._owner}.{call}: an expression compares with a value that cannot be "
                "part of a cache key; use hashable values (tuples, not lists, inside values)"
            ) from None
        return key

    def _check_tables(self, clause: ColumnElement[Any], call: str) -> None:
        for element in visitors.iterate(clause):
            if isinstance(element, Column) and element.table is not self._table:
                table = getattr(element.table, "name", element.table)
                raise UnknownColumnError(
                    f"{self._owner}.{call}: {table}.{element.name} is not a column of "
                    f"{self._table.name}; a repository's queries read its own table only "
                    "(for queries over several tables, use a cached_query with depends_on)"
                )

    def _unhashable(self, equals: Mapping[str, Any], call: str) -> Exception:
        for name, value in equals.items():
            try:
                hash(value)
            except TypeError:
                return UncacheableArgument(
                    f"{self._owner}.{call}: filter {name!r} is an unhashable "
                    f"{type(value).__name__}; filters compare for equality with one value"
                )
        return UncacheableArgument(f"{self._owner}.{call}: arguments cannot form a key")


def _terms(order_by: Any) -> list[Any]:
    if order_by is None:
        return []
    return list(order_by) if isinstance(order_by, (list, tuple)) else [order_by]


def _names(order_by: Any) -> Hashable:
    """The column names in ``order_by`` (expressions are keyed apart)."""
    return tuple(t if isinstance(t, str) else None for t in _terms(order_by))


def _hashable(value: Any) -> Any:
    # An expanding IN binds a list; as a tuple it can be part of a key.
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value
