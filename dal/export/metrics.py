"""What dal exports as metrics: one table of names, kinds and meanings, read from ``stats()``.

``dal.export.prometheus`` and ``dal.export.otel`` turn the same readings into their own
types, so the two exports never disagree on a name or a kind. Counters only grow (for the life of a
``Database``) and gauges go up and down. Labels are the database's name, and for
per-namespace figures the namespace (a repository's ``Users.get`` / ``Users.find``, a
cached function's qualified name): never a key or an argument, whose number is unbounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..database import Database

__all__ = ["Metric", "Sample", "databases_by_name", "read"]

Kind = Literal["counter", "gauge"]
#: Label names and values of one sample.
Labels = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: ``name`` is dotted (``cache.requests``); exporters add ``dal`` and units."""

    name: str
    kind: Kind
    description: str
    unit: str
    samples: tuple[Sample, ...]


#: (stats section, stats key, metric name, kind, unit, description), per database.
_TABLE: tuple[tuple[str, str, str, Kind, str, str], ...] = (
    ("cache", "stale_fills_prevented", "cache.stale_fills_prevented", "counter", "",
     "loads not stored because a commit revoked their lease while they read"),
    ("cache", "evictions", "cache.evictions", "counter", "",
     "entries evicted by the size bound"),
    ("cache", "expirations", "cache.expirations", "counter", "",
     "entries dropped because their TTL ran out"),
    ("cache", "invalidations", "cache.invalidations", "counter", "",
     "committed changes applied to the cache (local commits and bus messages)"),
    ("cache", "uncached_loads", "cache.uncached_loads", "counter", "",
     "loads not stored because caching was paused"),
    ("cache", "in_flight", "cache.in_flight", "gauge", "",
     "loads running now"),
    ("cache", "maxsize", "cache.max_entries", "gauge", "",
     "the entry bound (cache_size)"),
    ("pool", "size", "pool.size", "gauge", "",
     "the pool's size (pool_size)"),
    ("pool", "checked_out", "pool.checked_out", "gauge", "",
     "connections in use now"),
    ("pool", "checked_in", "pool.checked_in", "gauge", "",
     "idle connections in the pool now"),
    ("pool", "overflow", "pool.overflow", "gauge", "",
     "connections open beyond pool_size now"),
    ("pool", "connects", "pool.connects", "counter", "",
     "new database connections opened"),
    ("pool", "disconnects", "pool.disconnects", "counter", "",
     "connections found dead and discarded"),
    ("pool", "retries", "pool.retries", "counter", "",
     "reads repeated once on a fresh connection after a dead one"),
    ("pool", "timeouts", "pool.timeouts", "counter", "",
     "checkouts that waited pool_timeout and failed"),
    ("bus", "reconnects", "bus.reconnects", "counter", "",
     "times the listener listened again after losing its connection"),
    ("bus", "errors", "bus.errors", "counter", "",
     "listener connection failures and unreadable messages"),
    ("bus", "messages_sent", "bus.messages_sent", "counter", "",
     "invalidation messages this database sent"),
    ("bus", "messages_received", "bus.messages_received", "counter", "",
     "messages the listener received"),
    ("bus", "messages_applied", "bus.messages_applied", "counter", "",
     "other databases' messages applied to this cache"),
)  # fmt: skip


def databases_by_name(databases: Iterable[Database | Mapping[str, Database]]) -> dict[str, Any]:
    """Names for the ``database`` label: given in a mapping, else the URL without password."""
    named: dict[str, Any] = {}
    for item in databases:
        pairs = item.items() if isinstance(item, Mapping) else [(_url_name(item), item)]
        for name, db in pairs:
            base, n = name, 1
            while name in named:  # two Databases on one URL: both are reported
                n += 1
                name = f"{base}#{n}"
            named[name] = db
    return named


def _url_name(db: Database) -> str:
    return db.settings.url.render_as_string(hide_password=True)


def read(databases: Mapping[str, Database]) -> list[Metric]:
    """Every metric of ``databases`` now, one sample per database (and namespace)."""
    per_ns: dict[str, list[Sample]] = {
        "cache.requests": [],
        "cache.loads": [],
        "cache.entries": [],
    }
    flat: dict[str, list[Sample]] = {row[2]: [] for row in _TABLE}
    flat["cache.paused"], flat["bus.listening"], flat["bus.lag"] = [], [], []
    for name, db in databases.items():
        stats = db.stats()
        base: Labels = (("database", name),)
        for section, key, metric, _, _, _ in _TABLE:
            value = stats.get(section, {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[metric].append(Sample(base, float(value)))
        flat["cache.paused"].append(Sample(base, float(bool(stats["cache"].get("paused")))))
        bus = stats.get("bus")
        if bus is not None:
            flat["bus.listening"].append(Sample(base, float(bus.get("state") == "listening")))
            if bus.get("last_lag_ms") is not None:
                flat["bus.lag"].append(Sample(base, bus["last_lag_ms"] / 1000))
        for ns, (hits, misses, loads, entries) in sorted(db._store.namespace_stats().items()):
            labels = (*base, ("namespace", ns))
            per_ns["cache.requests"].append(Sample((*labels, ("result", "hit")), float(hits)))
            per_ns["cache.requests"].append(Sample((*labels, ("result", "miss")), float(misses)))
            per_ns["cache.loads"].append(Sample(labels, float(loads)))
            per_ns["cache.entries"].append(Sample(labels, float(entries)))
    metrics = [
        Metric("cache.requests", "counter", "cache lookups, by result (hit or miss)", "",
               tuple(per_ns["cache.requests"])),
        Metric("cache.loads", "counter", "database reads made for misses (one per batch)", "",
               tuple(per_ns["cache.loads"])),
        Metric("cache.entries", "gauge", "entries cached now", "",
               tuple(per_ns["cache.entries"])),
        Metric("cache.paused", "gauge", "1 while caching is paused (bus down, closed)", "",
               tuple(flat.pop("cache.paused"))),
        Metric("bus.listening", "gauge", "1 while the bus listener is listening", "",
               tuple(flat.pop("bus.listening"))),
        Metric("bus.lag", "gauge", "commit-to-apply lag of the last message applied", "seconds",
               tuple(flat.pop("bus.lag"))),
    ]  # fmt: skip
    for _, _, metric, kind, unit, description in _TABLE:
        metrics.append(Metric(metric, kind, description, unit, tuple(flat[metric])))
    return metrics
