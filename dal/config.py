"""Settings of a ``Database``: validated once, frozen, readable in a repr."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from . import drivers
from .errors import ConfigError

__all__ = ["DEFAULT_SQLITE_PATH", "SUPPORTED", "SUPPORTED_ASYNC", "Settings"]

#: The embedded default when neither a URL nor ``$DAL_DATABASE_URL`` is given.
DEFAULT_SQLITE_PATH = "dal.sqlite3"

#: backend -> the drivers dal supports for it, the default first (``dal.drivers``).
SUPPORTED = drivers.supported()
#: The same for ``AsyncDatabase``: asyncio drivers only.
SUPPORTED_ASYNC = drivers.supported(is_async=True)

INVALIDATION_MODES = (None, "postgres")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a ``Database`` was configured with."""

    url: URL
    pool_size: int = 5
    max_overflow: int | None = 10
    #: None: wait for a free connection as long as it takes.
    pool_timeout: float | None = 30.0
    pool_recycle: float | None = 1800
    pool_pre_ping: bool = False
    cache_size: int = 10_000
    cache_bytes: int | None = None
    ttl: float | None = 300.0
    invalidation: str | None = None

    def __post_init__(self) -> None:
        _integer("pool_size", self.pool_size, minimum=1)
        if self.max_overflow is not None:
            _integer("max_overflow", self.max_overflow, minimum=0)
        # Both are waits handed to threading: past TIMEOUT_MAX it raises OverflowError.
        if self.pool_timeout is not None:  # None: wait as long as it takes
            _number("pool_timeout", self.pool_timeout, maximum=threading.TIMEOUT_MAX)
        if self.pool_recycle is not None:
            _number("pool_recycle", self.pool_recycle, maximum=threading.TIMEOUT_MAX)
        if not isinstance(self.pool_pre_ping, bool):
            raise ConfigError(f"pool_pre_ping must be True or False, not {self.pool_pre_ping!r}")
        _integer("cache_size", self.cache_size, minimum=1)
        if self.cache_bytes is not None:
            _integer("cache_bytes", self.cache_bytes, minimum=1)
        if self.ttl is not None:
            _number("ttl", self.ttl)
        if self.invalidation not in INVALIDATION_MODES:
            raise ConfigError(
                f"invalidation={self.invalidation!r} is not one of {INVALIDATION_MODES!r}"
            )
        if self.invalidation == "postgres" and self.backend != "postgresql":
            raise ConfigError(
                f"invalidation='postgres' needs a PostgreSQL database, not {self.backend!r}: "
                "the bus is PostgreSQL's LISTEN/NOTIFY"
            )

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @property
    def pool_limits(self) -> str:
        """The pool's limits, for error messages."""
        timeout = "None" if self.pool_timeout is None else f"{self.pool_timeout:g}s"
        return (
            f"pool_size={self.pool_size}, max_overflow={self.max_overflow}, pool_timeout={timeout}"
        )

    def redact(self, text: str) -> str:
        """``text`` with the URL's password masked, in every form a driver may echo it."""
        password = self.url.password
        if not password:
            return text
        forms = {password, quote(password, safe=""), quote_plus(password)}
        for form in sorted(forms, key=len, reverse=True):  # one form may contain another
            text = text.replace(form, "***")
        return text

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={self.url.render_as_string(hide_password=True)!r}"
            if f.name == "url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({fields})"


def resolve_url(url: str | URL | None, *, is_async: bool = False) -> URL:
    """The URL to use: the argument, else ``$DAL_DATABASE_URL``, else the embedded file.

    ``is_async``: for ``AsyncDatabase``, whose URLs name (or default to) asyncio drivers.
    """
    table = SUPPORTED_ASYNC if is_async else SUPPORTED
    if url is None:
        url = os.environ.get("DAL_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        shown = _without_password(str(url))
        raise ConfigError(f"not a database URL: {shown!r} ({_without_password(str(exc))})") from exc
    if parsed.drivername.partition("+")[0] == "postgres":  # as Heroku and others hand out
        parsed = parsed.set(drivername="postgresql" + parsed.drivername[len("postgres") :])
    backend = parsed.get_backend_name()
    if backend not in table:
        raise ConfigError(_unsupported(parsed, backend, table))
    if "+" not in parsed.drivername:  # no driver named: the default one
        parsed = parsed.set(drivername=f"{backend}+{table[backend][0]}")
    driver = parsed.get_driver_name()  # loads the dialect: only for known backends
    if driver not in table[backend]:
        raise ConfigError(_unsupported(parsed, f"{backend}+{driver}", table))
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            "in-memory SQLite gives every pooled connection its own empty database; "
            "give a file path, e.g. sqlite:///app.db"
        )
    return parsed


def _unsupported(url: URL, what: str, table: dict[str, tuple[str, ...]]) -> str:
    supported = ", ".join(f"{b}+{d}" for b, names in table.items() for d in names)
    shown = url.render_as_string(hide_password=True)
    who = "dal.AsyncDatabase" if table is SUPPORTED_ASYNC else "dal.Database"
    return f"unsupported database {what!r} in {shown!r}; {who} supports {supported}"


#: ``scheme://user:password@``: the password part of a URL that did not parse.
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*(@)")


def _without_password(text: str) -> str:
    return _PASSWORD.sub(r"\1***\2", text)


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum of {minimum}")


def _number(name: str, value: Any, maximum: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
    if not value > 0:
        raise ConfigError(f"{name}={value} must be greater than 0 (None turns it off)")
    if value > maximum:
        raise ConfigError(
            f"{name}={value} is above the limit of {maximum:.0f} seconds (threading.TIMEOUT_MAX)"
        )
