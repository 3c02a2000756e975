"""``python -m dal``: install or remove the invalidation triggers from the command line.

    python -m dal install-triggers --db postgresql://app@db/app users orders
    python -m dal install-triggers --db "host=db user=app dbname=app" users
    python -m dal uninstall-triggers --db postgresql://app@db/app users

Name tables as the application's models do (``schema.table`` only if a model sets
a schema). ``--db`` takes a SQLAlchemy URL, a libpq URL or key/value string, and defaults to
``$DAL_DATABASE_URL``. Exit status: 0 done, 1 error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn
from sqlalchemy import URL, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .bus import triggers
from .config import resolve_url
from .errors import ConfigError, DalError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.db:
        parser.error("--db is required when $DAL_DATABASE_URL is not set")
    install = args.command == "install-triggers"
    try:
        url = resolve_url(_psycopg2(args.db))
        if url.get_backend_name() != "postgresql":
            raise ConfigError(
                f"triggers need a PostgreSQL database, not {url.get_backend_name()!r}"
            )
        engine = create_engine(url, poolclass=NullPool)
        try:
            covered = triggers.change(engine, args.tables, install=install, sender="cli")
        finally:
            engine.dispose()
    except (DalError, SQLAlchemyError) as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's wrapper
        print(f"dal: error: {str(cause).strip()}", file=sys.stderr)
        return 1
    done = "installed on" if install else "removed from"
    print(f"dal: triggers {done}: {', '.join(args.tables)}")
    print(f"dal: tables with triggers now: {', '.join(sorted(covered)) or '(none)'}")
    return 0


def _psycopg2(url: str) -> str | URL:
    """``--db`` as SQLAlchemy takes it: a libpq key/value string (``"host=db dbname=app"``)
    becomes a URL; ``postgresql://`` and ``postgres://`` URLs name psycopg2."""
    if "://" not in url and "=" in url:
        try:
            params = parse_dsn(url)
        except ProgrammingError as exc:
            raise ConfigError(f"not a libpq connection string: {exc}".strip()) from exc
        port = params.pop("port", None)
        if port is not None and not port.isdigit():
            raise ConfigError(f"port={port!r} in the libpq connection string is not a number")
        return URL.create(
            "postgresql+psycopg2",
            username=params.pop("user", None),
            password=params.pop("password", None),
            host=params.pop("host", None),
            port=int(port) if port else None,
            database=params.pop("dbname", None),
            query=params,  # sslmode, options, ...: passed to libpq as they are
        )
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dal",
        description="Manage the triggers that make writes by any client invalidate dal caches.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("install-triggers", "create (or replace) the triggers on these tables"),
        ("uninstall-triggers", "drop the triggers from these tables"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--db",
            default=os.environ.get("DAL_DATABASE_URL"),
            help="database URL (default: $DAL_DATABASE_URL)",
        )
        command.add_argument("tables", nargs="+", metavar="table", help="table or schema.table")
    return parser


if __name__ == "__main__":
    sys.exit(main())
