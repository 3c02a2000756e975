"""The SQLAlchemy engine and its pool, set up for one driver entry of ``dal.drivers``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from ..config import Settings
from ..tracking.invalidation import Tracker
from . import Driver, adapters, lookup

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["PoolCounters", "create", "create_async", "driver_of"]


class PoolCounters:
    """Pool events counted for ``Database.stats()``."""

    __slots__ = ("connects", "disconnects", "retries", "timeouts")

    def __init__(self) -> None:
        self.connects = self.disconnects = self.retries = self.timeouts = 0

    def on_connect(self, dbapi_connection: Any, record: Any) -> None:
        self.connects += 1

    def on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        self.disconnects += 1


def driver_of(settings: Settings) -> Driver:
    """The driver entry for the settings' URL (``resolve_url`` admitted only known ones)."""
    entry = lookup(settings.backend, settings.url.get_driver_name())
    assert entry is not None, settings.url.drivername
    return entry


def _options(settings: Settings, driver: Driver) -> dict[str, Any]:
    """``create_engine`` arguments from the settings, the same for sync and async."""
    return {
        "pool_size": settings.pool_size,
        "max_overflow": -1 if settings.max_overflow is None else settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": -1 if settings.pool_recycle is None else settings.pool_recycle,
        "pool_pre_ping": settings.pool_pre_ping,
        "connect_args": driver.connect_args(settings),
    }


def create(settings: Settings, driver: Driver, tracker: Tracker, counters: PoolCounters) -> Engine:
    """An engine whose commits, whatever sends them, are reported to ``tracker``."""
    driver.check()
    engine = create_engine(settings.url, poolclass=QueuePool, **_options(settings, driver))
    _instrument(engine, driver, tracker, counters)
    return engine


def create_async(
    settings: Settings, driver: Driver, tracker: Tracker, counters: PoolCounters
) -> AsyncEngine:
    """``create`` for an asyncio driver: the listeners go on its ``sync_engine``."""
    driver.check()
    from sqlalchemy.ext.asyncio import create_async_engine

    from ..aio.direct import Pool  # here: dal.aio imports this module

    engine = create_async_engine(settings.url, poolclass=Pool, **_options(settings, driver))
    adapters.translate_connect_errors(engine.sync_engine.dialect)
    adapters.translate_protocol_errors(engine.sync_engine.dialect)
    _instrument(engine.sync_engine, driver, tracker, counters)
    return engine


def _instrument(engine: Engine, driver: Driver, tracker: Tracker, counters: PoolCounters) -> None:
    tracker.hook(engine.dialect)
    event.listen(engine, "connect", counters.on_connect)
    event.listen(engine, "invalidate", counters.on_invalidate)
    if driver.on_connect is not None:
        event.listen(engine, "connect", driver.on_connect)
    event.listen(engine, "after_execute", tracker.after_execute)
    event.listen(engine, "after_cursor_execute", tracker.after_cursor_execute)
    event.listen(engine, "handle_error", tracker.handle_error)
    if driver.setup is not None:
        driver.setup(engine)  # after dal's own listeners: they run first
