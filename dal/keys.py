"""Cache keys: from a cached function's arguments, and from primary keys."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column

from .errors import UncacheableArgument

__all__ = ["ArgumentKey", "PrimaryKey"]

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
    """Normalizes a primary key value to the column's Python type.

    ``get("7")`` and a write that names ``7`` must meet on one key, or the write
    would leave ``"7"`` stale. Single-column keys are scalars; composite keys are
    tuples in primary-key column order.
    """

    __slots__ = ("_columns", "_label", "_types", "scalar_type")

    def __init__(self, columns: Sequence[Column[Any]]) -> None:
        self._columns = tuple(columns)
        self._types = tuple(_python_type(c) for c in columns)
        self._label = ", ".join(f"{c.table.name}.{c.name}" for c in columns)
        #: For a single-column key of a known type, values of exactly this type
        #: need no normalization (the hot path checks it inline).
        self.scalar_type: type | None = self._types[0] if len(columns) == 1 else None

    @property
    def width(self) -> int:
        return len(self._columns)

    def __call__(self, value: Any) -> Hashable:
        """The cache key for a user-supplied primary key."""
        if len(self._types) == 1:
            return self._coerce(value, self._types[0])
        if not isinstance(value, tuple) or len(value) != len(self._types):
            raise UncacheableArgument(
                f"primary key {value!r}: expected a tuple of {len(self._types)} values "
                f"for ({self._label})"
            )
        return tuple(self._coerce(v, t) for v, t in zip(value, self._types, strict=True))

    def from_row(self, values: tuple[Any, ...]) -> Hashable:
        """The cache key for primary-key column values in table order."""
        return self(values[0]) if len(values) == 1 else self(tuple(values))

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
