"""Cache keys: from a cached function's arguments, from primary keys, and of tables.

Keys follow the database's equality: two values the database takes for one row (a
``CHAR(n)`` key with and without trailing spaces, ``'Ada'`` and ``'ada'`` under a
case-insensitive collation) are one cache key, or else every write drops them all.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column
from sqlalchemy.types import CHAR, NCHAR, String

from ..errors import UncacheableArgument

__all__ = ["ArgumentKey", "PrimaryKey", "fold_for", "table_key"]

_PLAIN = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentKey:
    """Makes one key from a call's arguments, so ``f(1)`` and ``f(x=1)`` share it.

    ``skip`` leading parameters (the Session a cached query receives) are not part
    of the key.
    """

    __slots__ = ("_n_plain", "_name", "_signature")

    def __init__(self, fn: Callable[..., Any], skip: int = 0) -> None:
        params = list(inspect.signature(fn).parameters.values())[skip:]
        self._name = getattr(fn, "__qualname__", repr(fn))
        self._signature = inspect.Signature(params)
        plain = all(p.kind in _PLAIN for p in params)
        # All-positional calls of a function without *args/**kwargs are already
        # normalized: their tuple is the key (the common, fast case).
        self._n_plain = len(params) if plain else -1

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        if not kwargs and len(args) == self._n_plain:
            key = args
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            # **kwargs become sorted pairs: a dict is unhashable and its order arbitrary.
            key = tuple(
                tuple(sorted(value.items()))
                if _is_var_kw(self._signature.parameters[name])
                else value
                for name, value in bound.arguments.items()
            )
        try:
            hash(key)
        except TypeError:
            raise self._unhashable(args, kwargs) from None
        return key

    def _unhashable(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> UncacheableArgument:
        bound = self._signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            try:
                hash(value)
            except TypeError:
                return UncacheableArgument(
                    f"{self._name}: argument {name!r} is an unhashable "
                    f"{type(value).__name__} and cannot be part of a cache key; "
                    "pass a tuple or frozenset instead"
                )
        return UncacheableArgument(f"{self._name}: the arguments cannot form a cache key")


def _is_var_kw(param: inspect.Parameter) -> bool:
    return param.kind is inspect.Parameter.VAR_KEYWORD


class PrimaryKey:
    """Normalizes a primary key value to the column's Python type and equality.

    ``get("7")`` and a write that names ``7`` must meet on one key, or the write
    would leave ``"7"`` stale; so must ``get("ab ")`` and ``get("ab")`` of a CHAR key.
    Single-column keys are scalars; composite keys are tuples in primary-key column
    order. ``dialect`` names the backend whose equality the keys follow; ``learn``,
    if given, returns the columns' collations from the database (MySQL) and is called
    once, at the first lookup.
    """

    __slots__ = (
        "_columns",
        "_folds",
        "_label",
        "_learn",
        "_types",
        "aliased",
        "scalar_type",
    )

    def __init__(
        self,
        columns: Sequence[Column[Any]],
        dialect: str = "sqlite",
        learn: Callable[[], Sequence[str | None]] | None = None,
    ) -> None:
        self._columns = tuple(columns)
        self._types = tuple(_python_type(c) for c in columns)
        self._label = ", ".join(f"{c.table.name}.{c.name}" for c in columns)
        strings = any(t is str for t in self._types)
        self._learn = learn if strings else None
        declared = [getattr(c.type, "collation", None) for c in columns]
        self._folds: tuple[Fold | None, ...] = tuple(
            fold_for(dialect, c, coll) if t is str else None
            for c, t, coll in zip(columns, self._types, declared, strict=True)
        )
        #: A key was looked up that the folds cannot place exactly (a non-ASCII key
        #: under a case-insensitive collation): from now on a write drops every row.
        self.aliased = False
        #: For a single-column key of a known type, values of exactly this type
        #: need no normalization (the hot path checks it inline).
        plain = len(columns) == 1 and self._folds[0] is None and self._learn is None
        self.scalar_type: type | None = self._types[0] if plain else None

    @property
    def width(self) -> int:
        return len(self._columns)

    def __call__(self, value: Any) -> Hashable:
        """The cache key for a user-supplied primary key."""
        if self._learn is not None:
            self._learn_collations()
        if len(self._types) == 1:
            return self._fold(self._coerce(value, self._types[0]), self._folds[0])
        if not isinstance(value, tuple) or len(value) != len(self._types):
            raise UncacheableArgument(
                f"primary key {value!r}: expected a tuple of {len(self._types)} values "
                f"for ({self._label})"
            )
        return tuple(
            self._fold(self._coerce(v, t), f)
            for v, t, f in zip(value, self._types, self._folds, strict=True)
        )

    def from_row(self, values: tuple[Any, ...]) -> Hashable:
        """The cache key for primary-key column values in table order."""
        return self(values[0]) if len(values) == 1 else self(tuple(values))

    def written(self, values: tuple[Any, ...]) -> Hashable:
        """The one cache key a write of these key values makes stale.

        Raises UncacheableArgument where other cached keys may name the same row
        (the caller then drops every row of the table).
        """
        if self._learn is not None:
            raise UncacheableArgument(f"collations of {self._label} not learned yet")
        if self.aliased or not all(
            f is None or f.exact(v) for v, f in zip(values, self._folds, strict=False)
        ):
            raise UncacheableArgument(f"{values!r} may equal other keys of {self._label}")
        return self.from_row(values)

    def exact(self, key: Hashable) -> bool:
        """Whether a row read for ``key`` carries a key that folds back to it."""
        values = (key,) if len(self._folds) == 1 else key
        return all(
            f is None or f.exact(v)
            for v, f in zip(values, self._folds, strict=False)  # type: ignore[call-overload]
        )

    def _fold(self, value: Hashable, fold: Fold | None) -> Hashable:
        if fold is None or not isinstance(value, str):
            return value
        if not fold.exact(value):
            self.aliased = True  # before the key is used: a racing write sees it
        return fold(value)

    @property
    def learning(self) -> bool:
        """Whether the columns' collations are still to be learned (``learn``)."""
        return self._learn is not None

    def learned(self, collations: Sequence[str | None]) -> None:
        """Fold keys by these collations of the key columns, from now on."""
        self._folds = tuple(
            fold_for("mysql", c, coll) if t is str else None
            for c, t, coll in zip(self._columns, self._types, collations, strict=True)
        )
        self._learn = None

    def _learn_collations(self) -> None:
        learn = self._learn
        if learn is not None:
            self.learned(list(learn()))

    def _coerce(self, value: Any, python_type: type | None) -> Hashable:
        if isinstance(value, bool) and python_type is not bool:
            raise self._bad(value)  # True == 1, but it is no row's key
        if python_type is str and not isinstance(value, str):
            raise self._bad(value)  # str() accepts anything: None would become "None"
        if python_type is None or isinstance(value, python_type):
            try:
                hash(value)
            except TypeError:
                raise self._bad(value) from None
            return value  # type: ignore[no-any-return]
        try:
            converted = python_type(value)
        except (TypeError, ValueError):
            raise self._bad(value) from None
        # Accept only lossless conversions ("7" -> 7, not 7.5 -> 7).
        if str(converted).lower() != str(value).lower():
            raise self._bad(value)
        return converted  # type: ignore[no-any-return]

    def _bad(self, value: Any) -> UncacheableArgument:
        return UncacheableArgument(
            f"primary key {value!r} ({type(value).__name__}) is not a valid value for {self._label}"
        )


def _python_type(column: Column[Any]) -> type | None:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    # Only types whose conversion is exact; other keys are used as given.
    return python_type if python_type in (int, str, uuid.UUID) else None


# -- equality of string keys ----------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Fold:
    """Maps a string key to one representative of the values the database finds equal.

    It only ever joins values the database surely finds equal; ``exact(v)`` says
    whether it also catches every value equal to ``v`` (else writes must drop more).
    """

    __slots__ = ("exact_for", "lower", "name", "rstrip")

    def __init__(self, name: str, *, rstrip: bool, lower: bool, exact_for: str) -> None:
        self.name = name
        self.rstrip = rstrip
        self.lower = lower
        #: "all" values, printable "ascii" values only, or "none"
        self.exact_for = exact_for

    def __call__(self, value: str) -> str:
        if self.lower:
            value = value.translate(_ASCII_LOWER)
        return value.rstrip(" ") if self.rstrip else value

    def exact(self, value: str) -> bool:
        if self.exact_for == "ascii":
            return value.isascii() and value.isprintable()
        return self.exact_for == "all"

    def __repr__(self) -> str:
        return f"<Fold {self.name}>"


#: A collation dal cannot emulate: keys as given, and every write drops the table's rows.
OPAQUE = Fold("opaque", rstrip=False, lower=False, exact_for="none")


def fold_for(dialect: str, column: Column[Any], collation: str | None) -> Fold | None:
    """How ``column``'s string keys compare on ``dialect``; None: as Python compares them."""
    char = isinstance(column.type, (CHAR, NCHAR))
    if dialect == "postgresql":
        # bpchar ignores trailing spaces; deterministic collations compare bytes.
        if collation is not None and collation.lower() not in ("c", "posix", "default"):
            return OPAQUE  # it may be a nondeterministic (ICU) collation
        return Fold("bpchar", rstrip=True, lower=False, exact_for="all") if char else None
    if dialect in ("mysql", "mariadb"):
        return _mysql_fold(collation) if isinstance(column.type, String) else None
    name = (collation or "binary").lower()  # SQLite's collations
    if name == "binary":
        return None
    if name == "nocase":  # ASCII letters only, exactly
        return Fold("nocase", rstrip=False, lower=True, exact_for="all")
    if name == "rtrim":
        return Fold("rtrim", rstrip=True, lower=False, exact_for="all")
    return OPAQUE


def _mysql_fold(collation: str | None) -> Fold:
    if not collation:
        return OPAQUE
    name = collation.lower()
    pad = "_0900_" not in name and "nopad" not in name and name != "binary"
    if name == "binary" or name.endswith("_bin"):
        return Fold(name, rstrip=pad, lower=False, exact_for="all")
    if "_ci" in name or "_cs" in name:
        # Printable ASCII compares by letter case (if _ci) and padding only; other
        # characters meet accents, expansions and ignorables no fold here can follow.
        return Fold(name, rstrip=pad, lower="_ci" in name, exact_for="ascii")
    return OPAQUE


# -- table names ----------------------------------------------------------------------------

_QUOTED_PART = re.compile(r'"((?:[^"]|"")*)"|`((?:[^`]|``)*)`|\[([^\]]*)\]|([^."`\[]+)')


def table_key(name: str) -> str:
    """The key under which the cache tracks a table: its bare name, case-folded.

    Databases fold unquoted names (PostgreSQL to lower case, MySQL with
    ``lower_case_table_names``, SQLite ignores case) and resolve a missing schema to a
    default one. This key joins every spelling the database may take for one table
    (``"public.users"``, ``USERS``, ``users``); it may also join two tables the
    database keeps apart (``a.users`` and ``b.users``), which only costs a reload.
    """
    if "." in name or '"' in name or "`" in name or "[" in name:
        parts = [next(g for g in m.groups() if g is not None) for m in _QUOTED_PART.finditer(name)]
        name = parts[-1] if parts else name
    return name.strip().casefold()
