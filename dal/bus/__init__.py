"""Cross-process invalidation over PostgreSQL LISTEN/NOTIFY.

Publishing: the tracker calls ``Bus.publish`` inside each writing transaction,
just before COMMIT, and it sends one NOTIFY there, so PostgreSQL delivers it
exactly when the transaction commits and never after a rollback.

Listening: a daemon thread holds its own connection outside the pool, waits on its
socket and applies every other ``Database``'s messages as a local commit would.
While that connection is not listening, messages may be missed, so caching is
paused (cleared, reads go to the database) until LISTEN is in place again.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL

from ..store.cache import Store
from ..store.keys import table_key
from ..tracking.invalidation import Pending
from ..tracking.statements import ALL
from . import triggers
from .messages import CHANNEL, BadMessage, Message, decode, encode
from .senders import PSYCOPG2, Aborted, Sender

__all__ = ["Bus", "connector"]

_log = logging.getLogger("dal.bus")

_NOTIFY = "SELECT pg_notify(%(channel)s, %(payload)s)"

#: The store's pause reason while the listener is not listening.
PAUSED = "bus"

#: Passed to the listener's connection unless the URL says otherwise: find a dead
#: peer in about 25 s even when no packet would tell (a cable, a failover).
_CONNECT_DEFAULTS = {
    "application_name": "dal listener",
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def connector(url: URL) -> Callable[[], Any]:
    """Opens a plain psycopg2 connection to ``url``, whatever its driver (asyncpg too),
    with the arguments psycopg2's dialect makes of it."""
    import psycopg2

    url = url.set(drivername="postgresql+psycopg2")
    args, kwargs = url.get_dialect()().create_connect_args(url)
    options = {**_CONNECT_DEFAULTS, **kwargs}

    def connect() -> Any:
        return psycopg2.connect(*args, **options)

    return connect


class Bus:
    """One ``Database``'s publisher and listener; ``stats()`` reports on both."""

    #: Bounds of the reconnect backoff, in seconds (doubling from the first).
    backoff_min = 0.05
    backoff_max = 5.0
    #: How long ``stop`` waits for the thread (a connect may be in progress).
    stop_timeout = 15.0

    def __init__(
        self,
        connect: Callable[[], Any],
        store: Store,
        redact: Callable[[str], str] = str,
        notify: Sender = PSYCOPG2,
    ) -> None:
        #: Marks this Database's messages, so its listener skips only those.
        self.sender = uuid.uuid4().hex
        #: Called in the listener thread with each message applied (benchmarks, tests).
        self.observer: Callable[[Message], None] | None = None
        self._connect = connect
        #: How NOTIFY is sent on a writer's connection (its driver's way).
        self._notify = notify
        self._store = store
        self._redact = redact  # the URL's password, if a driver message quotes it
        #: Names (no schema) of tables with dal's triggers: these get a checked NOTIFY.
        self._covered: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._conn: Any = None
        self._connecting = False  # the listener thread is inside a connect
        self._ever_listened = False
        #: Whether this outage was logged as a WARNING (its end is then logged as INFO).
        self._warned = False
        self.state = "stopped"
        self.backend_pid: int | None = None
        self.reconnects = self.errors = 0
        self.sent = self.sent_table_wide = 0
        self.received = self.applied = self.skipped_own = 0
        self.last_lag_ms: float | None = None
        self.last_error: str | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Pause caching and start listening in the background; returns at once.

        Caching starts paused, and resumes when LISTEN is in place: a write committed
        before would reach no one. So an unreachable server costs the caller no wait
        (a connect can take ``connect_timeout``), only uncached reads meanwhile.
        """
        self._store.pause(PAUSED)
        self._stopping.clear()
        self._listening.clear()
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, name="dal-bus-listener", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float | None = None) -> bool:
        """Wait until LISTEN is in place (caching on); False if ``timeout`` passed first."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        """Stop the listener and close its connection; caching stays paused."""
        self._store.pause(PAUSED)
        self._listening.clear()
        self._stopping.set()
        self._wake()
        thread, self._thread = self._thread, None
        # A connect in progress cannot be interrupted (it may take connect_timeout):
        # leave it, the thread closes what it opens once it sees _stopping.
        if thread is not None and thread is not threading.current_thread() and not self._connecting:
            thread.join(self.stop_timeout)
        self._wake_r.close()
        self._wake_w.close()
        self.state = "stopped"

    @property
    def covered(self) -> frozenset[str]:
        return self._covered

    @covered.setter
    def covered(self, tables: frozenset[str]) -> None:
        self._covered = tables

    # -- publishing (called in the writing thread, inside its transaction) ---------------

    def publish(self, dbapi_connection: Any, pending: Pending) -> None:
        """Send ``pending`` as one NOTIFY in the transaction about to commit.

        Tables that seem to have triggers are left to them, but only if the
        transaction itself still sees the triggers (``triggers.CHECKED_NOTIFY``):
        a stale view of which tables have them must never lose a message.
        """
        encoded = encode(self.sender, pending)
        if encoded is None or self._notify.aborted(dbapi_connection):
            return  # an aborted transaction's COMMIT rolls back: nothing to announce
        payload, table_wide = encoded
        try:
            sent, table_wide = self._send(dbapi_connection, pending, payload, table_wide)
        except Aborted:
            return  # as above, found out by the NOTIFY itself
        if sent:
            with self._lock:
                self.sent += 1
                self.sent_table_wide += table_wide

    def _send(
        self, dbapi_connection: Any, pending: Pending, payload: str, table_wide: bool
    ) -> tuple[bool, bool]:
        """Run the NOTIFY; whether one was sent, and whether it is table-wide."""
        covered = self._covered
        checked = [] if ALL in pending else [t for t in pending if _bare(t) in covered]
        fetch = self._notify.fetch
        if not checked:
            fetch(dbapi_connection, _NOTIFY, {"channel": CHANNEL, "payload": payload})
            sent = True
        else:
            rest = encode(self.sender, {t: v for t, v in pending.items() if t not in checked})
            row = fetch(
                dbapi_connection,
                triggers.CHECKED_NOTIFY,
                {
                    "channel": CHANNEL,
                    "tables": [triggers.regclass(t) for t in checked],
                    "triggers": list(triggers.TRIGGERS),
                    "expected": len(checked) * len(triggers.TRIGGERS),
                    "without": None if rest is None else rest[0],
                    "full": payload,
                },
            )
            sent = row is not None  # none: the triggers announce everything
            if row is not None and not row[1]:
                table_wide = rest is not None and rest[1]
        return sent, table_wide

    # -- listening (the listener thread) ---------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_min
        while not self._stopping.is_set():
            conn = self._open()
            if conn is None:
                # Event.wait, not sleep: stop() interrupts the backoff.
                self._stopping.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_min
            try:
                self._listen(conn)
            except Exception as exc:  # any failure: messages may have been lost
                self._fault(exc)
            finally:
                self._conn = self.backend_pid = None
                _close_quietly(conn)
        self.state = "stopped"

    def _open(self) -> Any:
        """A listening connection, with caching resumed; None if it failed."""
        conn = None
        try:
            self._connecting = True
            try:
                conn = self._connect()
            finally:
                self._connecting = False
            conn.autocommit = True
            # Before LISTEN: a message that arrives during the queries below must stay.
            conn.notifies = collections.deque()
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
                covered = triggers.covered(cursor)
        except Exception as exc:  # unreachable, refused, bad password: retry
            self._error(exc)
            if not self._stopping.is_set():  # an abandoned connect after close(): quiet
                self._warn("cannot listen")
            if conn is not None:
                _close_quietly(conn)
            return None
        if self._stopping.is_set():
            _close_quietly(conn)
            return None
        self._conn, self.backend_pid = conn, conn.info.backend_pid
        self._covered = covered
        # LISTEN is in place: every later commit reaches us. A load that read the
        # database before it may still hold a lease, so revoke all before resuming.
        self._store.clear()
        self._store.resume(PAUSED)
        if self._ever_listened:
            self.reconnects += 1
        self._ever_listened = True
        self.state = "listening"
        self._listening.set()
        if self._warned:
            self._warned = False
            _log.info(
                "listener is back on %s (backend %s): caching resumes", CHANNEL, self.backend_pid
            )
        else:
            _log.debug("listening on %s (backend %s)", CHANNEL, self.backend_pid)
        return conn

    def _listen(self, conn: Any) -> None:
        """Apply messages until the connection fails or ``stop`` wakes us."""
        wake = self._wake_r
        notifies: collections.deque[Any] = conn.notifies
        while not self._stopping.is_set():
            readable, _, _ = select.select([conn, wake], [], [])
            if wake in readable:
                wake.recv(64)
                continue
            conn.poll()  # raises when the server has closed the connection
            while notifies:
                self._receive(conn, notifies.popleft().payload)

    def _receive(self, conn: Any, payload: str) -> None:
        self.received += 1
        try:
            message = decode(payload)
        except BadMessage as exc:
            # Something on our channel that we cannot read: it may have meant anything.
            self._error(exc)
            self._store.clear()
            _log.warning("unreadable message on %s, cache cleared: %s", CHANNEL, exc)
            return
        if message.triggers:
            with conn.cursor() as cursor:
                self._covered = triggers.covered(cursor)
        if message.sender == self.sender:
            self.skipped_own += 1
            return
        if not message.changes:
            return
        if message.sent_at is not None:
            self.last_lag_ms = max(0.0, (time.time() - message.sent_at) * 1000)
        self._apply(message.changes)
        self.applied += 1
        observer = self.observer
        if observer is not None:
            observer(message)

    def _apply(self, changes: dict[str, set[tuple[Any, ...]] | None]) -> None:
        """Invalidate as a local commit would, under this process's table keys.

        The writer (or a trigger) may name "public.users" or "Users" for "users".
        """
        if ALL in changes:
            self._store.clear()
            return
        targets: dict[str, set[tuple[Any, ...]] | None] = {}
        for name, pks in changes.items():
            _merge(targets, table_key(name), pks)
        self._store.invalidate(targets)

    def _fault(self, exc: BaseException) -> None:
        if self._stopping.is_set():
            return
        # Messages sent from now until LISTEN is back are lost: stop trusting the cache.
        self._store.pause(PAUSED)
        self._listening.clear()
        self.state = "reconnecting"
        self._error(exc)
        self._warn("listener lost its connection")

    def _warn(self, what: str) -> None:
        """Once per outage: WARNING with the error; later failed retries at DEBUG."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        _log.log(
            level,
            "%s (%s); cache cleared, caching paused until LISTEN is back",
            what,
            self.last_error,
        )

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = self._redact(f"{type(exc).__name__}: {str(exc).strip()}")

    def _wake(self) -> None:
        # Already closed, or its buffer is full: either way the thread wakes.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- fork ------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child (called by its Database, after its store is reset): the
        thread is gone and the connection is the parent's."""
        if self._thread is None:
            return
        # Closing the inherited connection would end the parent's session with it.
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = self._thread = None
        # A new identity: the parent must not skip the child's messages as its own.
        self.sender = uuid.uuid4().hex
        # Locks and events may have been held by threads that the child does not have.
        self._lock = threading.Lock()
        self._stopping, self._listening = threading.Event(), threading.Event()
        self._wake_r.close()
        self._wake_w.close()
        self._wake_r, self._wake_w = socket.socketpair()
        self._ever_listened = False
        self.start()

    # -- stats -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "channel": CHANNEL,
            "sender": self.sender,
            "backend_pid": self.backend_pid,
            "reconnects": self.reconnects,
            "messages_sent": self.sent,
            "messages_sent_table_wide": self.sent_table_wide,
            "messages_received": self.received,
            "messages_applied": self.applied,
            "messages_skipped_own": self.skipped_own,
            "last_lag_ms": self.last_lag_ms,
            "errors": self.errors,
            "last_error": self.last_error,
            "tables_with_triggers": sorted(self._covered),
        }


def _bare(table: str) -> str:
    return table.rsplit(".", 1)[-1]


def _merge(
    targets: dict[str, set[tuple[Any, ...]] | None], table: str, pks: set[tuple[Any, ...]] | None
) -> None:
    known = targets.get(table, set())
    targets[table] = None if known is None or pks is None else known | pks


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # it is being discarded either way
        conn.close()


# Connections a forked child inherited: kept open, closing them would end the
# parent's sessions on the same sockets.
_INHERITED: list[Any] = []
