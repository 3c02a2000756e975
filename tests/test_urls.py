"""URLs as people have them: ``postgres://`` from hosting providers, libpq key/value
strings for the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

import dal
from dal.__main__ import _psycopg2
from dal.config import resolve_url


@pytest.mark.parametrize("scheme", ["postgres", "postgres+psycopg2"])
def test_postgres_urls_are_postgresql_with_psycopg2(scheme: str) -> None:
    url = resolve_url(f"{scheme}://app:secret@db.example.com:5433/app?sslmode=require")

    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.database, url.password) == (
        "db.example.com",
        5433,
        "app",
        "secret",
    )
    assert url.query == {"sslmode": "require"}


def test_a_postgres_url_with_another_driver_is_still_refused() -> None:
    with pytest.raises(dal.ConfigError, match="postgresql\\+asyncpg"):
        resolve_url("postgres+asyncpg://app@db/app")


def test_libpq_key_value_strings_become_urls() -> None:
    url = _psycopg2(
        "host=db.example.com port=5433 user=app password='s p' dbname=app sslmode=require"
    )

    assert not isinstance(url, str)
    assert (url.drivername, url.username, url.password) == ("postgresql+psycopg2", "app", "s p")
    assert (url.host, url.port, url.database) == ("db.example.com", 5433, "app")
    assert url.query == {"sslmode": "require"}
    assert _psycopg2("postgresql://app@db/app") == "postgresql+psycopg2://app@db/app"
    with pytest.raises(dal.ConfigError, match="libpq"):
        _psycopg2("host=db dbname='unterminated")
    with pytest.raises(dal.ConfigError, match="port"):
        _psycopg2("host=db port=five")


def test_the_command_line_takes_a_libpq_key_value_string(pg_db: dal.Database) -> None:
    url = make_url(pg_db.settings.url)
    dsn = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    if url.password:
        dsn += f" password={url.password}"

    for command in ("install-triggers", "uninstall-triggers"):
        done = subprocess.run(
            [sys.executable, "-m", "dal", command, "--db", dsn, "orders"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "orders" in done.stdout
    assert "tables with triggers now: (none)" in done.stdout
