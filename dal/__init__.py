"""dal: a caching data-access layer for SQLAlchemy that is never stale after a commit."""

from .aio import AsyncDatabase, AsyncRepository
from .database import Database
from .errors import (
    ConfigError,
    DalError,
    DatabaseClosed,
    DatabaseError,
    IntegrityError,
    InvalidArgument,
    NotFoundError,
    PoolTimeout,
    UncacheableArgument,
    UnknownColumnError,
)
from .query import cached_query
from .repository import Repository

__all__ = [
    "AsyncDatabase",
    "AsyncRepository",
    "ConfigError",
    "DalError",
    "Database",
    "DatabaseClosed",
    "DatabaseError",
    "IntegrityError",
    "InvalidArgument",
    "NotFoundError",
    "PoolTimeout",
    "Repository",
    "UncacheableArgument",
    "UnknownColumnError",
    "cached_query",
]
