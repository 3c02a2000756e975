"""Write tracking: statements -> pending changes -> invalidation after the real commit.

SQLAlchemy's ``ConnectionEvents.commit`` fires *before* COMMIT is sent; invalidating
there lets a reader refill the old row while the COMMIT is in flight. The point that
is truly after the commit is the return of the dialect's ``do_commit``, which every
COMMIT passes through whatever the driver (a sync DBAPI connection, an async
adapter's transaction) and whoever sends it (a Connection, an ORM Session, the
pool's reset on return). ``Tracker.hook`` wraps the engine's own dialect instance
there; a transaction's pending changes live in the pool's per-connection ``info``
dict, which lasts exactly as long as the DBAPI connection.

A transaction can also end without ``do_commit``: a statement in autocommit, or the
RELEASE of an outermost SQLite savepoint. After every statement, and at
``do_rollback``, a connection that has pending writes but no open transaction has
committed them, and they are applied then. Only the rollback of an open transaction
discards them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy

from ..errors import ConfigError
from ..store.cache import Store
from .relations import Relations, lookup_connection
from .statements import ALL, Write, failed_writes_of, table_of, writes_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import PoolProxiedConnection

    from ..drivers import Driver

__all__ = ["PENDING", "Pending", "Tracker"]

#: Changes of one transaction: table -> primary-key tuples, or None for any row.
Pending = dict[str, "set[tuple[Any, ...]] | None"]

#: The key of a connection's pending changes in the pool's per-connection ``info``.
PENDING = "dal.pending"

#: Changes of a prepared two-phase transaction, already announced, awaiting COMMIT PREPARED.
PREPARED = "dal.prepared"

#: Past this many keys of one table in one transaction, invalidate the whole table.
MAX_KEYS_PER_TABLE = 10_000


class Tracker:
    """Collects each connection's writes and applies them when they commit."""

    def __init__(self, store: Store, driver: Driver) -> None:
        self.store = store
        self._in_transaction = driver.in_transaction
        self._commits_when_read = driver.commits_when_read
        self._rollback_when_idle = driver.rollback_when_idle
        self._is_async = driver.is_async
        #: Called with (dbapi connection, changes) inside the transaction, just before
        #: COMMIT (the cross-process bus sends its NOTIFY there).
        self.before_commit: Callable[[Any, Pending], None] | None = None
        #: Called with the changes after they were applied locally.
        self.after_apply: Callable[[Pending], None] | None = None
        #: Foreign keys, views and triggers: what else the database changes on a write.
        self.relations = Relations()

    def watch(self, table: Table) -> None:
        """Learn the foreign-key actions of ``table``'s MetaData (all its tables)."""
        self.relations.watch(table)

    # -- SQLAlchemy events --------------------------------------------------------

    def after_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        """``ConnectionEvents.after_execute``: note what a statement wrote."""
        context = getattr(result, "context", None)
        writes = writes_of(clauseelement, context, result, conn.dialect.name)
        if writes:
            writes = self.relations.expand(writes, lookup_connection(conn))
        if writes:
            compiled = getattr(context, "compiled", None)
            table = table_of(compiled) if compiled is not None else None
            if table is not None:
                self.watch(table)
            pooled = conn.connection
            self._record(pooled, writes)
            # An autocommit write that returns rows on SQLite was read to its end in
            # after_cursor_execute: it has committed by now, like any other.
            self._settle(pooled)

    def after_cursor_execute(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        many: Any,
    ) -> None:
        """``ConnectionEvents.after_cursor_execute``: driver-level SQL, and transaction ends.

        ``exec_driver_sql`` (and SQLAlchemy's own SAVEPOINT statements) reach only this
        event, not ``after_execute``.
        """
        pooled = conn.connection
        compiled = getattr(context, "compiled", None)
        writes = None
        if compiled is None:
            writes = writes_of(statement, None, None, conn.dialect.name)
            if writes:
                writes = self.relations.expand(writes, lookup_connection(conn))
            if writes:
                self._record(pooled, writes)
        if (
            self._commits_when_read
            and cursor.description is not None
            and not self._in_transaction(pooled.dbapi_connection)
            and (writes if compiled is None else _may_write(context, statement, conn))
        ):
            # SQLite commits an autocommit write with RETURNING only once its rows are
            # read, which may be never or much later. Read them all now, before the
            # result is built on the cursor: the write commits here and is settled
            # below (or in after_execute), and the caller reads the buffered rows.
            context.cursor_fetch_strategy = FullyBufferedCursorFetchStrategy(
                cursor, cursor.description, cursor.fetchall()
            )
        if pooled.info.get(PENDING):
            self._settle(pooled)

    def handle_error(self, context: Any) -> None:
        """``ConnectionEvents.handle_error``: a failed write may have written some rows."""
        try:
            pooled = context.connection.connection
            pooled.info  # noqa: B018  (a connection without per-connection state: none)
        except Exception:
            return
        options = context.connection.get_execution_options()
        if (
            context.is_disconnect
            and context.execution_context is not None
            and options.get("isolation_level") != "AUTOCOMMIT"
        ):
            # A statement met a dead connection inside its transaction: the server
            # rolled that back, so nothing the transaction wrote committed.
            pooled.info.pop(PENDING, None)
            return
        writes = failed_writes_of(context.execution_context, context.dialect.name)
        if writes:
            # The transaction may be aborted: no catalog questions on it.
            writes = self.relations.expand(writes, None)
        if writes:
            self._record(pooled, writes)
            # The statement's own error is what the caller gets: a publish that fails
            # too (on a connection the error closed) must not replace it.
            self._settle(pooled, quiet=True)

    def pending(self, conn: Connection) -> bool:
        """Whether ``conn``'s transaction has written something not yet applied."""
        return bool(conn.info.get(PENDING))

    def _record(self, pooled: PoolProxiedConnection, writes: list[Write]) -> None:
        info = pooled.info
        pending: Pending = info.get(PENDING) or {}
        for table, pks, _ in writes:
            _merge(pending, table, pks)
        info[PENDING] = pending

    def _settle(self, pooled: PoolProxiedConnection, quiet: bool = False) -> None:
        """Apply pending writes if the transaction they belong to has ended (committed)."""
        dbapi = pooled.dbapi_connection
        if not self._in_transaction(dbapi):
            pending = pooled.info.pop(PENDING, None)
            if pending:
                self._ended(dbapi, pending, quiet)

    def _ended(self, dbapi: Any, pending: Pending, quiet: bool = False) -> None:
        """Writes that committed on their own: announce them, and apply them whatever."""
        try:
            self.publish(dbapi, pending)
        except Exception:
            if not quiet:
                raise
        finally:
            self.commit(pending)

    # -- the seam: the dialect's do_commit / do_rollback ----------------------------

    def hook(self, dialect: Dialect) -> None:
        """Wrap ``dialect.do_commit``/``do_rollback`` (this engine's instance only).

        Connections, sessions and the pool's reset on return all call these with
        the pool's proxied connection, so one wrapper serves every driver.
        """
        real_commit, real_rollback = dialect.do_commit, dialect.do_rollback
        rollback_when_idle, in_transaction = self._rollback_when_idle, self._in_transaction
        commit_writes = _to_its_end(real_commit) if self._is_async else real_commit

        def do_commit(connection: PoolProxiedConnection) -> None:
            state = _state(connection)
            pending = None if state is None else state.pop(PENDING, None)
            if not pending:
                real_commit(connection)
                return
            try:
                self.publish(connection.dbapi_connection, pending)
                commit_writes(connection)
            finally:
                # Only now has the database answered. Also when COMMIT (or the publish
                # before it) failed: whether it took effect may be unknown, and a
                # needless invalidation only costs a reload.
                self.commit(pending)

        def do_rollback(connection: PoolProxiedConnection) -> None:
            state = _state(connection)
            pending = None if state is None else state.pop(PENDING, None)
            if state is not None:
                state.pop(PREPARED, None)  # a prepared transaction rolled back on reset
            try:
                if pending and not self._in_transaction(connection.dbapi_connection):
                    # Nothing is open to roll back: the writes ended on their own
                    # (autocommit, RELEASE of an outermost savepoint) and committed.
                    self._ended(connection.dbapi_connection, pending)
            finally:
                if rollback_when_idle or in_transaction(connection.dbapi_connection):
                    real_rollback(connection)

        # Instance attributes shadow the class's methods for this dialect alone.
        dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]
        self._hook_twophase(dialect)

    def _hook_twophase(self, dialect: Dialect) -> None:
        """Wrap the two-phase methods: psycopg2's use the driver's ``tpc_*`` directly.

        Neither ``do_commit`` nor the cursor events see those. At PREPARE the
        changes are set aside under ``PREPARED``, where no statement's settling
        takes them for committed; COMMIT PREPARED applies them, ROLLBACK PREPARED
        drops them. Committing another connection's prepared transaction
        (``recover=True``) changed rows dal cannot know: everything is invalidated.
        With the bus, two-phase transactions are refused at their start.
        """
        real_begin, real_prepare = dialect.do_begin_twophase, dialect.do_prepare_twophase
        real_commit, real_rollback = dialect.do_commit_twophase, dialect.do_rollback_twophase

        def do_begin_twophase(connection: Connection, xid: Any) -> None:
            if self.before_commit is not None:
                # PostgreSQL refuses to PREPARE a transaction that ran NOTIFY, and a
                # NOTIFY sent after COMMIT PREPARED is lost if this process dies in
                # between: other processes would serve the old rows for good.
                raise ConfigError(
                    "two-phase commit cannot be used with invalidation='postgres':"
                    " its changes could not be announced with the transaction"
                )
            real_begin(connection, xid)

        def do_prepare_twophase(connection: Connection, xid: Any) -> None:
            info = connection.connection.info
            pending = info.pop(PENDING, None)
            if pending:
                info[PREPARED] = pending
            real_prepare(connection, xid)

        def do_commit_twophase(
            connection: Connection, xid: Any, is_prepared: bool = True, recover: bool = False
        ) -> None:
            info = connection.connection.info
            pending, prepared = info.pop(PENDING, None), info.pop(PREPARED, None)
            if recover:
                # Another connection's transaction: its writes are unknown here. The
                # driver rolls back whatever this connection had open first.
                everything: Pending = {ALL: None}
                try:
                    real_commit(connection, xid, is_prepared, recover)
                except BaseException:
                    self.commit(everything)
                    raise
                # Committed: the connection is idle, and the bus announces it alone.
                self._ended(connection.connection.dbapi_connection, everything)
                return
            changes: Pending = prepared or {}
            try:
                if pending:  # one-phase commit of a transaction never prepared
                    for table, pks in pending.items():
                        _merge(changes, table, pks)
                real_commit(connection, xid, is_prepared, recover)
            finally:
                # As in do_commit: also when the outcome is unknown.
                if changes:
                    self.commit(changes)

        def do_rollback_twophase(
            connection: Connection, xid: Any, is_prepared: bool = True, recover: bool = False
        ) -> None:
            info = connection.connection.info
            info.pop(PENDING, None)
            info.pop(PREPARED, None)
            real_rollback(connection, xid, is_prepared, recover)

        dialect.do_begin_twophase = do_begin_twophase  # type: ignore[method-assign]
        dialect.do_prepare_twophase = do_prepare_twophase  # type: ignore[method-assign]
        dialect.do_commit_twophase = do_commit_twophase  # type: ignore[method-assign]
        dialect.do_rollback_twophase = do_rollback_twophase  # type: ignore[method-assign]

    def publish(self, dbapi: Any, pending: Pending) -> None:
        """Hand ``pending`` to ``before_commit``, inside the transaction about to commit."""
        if self.before_commit is not None:
            self.before_commit(dbapi, pending)

    def commit(self, pending: Pending) -> None:
        """Apply a committed transaction's changes to this process's cache."""
        self.store.invalidate(pending)
        if self.after_apply is not None:
            self.after_apply(pending)


def _to_its_end(
    commit: Callable[[PoolProxiedConnection], None],
) -> Callable[[PoolProxiedConnection], None]:
    """An asyncio adapter's ``do_commit`` that a cancelled task still awaits to its end.

    A COMMIT its caller stopped waiting for may still take effect in the server
    (asyncpg's cancel request arrives after it, aiosqlite's thread and MySQL go on
    regardless). Invalidating at the cancellation would let a reader cache the old
    row before the COMMIT lands, for good. So the COMMIT runs in a task of its own
    and a cancellation is raised once the database has answered, invalidation first.
    """
    from sqlalchemy.util import await_only

    from ..aio.greenlets import run_sync  # here: dal.aio imports this module
    from ..aio.tasks import detachable, finish

    def do_commit(connection: PoolProxiedConnection) -> None:
        own = detachable(connection.dbapi_connection)
        await_only(finish(run_sync(commit, connection), own=own))

    return do_commit


def _state(connection: PoolProxiedConnection) -> dict[Any, Any] | None:
    """The connection's ``info``; None for the pool's first-connect stand-in.

    SQLAlchemy's ``_AdhocProxiedConnection``, passed to ``do_rollback`` once the
    dialect has initialized on a new connection, raises NotImplementedError on
    ``.info``; nothing has been tracked on it yet.
    """
    try:
        return connection.info
    except NotImplementedError:
        return None


def _may_write(context: Any, statement: str, conn: Connection) -> bool:
    """Whether a compiled statement that returns rows may have written something."""
    if context.isinsert or context.isupdate or context.isdelete:
        return True
    return bool(context.is_text and writes_of(statement, None, None, conn.dialect.name))


def _merge(pending: Pending, table: str, pks: set[tuple[Any, ...]] | None) -> None:
    if table in pending:
        known = pending[table]
        if known is None:
            return
        if pks is None or len(known) + len(pks) > MAX_KEYS_PER_TABLE:
            pending[table] = None
        else:
            known.update(pks)
    else:
        pending[table] = None if pks is None or len(pks) > MAX_KEYS_PER_TABLE else set(pks)
