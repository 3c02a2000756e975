"""Find a MariaDB/MySQL server for the integration tests, or start a throwaway one.

Discovery order (first that answers wins):

1. ``$DAL_TEST_MYSQL_URL``: a server whose user may ``CREATE DATABASE``. When it is
   set, nothing else is tried: a server asked for by name that does not answer is an
   error, not a reason to test against some other server. The driver it names
   (``mysql+mysqldb://...``) is the one the tests' URLs use; PyMySQL by default.
2. A server on 127.0.0.1:3306, user ``root``, no password.
3. A throwaway server: ``mariadb-install-db`` into a temporary directory, then
   ``mariadbd`` on a free port, stopped and deleted at the end of the session.

Nothing here runs on import.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from tests.pgserver import _as_user, _unprivileged_user, free_port, in_ci

__all__ = [
    "ENV_URL",
    "LOCAL_URL",
    "MysqlNotFound",
    "ThrowawayServer",
    "connect",
    "discover",
    "driver",
    "find_binaries",
    "in_ci",
    "ping",
]

ENV_URL = "DAL_TEST_MYSQL_URL"
LOCAL_URL = "mysql+pymysql://root@127.0.0.1:3306/"
CONNECT_TIMEOUT = 2
START_TIMEOUT = 60


class MysqlNotFound(RuntimeError):
    """No MariaDB/MySQL server could be found or started; the message says what was tried."""


def connect(url: str | URL, **kwargs: Any) -> Any:
    """A plain PyMySQL connection to ``url`` (a SQLAlchemy URL), in autocommit."""
    import pymysql

    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.database or None,
        connect_timeout=CONNECT_TIMEOUT,
        autocommit=True,
        **kwargs,
    )


def ping(url: str | URL) -> str | None:
    """None if ``url`` accepts a connection and a query, else the reason it did not."""
    import pymysql

    parsed = make_url(url)
    try:
        conn = connect(parsed)
    except (pymysql.Error, OSError) as exc:
        return f"{parsed.host}:{parsed.port or 3306}: {str(exc).strip() or type(exc).__name__}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.Error as exc:
        return str(exc).strip() or type(exc).__name__
    finally:
        conn.close()
    return None


def find_binaries() -> tuple[Path, Path] | None:
    """Paths of ``mariadb-install-db`` and ``mariadbd`` (PATH, /usr/sbin, /usr/bin)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    install_db = shutil.which("mariadb-install-db", path=search)
    server = shutil.which("mariadbd", path=search)
    if install_db and server:
        return Path(install_db), Path(server)
    return None


@dataclass
class ThrowawayServer:
    """A private MariaDB server in a temporary directory: root without a password."""

    install_db: Path
    mariadbd: Path
    port: int = field(default_factory=free_port)
    root: Path | None = None
    user: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/"

    def _log_tail(self) -> str:
        log = None if self.root is None else self.root / "server.log"
        if log is None or not log.is_file():
            return ""
        lines = log.read_text(errors="replace").splitlines()[-20:]
        return "server log (last lines):\n" + "\n".join(lines)

    def start(self) -> None:
        """Make a data directory, start ``mariadbd`` on it, wait until it answers."""
        self.user = _unprivileged_user(("mysql", "nobody"))
        # Not under pytest's tmp_path: the unprivileged server user must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="dal-mysql-"))
        try:
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
            datadir = self.root / "data"
            cmd = _as_user(
                self.user,
                [
                    str(self.install_db),
                    "--no-defaults",
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
            )
            result = subprocess.run(
                cmd,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()[-2000:]
                raise MysqlNotFound(f"{shlex.join(cmd)} exited {result.returncode}:\n{output}")
            server = _as_user(
                self.user,
                [
                    str(self.mariadbd),
                    "--no-defaults",
                    f"--datadir={datadir}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.root / 'mysqld.sock'}",
                    f"--pid-file={self.root / 'mysqld.pid'}",
                    f"--log-error={self.root / 'server.log'}",
                    "--skip-name-resolve",
                    "--innodb-flush-log-at-trx-commit=0",
                ],
            )
            # Its own session: a Ctrl-C meant for pytest must not reach it first.
            self.process = subprocess.Popen(
                server,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        # There is no event for "accepts connections": between pings, wait on the process
        # itself, which returns at once if mariadbd exits.
        deadline = time.monotonic() + START_TIMEOUT
        reason = ping(self.url)
        while reason is not None:
            assert self.process is not None
            try:
                self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            else:
                raise MysqlNotFound(
                    f"mariadbd exited {self.process.returncode}: {reason}\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise MysqlNotFound(f"mariadbd did not answer in {START_TIMEOUT}s: {reason}")
            reason = ping(self.url)

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        try:
            process, self.process = self.process, None
            if process is not None and process.poll() is None:
                # SIGTERM is mariadbd's normal shutdown; the process is our own child
                # (runuser forwards the signal to it).
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None


def driver() -> str:
    """The driver the tests' MySQL URLs use: the one ``$DAL_TEST_MYSQL_URL`` names, else PyMySQL."""
    env_url = os.environ.get(ENV_URL)
    return (make_url(env_url).drivername.partition("+")[2] if env_url else "") or "pymysql"


def discover() -> tuple[str, ThrowawayServer | None]:
    """The admin URL of a usable server, and the server to stop later if one was started.

    Raises ``MysqlNotFound`` with what was tried when nothing works.
    """
    env_url = os.environ.get(ENV_URL)
    if env_url:
        url = make_url(env_url).set(drivername="mysql+pymysql")
        reason = ping(url)
        if reason is not None:
            raise MysqlNotFound(f"${ENV_URL} is set but does not answer: {reason}")
        return url.render_as_string(hide_password=False), None

    tried: list[str] = []
    reason = ping(LOCAL_URL)
    if reason is None:
        return LOCAL_URL, None
    tried.append(f"127.0.0.1:3306 as root: {reason}")

    binaries = find_binaries()
    if binaries is None:
        tried.append("throwaway server: mariadb-install-db/mariadbd not on PATH nor in /usr/sbin")
    else:
        server = ThrowawayServer(*binaries)
        try:
            server.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            tried.append(f"throwaway server: {exc}")
        else:
            return server.url, server
    raise MysqlNotFound("\n".join(f"- {line}" for line in tried))
