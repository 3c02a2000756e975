"""Async cached queries: ``dal.cached_query(async_db, ...)`` on an ``async def``.

The same keys, namespace, freezing and invalidation as a CachedQuery
(``dal.query.CachedQueryBase``); calls are awaited, and a miss loads through
``dal.aio.loads``: one load per arguments, shared with every waiting coroutine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ..frozen import thaw
from ..query import CachedQueryBase
from . import loads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .database import AsyncDatabase

__all__ = ["AsyncCachedQuery"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncCachedQuery(CachedQueryBase[P, R]):
    """A cached async function: await it as the original minus its AsyncSession argument.

    ``invalidate``, ``cache_clear`` and ``cache_info`` are plain calls; ``refresh``,
    ``set`` and ``uncached`` are awaited.
    """

    _db: AsyncDatabase
    _fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]]

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        self._db._check_loop()
        key = (self._ns, self._key(args, kwargs))
        if self._db._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:  # see the session's own writes; cache nothing
                return await self._in_session(session, args, kwargs)
        load = partial(self._load, args, kwargs)
        value = await loads.get_or_load(self._store, self._ns, key, load, self._db._running_loop())
        return thaw(value)  # type: ignore[no-any-return]

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Load the result for these arguments now, store it, and return it."""
        self._db._check_loop()
        key = (self._ns, self._key(args, kwargs))
        # Dropping revokes a load in flight: the value stored is one read from here on.
        self._store.drop(self._ns, key)
        load = partial(self._load, args, kwargs)
        value = await loads.get_or_load(self._store, self._ns, key, load, self._db._running_loop())
        return thaw(value)  # type: ignore[no-any-return]

    async def set(self, value: R, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as the result for these arguments (until a write drops it)."""
        self._db._check_loop()
        await self._checked()
        self._store.put(self._ns, (self._ns, self._key(args, kwargs)), self._freeze(value))

    async def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function on a fresh session, bypassing the cache (nothing is stored)."""
        self._db._check_loop()
        if self._db._active.get() is not None:
            session = self._db._writing_session()
            if session is not None:
                return await self._in_session(session, args, kwargs)
        return thaw(await self._load(args, kwargs))  # type: ignore[no-any-return]

    async def _checked(self) -> None:
        if self._unchecked:
            await self._db._read(self._check_tables)

    async def _in_session(self, session: AsyncSession, args: Any, kwargs: Any) -> R:
        """The function run in the caller's writing session: its writes seen, nothing stored."""
        with self._db._boundary(os_errors=True):
            return thaw(await self._frozen(session, args, kwargs))  # type: ignore[no-any-return]

    async def _load(self, args: Any, kwargs: Any) -> Any:
        await self._checked()
        frozen = partial(self._frozen, args=args, kwargs=kwargs)
        return await self._db._read_in_session(frozen)

    async def _frozen(self, session: AsyncSession, args: Any, kwargs: Any) -> Any:
        value = await self._fn(session, *args, **kwargs)
        # Frozen in the session's greenlet, where ORM instances can still load attributes.
        return await session.run_sync(lambda s: self._freeze(value))
