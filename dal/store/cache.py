"""The store: a cachetools LRU under one lock, single flight, lease-checked fills.

A load takes a *lease* (its in-flight entry) before it queries. A write that
commits revokes the leases of every key and table it touched, so a load that may
have read the old row cannot store it (the lease idea of "Scaling Memcache at
Facebook"). Only loads that are in flight are tracked, so this costs no memory
per key ever written. The database is never called with the lock held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from time import monotonic  # read at call time: freezegun replaces this global
from typing import Any

from ..errors import UncacheableArgument
from ..tracking.statements import ALL, NEW_ROWS
from .flights import MISSING, Abandoned, Flight, Party, finish, refuse_cycle
from .keys import PrimaryKey
from .lru import LRU, Key, Slot, hit_order
from .namespaces import Changes, Namespace, describe, row_keys
from .sizes import entry_size

__all__ = ["MISSING", "Changes", "Namespace", "Store"]

_log = logging.getLogger("dal.cache")


class Store:
    """All cached entries of one ``Database``."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.lock = threading.Lock()
        self.data = LRU.bounded(max_entries, max_bytes, self._evicted)
        #: The LRU's recency order, for hit paths; see ``lru.hit_order``.
        self.order = hit_order(self.data)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._inflight: dict[Key, Flight] = {}
        #: The waits-for graph: a thread ident or a Task -> the flight it waits on. A
        #: flight's owner is who runs its load; see ``flights.refuse_cycle``.
        self._waiting: dict[Party, Flight] = {}
        self._namespaces: dict[Hashable, Namespace] = {}
        self._by_table: dict[str, list[Namespace]] = {}
        # Caching is paused while it cannot be kept fresh (closed, bus down).
        self._paused: set[str] = set()
        self.evictions = self.expirations = self.invalidations = 0
        self.stale_fills_prevented = self.uncached_loads = 0

    # -- namespaces ---------------------------------------------------------

    def namespace(
        self,
        ident: Hashable,
        name: str,
        tables: Iterable[str],
        ttl: float | None,
        pk: PrimaryKey | None = None,
    ) -> Namespace:
        """The namespace registered under ``ident``, made on first use."""
        with self.lock:
            ns = self._namespaces.get(ident)
            if ns is None:
                ns = self._namespaces[ident] = Namespace(name, frozenset(tables), ttl, pk)
                for table in ns.tables:
                    self._by_table.setdefault(table, []).append(ns)
            return ns

    @property
    def tables(self) -> frozenset[str]:
        """Names of the tables some cached entry depends on."""
        with self.lock:
            return frozenset(self._by_table)

    # -- reads ----------------------------------------------------------------

    def get_or_load(self, ns: Namespace, key: Key, load: Callable[[], Any]) -> Any:
        """The cached value, or one load shared by every concurrent caller."""
        missed = False
        while True:
            with self.lock:
                found, flight, leader = self._find_or_join(ns, key, missed)
            if flight is None:
                return found
            missed = True
            if leader:
                return self._run([flight], lambda: {key: load()})[key]
            try:
                return self._wait(flight, key)
            except Abandoned:
                continue  # the loader was interrupted, not failed: load again

    def get_many_or_load(
        self,
        ns: Namespace,
        keys: Iterable[Key],
        load_many: Callable[[list[Key]], Mapping[Key, Any]],
    ) -> dict[Key, Any]:
        """Cached values for ``keys`` (absent rows as None); one ``load_many`` call for
        the misses that no other caller is loading already.

        The misses are one flight, leased under each of their keys: one lock taken
        for every lookup and lease, one for the fill, one thread lock for the waiters,
        and at most one clock read for the expiry of every entry found.
        """
        found: dict[Key, Any] = {}
        leads: list[Key] = []
        waits: list[tuple[Flight, Key]] = []
        inflight, order = self._inflight, self.order
        batch: Flight | None = None
        with self.lock:
            now: float | None = None
            for key in keys:
                try:
                    slot = key[0].entries.get(key[1])
                except TypeError:
                    raise _uncacheable(key) from None
                if slot is not None and slot.expires is not None:
                    if now is None:
                        now = monotonic()
                    if slot.expires <= now:
                        self._expire(slot)
                        slot = None
                if slot is not None:
                    order.move_to_end(slot)
                    found[key] = slot.value
                    continue
                other = inflight.get(key)
                if other is None or other.finished:
                    leads.append(key)
                else:
                    waits.append((other, key))
            ns.hits += len(found)
            ns.misses += len(leads) + len(waits)
            if leads:
                batch = Flight(ns, leads)
                for key in leads:
                    inflight[key] = batch
        if batch is not None:
            values = self._run([batch], lambda: load_many(leads))
            for key in leads:
                found[key] = values.get(key)
        for flight, key in waits:
            try:
                found[key] = self._wait(flight, key)
            except Abandoned:
                found[key] = self.get_or_load(ns, key, _one_of(load_many, key))
        return found

    def _wait(self, flight: Flight, key: Key) -> Any:
        """``flight.result(key)``, or a ``DalError`` if the wait would never end.

        The check and the registration happen under one lock, so of two threads
        closing a cycle at once, exactly the second one sees it; the caller's own
        loads go on (failing or not, as its code decides).
        """
        me = threading.get_ident()
        with self.lock:
            refuse_cycle(self._waiting, me, flight, me)
            self._waiting[me] = flight
        try:
            return flight.result(key)
        finally:
            with self.lock:
                del self._waiting[me]

    def _find_or_join(self, ns: Namespace, key: Key, missed: bool) -> tuple[Any, Any, bool]:
        """Lock held: ``(value, None, False)`` for a hit, else ``(MISSING, flight,
        leader)``: the load to wait on or lead; a miss counted unless ``missed``."""
        found = self._find(key)
        if found is not MISSING:
            ns.hits += 1
            return found, None, False
        if not missed:
            ns.misses += 1
        flight, leader = self._join(ns, key)
        return MISSING, flight, leader

    def _join(self, ns: Namespace, key: Key) -> tuple[Flight, bool]:
        """The load in flight for ``key`` (lock held), or a new one this caller leads."""
        flight = self._inflight.get(key)
        if flight is not None and not flight.finished:
            return flight, False
        flight = self._inflight[key] = Flight(ns, [key])
        return flight, True

    def _find(self, key: Key) -> Any:
        """Lookup with the lock held: the live value or ``MISSING``."""
        try:
            slot = key[0].entries.get(key[1])
        except TypeError:
            raise _uncacheable(key) from None
        if slot is None:
            return MISSING
        if slot.expires is not None and slot.expires <= monotonic():
            self._expire(slot)
            return MISSING
        self.order.move_to_end(slot)
        return slot.value

    def _run(
        self, flights: list[Flight], load: Callable[[], Mapping[Key, Any]]
    ) -> Mapping[Key, Any]:
        """Run one load for ``flights``, store what is still leased, wake the waiters;
        what the load returned."""
        # Age counts from before the read: the row is as old as the query, not the fill.
        started = None if flights[0].ns.ttl is None else monotonic()
        try:
            values = load()
        except BaseException as exc:
            self._failed(flights, exc)
            raise
        self._loaded(flights, values, started)
        return values

    def _loaded(
        self, flights: list[Flight], values: Mapping[Key, Any], started: float | None
    ) -> None:
        """Store the values whose lease still holds; then finish the flights.

        ``started`` is when the load began (None if no TTL applies). Whatever
        happens, every flight is finished and leaves the in-flight table, so no later
        miss can wait on a load that will never end.
        """
        ns = flights[0].ns
        try:
            with self.lock:
                ns.loads += 1
                expires = None if ns.ttl is None or started is None else started + ns.ttl
                for flight in flights:
                    flight.values = values
                    self._fill(flight, values, expires)
        except BaseException as exc:
            self._failed(flights, exc)
            raise
        finish(self.lock, flights)

    def _failed(self, flights: list[Flight], exc: BaseException) -> None:
        """End ``flights`` with ``exc`` (nothing stored), and wake the waiters."""
        with self.lock:
            for flight in flights:
                flight.error = exc
                for key in flight.keys:
                    if self._inflight.get(key) is flight:
                        del self._inflight[key]
        finish(self.lock, flights)

    def _fill(self, flight: Flight, values: Mapping[Key, Any], expires: float | None) -> None:
        """Store the loaded values of ``flight``'s keys whose lease still holds (lock held)."""
        inflight, ns = self._inflight, flight.ns
        paused = bool(self._paused)
        for key in flight.keys:
            if inflight.get(key) is not flight:
                # A commit revoked the lease while the load ran: it may have read
                # the row as it was before that commit.
                self.stale_fills_prevented += 1
                continue
            del inflight[key]
            if paused:
                self.uncached_loads += 1
                continue
            self._keep(ns, key[1], values.get(key), expires)

    def _keep(self, ns: Namespace, within: Hashable, value: Any, expires: float | None) -> None:
        """Cache ``value`` under ``within`` in ``ns``, replacing any entry (lock held).

        Its bytes are counted now, once, and only if ``cache_bytes`` is set.
        """
        old = ns.entries.pop(within, None)
        if old is not None:
            del self.data[old]
        size = 0 if self.max_bytes is None else entry_size(within, value, expires)
        slot = Slot(ns, within, value, expires, size)
        try:
            self.data[slot] = slot  # may evict others first
        except ValueError:  # larger than the whole byte budget: not cached
            return
        ns.entries[within] = slot

    # -- invalidation -------------------------------------------------------------

    def invalidate(self, changes: Changes) -> None:
        """Apply committed changes: drop entries, revoke leases of loads in flight."""
        if not changes:
            return
        # Logged after the lock is released: a handler may block.
        with self.lock:
            self._invalidate(changes)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("invalidated %s", describe(changes))

    def _invalidate(self, changes: Changes) -> None:
        self.invalidations += 1
        if ALL in changes:  # a write whose tables are unknown
            self._clear()
            return
        for table, pks in changes.items():
            for ns in self._by_table.get(table, ()):
                keys = None if pks is None or ns.pk is None else row_keys(ns, pks)
                if keys is None:
                    self._drop_namespace(ns)
                    continue
                for key in keys:
                    self._drop(key)
                if NEW_ROWS in pks:  # type: ignore[operator]
                    self._drop_absences(ns)

    def drop(self, ns: Namespace, key: Key | None = None) -> None:
        """Forget one key of ``ns``, or all of it (and revoke their leases)."""
        with self.lock:
            if key is None:
                self._drop_namespace(ns)
            else:
                self._drop(key)
        _log.debug("%s: %s", ns.name, "cleared" if key is None else "one entry invalidated")

    def put(self, ns: Namespace, key: Key, value: Any) -> None:
        """Store ``value`` under ``key`` now; a load in flight for it loses its lease."""
        with self.lock:
            self._drop(key)
            if self._paused:
                return
            expires = None if ns.ttl is None else monotonic() + ns.ttl
            self._keep(ns, key[1], value, expires)

    def clear(self) -> None:
        """Forget everything and revoke every lease."""
        with self.lock:
            self._clear()
        _log.debug("cache cleared")

    def pause(self, reason: str) -> None:
        """Clear and stop storing until ``resume(reason)``: reads go to the database."""
        with self.lock:
            self._paused.add(reason)
            self._clear()
        _log.debug("cache cleared; caching paused (%s)", reason)

    def resume(self, reason: str) -> None:
        with self.lock:
            was = reason in self._paused
            self._paused.discard(reason)
            still = sorted(self._paused)
        if was:
            _log.debug(
                "caching resumed (%s)%s", reason, f"; still paused by {still}" if still else ""
            )

    @property
    def paused(self) -> frozenset[str]:
        with self.lock:
            return frozenset(self._paused)

    def after_fork(self) -> None:
        """In a forked child: an empty store whose lock is free, no loads in flight.

        Only the forking thread survives. A thread that held the lock is gone, at
        worst half-way through changing what the lock guards; a plain lock may be
        released by any thread, and everything it guarded is emptied in place
        (hit paths hold the dicts themselves).
        """
        if self.lock.locked():
            self.lock.release()
        self._clear()
        self._waiting.clear()

    def _clear(self) -> None:
        self.data.clear()
        for ns in self._namespaces.values():
            ns.entries.clear()
        self._inflight.clear()

    def _drop(self, key: Key) -> None:
        # A load in flight keeps its Flight; without the lease it cannot store.
        self._inflight.pop(key, None)
        slot = key[0].entries.pop(key[1], None)
        if slot is not None:
            del self.data[slot]

    def _drop_namespace(self, ns: Namespace) -> None:
        for slot in ns.entries.values():
            del self.data[slot]
        ns.entries.clear()
        for key in [k for k, f in self._inflight.items() if f.ns is ns]:
            del self._inflight[key]

    def _drop_absences(self, ns: Namespace) -> None:
        """Rows of unknown keys appeared: drop cached absences, revoke loads in flight."""
        for slot in [s for s in ns.entries.values() if s.value is None]:
            self._drop((ns, slot.key))
        for key in [k for k, f in self._inflight.items() if f.ns is ns]:
            del self._inflight[key]

    def _expire(self, slot: Slot) -> None:
        del self.data[slot]
        del slot.ns.entries[slot.key]
        self.expirations += 1

    def _evicted(self, slot: Slot) -> None:
        del slot.ns.entries[slot.key]
        self.evictions += 1

    # -- stats ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.lock:
            spaces = list(self._namespaces.values())
            return {
                "hits": sum(ns.hits for ns in spaces),
                "misses": sum(ns.misses for ns in spaces),
                "loads": sum(ns.loads for ns in spaces),
                "stale_fills_prevented": self.stale_fills_prevented,
                "evictions": self.evictions,
                "expirations": self.expirations,
                "invalidations": self.invalidations,
                "uncached_loads": self.uncached_loads,
                "in_flight": len(self._inflight),
                "currsize": len(self.data),
                "maxsize": self.max_entries,
                "paused": sorted(self._paused),
            }

    def namespace_stats(self) -> dict[str, tuple[int, int, int, int]]:
        """``name -> (hits, misses, loads, entries)``, for metrics; one name may be several."""
        totals: dict[str, tuple[int, int, int, int]] = {}
        with self.lock:
            for ns in self._namespaces.values():
                h, m, lo, e = totals.get(ns.name, (0, 0, 0, 0))
                totals[ns.name] = (h + ns.hits, m + ns.misses, lo + ns.loads, e + len(ns.entries))
        return totals


def _one_of(load_many: Callable[[list[Key]], Mapping[Key, Any]], key: Key) -> Callable[[], Any]:
    return lambda: load_many([key]).get(key)


def _uncacheable(key: Key) -> UncacheableArgument:
    return UncacheableArgument(f"{key[1]!r} cannot be a cache key")
