"""``db.session()``: a transaction whose reads see its own writes and that loses none silently.

Two things are tracked per Session, on the connection its transaction holds:

- Writes. Any statement that writes (an ORM flush, Core, text, a repository write) marks
  the session as written, so dal's reads in it go through the session, not the cache.
  A write that is not part of a flush also expires the session's loaded objects: the
  ORM refreshes the objects a flush wrote itself, but not those a Core or text
  statement changed, and a caller holding one would read its old columns. Attributes
  with changes not yet flushed are kept (they are the caller's newest values).
- Failures. On PostgreSQL a failed statement aborts the transaction, and its COMMIT
  then quietly rolls back everything; MySQL rolls back a whole transaction on a
  deadlock. So a statement that failed inside a session (and reached the server) makes
  the session's commit raise, whichever backend, unless the failure was undone by
  rolling back a savepoint it happened in.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from .errors import DatabaseError
from .tracking.statements import writes_of

__all__ = ["SessionState", "expire_loaded", "state_of", "track", "wrote"]

_KEY = "dal_session"


class SessionState:
    """What dal knows about one ``db.session()`` Session's current transaction."""

    __slots__ = ("connection", "failures", "savepoints", "wrote")

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.wrote = False
        #: (savepoints open when it failed, the error the caller saw)
        self.failures: list[tuple[int, BaseException]] = []
        #: How many savepoints are open (SQLAlchemy's nest: the last opened ends first).
        self.savepoints = 0

    def reset(self) -> None:
        self.connection = None
        self.wrote = False
        self.failures.clear()
        self.savepoints = 0

    def check(self, depth: int = 0) -> None:
        """Raise if a statement failed inside the outermost ``depth`` savepoints' scope."""
        failed = [exc for at, exc in self.failures if at >= depth]
        if failed:
            raise DatabaseError(
                "a statement failed in this transaction and the error was caught, so its "
                f"writes cannot be trusted to commit ({_first_line(failed[0])}); nothing "
                "was committed. Run statements that may fail inside "
                "session.begin_nested() (or a nested db.session()) to recover from them"
            ) from failed[0]


def state_of(session: Session) -> SessionState | None:
    """The tracked state of a ``db.session()`` Session, or None for other sessions."""
    return session.info.get(_KEY)


def wrote(session: Session) -> bool:
    """Whether ``session`` has written, or holds changes a flush would write: reads in
    it must then go through it, not the cache."""
    state = session.info.get(_KEY)
    return bool(
        (state is not None and state.wrote) or session.new or session.dirty or session.deleted
    )


def track(
    sessions: sessionmaker[Session], engine: Engine, active: ContextVar[Session | None]
) -> None:
    """Track writes and failures of every Session ``sessions`` makes.

    ``active`` holds the context's open ``db.session()``. The statement events are the
    engine's: a listener on each session's Connection would cost more per session than
    these cost per statement (one context lookup for a statement of no session).
    """
    event.listen(sessions, "after_begin", _after_begin)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_transaction_end", _after_transaction_end)
    watcher = _Watcher(active)
    event.listen(engine, "after_cursor_execute", watcher.after_cursor_execute)
    event.listen(engine, "handle_error", watcher.handle_error)
    event.listen(engine, "savepoint", watcher.savepoint)
    event.listen(engine, "release_savepoint", watcher.release_savepoint)
    event.listen(engine, "rollback_savepoint", watcher.rollback_savepoint)


def expire_loaded(session: Session) -> None:
    """Expire every loaded object's attributes, except those with unflushed changes."""
    for obj in list(session.identity_map.values()):
        unchanged = inspect(obj).unmodified
        if unchanged:
            session.expire(obj, list(unchanged))


class _Watcher:
    """Engine events, applied to the statements of the context's ``db.session()``."""

    def __init__(self, active: ContextVar[Session | None]) -> None:
        self._active = active

    def _mine(self, conn: Any) -> tuple[Session, SessionState] | None:
        session = self._active.get()
        if session is None:
            return None
        state: SessionState | None = session.info.get(_KEY)
        if state is None or state.connection is None or state.connection is not conn:
            return None
        return session, state

    def after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        found = self._mine(conn)
        if found is None or not _writes(conn, statement, context):
            return
        session, state = found
        state.wrote = True
        if not session._flushing:  # a flush keeps the objects it wrote in step itself
            expire_loaded(session)

    def handle_error(self, context: ExceptionContext) -> None:
        found = self._mine(context.connection)
        if found is None:
            return
        if not isinstance(context.original_exception, context.dialect.loaded_dbapi.Error):
            return  # refused before it was sent (see errors.refused_value): nothing happened
        seen = context.sqlalchemy_exception or context.original_exception
        found[1].failures.append((found[1].savepoints, seen))

    def savepoint(self, conn: Any, name: str | None) -> None:
        found = self._mine(conn)
        if found is not None:
            found[1].savepoints += 1

    def release_savepoint(self, conn: Any, name: str, context: Any) -> None:
        found = self._mine(conn)
        if found is not None:
            found[1].savepoints = max(0, found[1].savepoints - 1)

    def rollback_savepoint(self, conn: Any, name: str, context: Any) -> None:
        found = self._mine(conn)
        if found is None:
            return
        session, state = found
        state.savepoints = depth = max(0, state.savepoints - 1)
        # What failed inside it is undone; objects may hold values of undone writes.
        state.failures[:] = [f for f in state.failures if f[0] <= depth]
        expire_loaded(session)


def _after_begin(session: Session, transaction: SessionTransaction, conn: Connection) -> None:
    session.info.setdefault(_KEY, SessionState()).connection = conn


def _before_commit(session: Session) -> None:
    state = state_of(session)
    if state is not None and not session.in_nested_transaction():
        state.check()


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    state = state_of(session)
    if state is not None and transaction.parent is None:
        state.reset()


def _writes(conn: Any, statement: str, context: Any) -> bool:
    # The tracker's analysis (its shape of a compiled statement is cached with it).
    compiled = getattr(context, "compiled", None)
    clause = statement if compiled is None else compiled.statement
    return bool(writes_of(clause, context, None, conn.dialect.name))


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
