"""Errors raised by dal.

Every error is a ``DalError``; each also subclasses the builtin a caller would
catch without knowing dal, and chains the SQLAlchemy or driver error as
``__cause__``::

    DalError
     ├── ConfigError          (ValueError)    bad URL, driver, pool or cache setting
     ├── InvalidArgument      (ValueError)    an argument dal cannot use (limit, order_by, NUL, ...)
     │    └── UnknownColumnError              a filter or value names no column of the model
     ├── UncacheableArgument  (TypeError)     an argument cannot be part of a cache key
     ├── NotFoundError        (LookupError)   update() of a primary key with no row
     ├── DatabaseClosed       (RuntimeError)  the Database was closed
     ├── PoolTimeout          (TimeoutError)  the pool stayed exhausted past pool_timeout
     └── DatabaseError                        any other failure reported by the database
          └── IntegrityError  (ValueError)    a constraint rejected a write
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext

__all__ = [
    "ConfigError",
    "DalError",
    "DatabaseClosed",
    "DatabaseError",
    "IntegrityError",
    "InvalidArgument",
    "NotFoundError",
    "PoolTimeout",
    "UncacheableArgument",
    "UnknownColumnError",
    "refused_value",
]


class DalError(Exception):
    """Base of every error dal raises."""


class ConfigError(DalError, ValueError):
    """A setting given to ``Database`` (or a decorator) is invalid."""


class InvalidArgument(DalError, ValueError):
    """An argument has a value dal cannot use."""


class UnknownColumnError(InvalidArgument):
    """A filter, ordering or value names a column the model does not have."""


class UncacheableArgument(DalError, TypeError):
    """An argument cannot be made part of a cache key (unhashable, or not a valid key)."""


class NotFoundError(DalError, LookupError):
    """A write addressed a primary key that has no row."""


class DatabaseClosed(DalError, RuntimeError):
    """The ``Database`` was closed; it serves no further calls."""


class PoolTimeout(DalError, TimeoutError):
    """No pooled connection became free within ``pool_timeout``."""


class DatabaseError(DalError):
    """The database reported an error; the driver's error is the ``__cause__``."""


class IntegrityError(DatabaseError, ValueError):
    """A constraint (unique, foreign key, not null, check) rejected a write."""


def translate(
    exc: sa_exc.SQLAlchemyError, pool_limits: str, redact: Callable[[str], str] = str
) -> DalError:
    """The dal error for a SQLAlchemy error (the caller raises it ``from exc``).

    ``redact`` removes secrets (the URL's password) that a driver may echo.
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return PoolTimeout(f"connection pool exhausted: {pool_limits}; no connection was free")
    if isinstance(exc, sa_exc.IntegrityError):
        return IntegrityError(redact(str(exc.orig)))
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return DatabaseError(redact(str(exc.orig).strip()))
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, ValueError):
        # The driver refused a value before sending it (psycopg2: a NUL character).
        return InvalidArgument(redact(f"the database driver refused a value: {exc.orig}"))
    return DatabaseError(redact(str(exc)))


def refused_value(context: ExceptionContext) -> sa_exc.StatementError | None:
    """``ConnectionEvents.handle_error``: wrap a driver's ValueError like its other errors.

    psycopg2 raises a plain ValueError for a value it cannot send (a NUL character);
    SQLAlchemy passes that through unwrapped, and it would leave dal untranslated.
    """
    exc = context.original_exception
    # dal's own errors (a refusal raised inside the dialect) reach the caller as they are.
    if (
        context.sqlalchemy_exception is None
        and isinstance(exc, ValueError)
        and not isinstance(exc, DalError)
    ):
        return sa_exc.StatementError(
            str(exc), context.statement, context.parameters, exc, ismulti=None
        )
    return None
