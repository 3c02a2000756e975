"""Find a PostgreSQL server for the integration tests, or start a throwaway one.

Discovery order (first that answers wins):

1. ``$DAL_TEST_POSTGRES_URL``: an existing database whose user may ``CREATE DATABASE``.
   When it is set, nothing else is tried: a server asked for by name that does not
   answer is an error, not a reason to test against some other server.
2. A server on 127.0.0.1:5432, user ``postgres``, trust authentication.
3. A throwaway cluster made with ``initdb`` and started with ``pg_ctl`` on a free port,
   stopped and deleted at the end of the session.

Nothing here runs on import.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from sqlalchemy.engine import URL, make_url

__all__ = [
    "ENV_URL",
    "LOCAL_URL",
    "PostgresNotFound",
    "ThrowawayCluster",
    "connect",
    "discover",
    "find_binaries",
    "free_port",
    "in_ci",
    "ping",
]

ENV_URL = "DAL_TEST_POSTGRES_URL"
LOCAL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 2
START_TIMEOUT = 60


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server could be found or started; the message says what was tried."""


def in_ci() -> bool:
    """Whether this run is CI, where a missing PostgreSQL is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _libpq_dsn(url: str | URL) -> str:
    """The libpq form of a SQLAlchemy URL (``postgresql+psycopg2://`` -> ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str | URL) -> psycopg2.extensions.connection:
    """A plain psycopg2 connection to ``url`` (SQLAlchemy or libpq form), in autocommit."""
    conn = psycopg2.connect(_libpq_dsn(url), connect_timeout=CONNECT_TIMEOUT)
    conn.autocommit = True
    return conn


def ping(url: str | URL) -> str | None:
    """None if ``url`` accepts a connection and a query, else the reason it did not."""
    try:
        conn = connect(url)
    except psycopg2.Error as exc:
        return str(exc).strip() or type(exc).__name__
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except psycopg2.Error as exc:
        return str(exc).strip() or type(exc).__name__
    finally:
        conn.close()
    return None


def find_binaries() -> tuple[Path, Path] | None:
    """Paths of ``initdb`` and ``pg_ctl``: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb), Path(pg_ctl)

    def major(bindir: str) -> int:
        version = Path(bindir).parent.name
        return int(version) if version.isdigit() else 0

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        initdb_path, pg_ctl_path = Path(bindir, "initdb"), Path(bindir, "pg_ctl")
        if initdb_path.is_file() and pg_ctl_path.is_file():
            return initdb_path, pg_ctl_path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unprivileged_user(names: tuple[str, ...] = ("postgres", "nobody")) -> str | None:
    """The OS user to run a throwaway server as: None unless we are root (servers refuse root)."""
    if os.geteuid() != 0:
        return None
    for name in names:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresNotFound(f"running as root and none of the users {names} exists")


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run as ``user`` (unchanged when ``user`` is None)."""
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


@dataclass
class ThrowawayCluster:
    """A private PostgreSQL cluster in a temporary directory, trust auth, user ``postgres``."""

    initdb: Path
    pg_ctl: Path
    port: int = field(default_factory=free_port)
    root: Path | None = None
    user: str | None = None
    running: bool = False
    #: More server options (``-c name=value ...``), e.g. for settings a test needs.
    options: str = ""

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = _as_user(self.user, list(args))
        # cwd: the unprivileged user may not be able to enter ours (e.g. /root).
        result = subprocess.run(
            cmd,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise PostgresNotFound(
                f"{shlex.join(cmd)} exited {result.returncode}:\n{output}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        if self.root is None:
            return ""
        log = self.root / "server.log"
        if not log.is_file():
            return ""
        lines = log.read_text(errors="replace").splitlines()[-20:]
        return "server log (last lines):\n" + "\n".join(lines)

    def start(self) -> None:
        """initdb, then ``pg_ctl start`` and wait until the server accepts connections."""
        self.user = _unprivileged_user()
        # Not under pytest's tmp_path: that lives in a root-only directory the
        # unprivileged server user could not enter.
        self.root = Path(tempfile.mkdtemp(prefix="dal-pg-"))
        try:
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._run(
                str(self.initdb),
                "-D", str(self.datadir),
                "-A", "trust",
                "-U", "postgres",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            server_options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                f"{self.options}"
            )
            # -l: the server must not inherit our pipes, or capturing pg_ctl's output
            # would wait for the server to exit.
            self._run(
                str(self.pg_ctl),
                "-D", str(self.datadir),
                "-o", server_options,
                "-l", str(self.root / "server.log"),
                "-t", str(START_TIMEOUT),
                "-w",
                "start",
            )  # fmt: skip
            self.running = True
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory; safe to call twice."""
        try:
            if self.running:
                self.running = False
                self._run(str(self.pg_ctl), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None


def discover() -> tuple[str, ThrowawayCluster | None]:
    """The admin URL of a usable server, and the cluster to stop later if one was started.

    Raises ``PostgresNotFound`` with what was tried when nothing works.
    """
    env_url = os.environ.get(ENV_URL)
    if env_url:
        url = make_url(env_url).set(drivername="postgresql+psycopg2")
        reason = ping(url)
        if reason is not None:
            raise PostgresNotFound(f"${ENV_URL} is set but does not answer: {reason}")
        return url.render_as_string(hide_password=False), None

    tried: list[str] = []
    reason = ping(LOCAL_URL)
    if reason is None:
        return LOCAL_URL, None
    local = make_url(LOCAL_URL)
    tried.append(f"{local.host}:{local.port} as {local.username}: {reason}")

    binaries = find_binaries()
    if binaries is None:
        tried.append(
            "throwaway cluster: initdb/pg_ctl not on PATH nor in /usr/lib/postgresql/*/bin"
        )
    else:
        cluster = ThrowawayCluster(*binaries)
        try:
            cluster.start()
        except (PostgresNotFound, OSError, subprocess.SubprocessError) as exc:
            tried.append(f"throwaway cluster: {exc}")
        else:
            reason = ping(cluster.url)
            if reason is None:
                return cluster.url, cluster
            cluster.stop()
            tried.append(f"throwaway cluster started but does not answer: {reason}")

    raise PostgresNotFound("\n".join(f"- {line}" for line in tried))
