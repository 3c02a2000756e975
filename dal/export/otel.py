"""OpenTelemetry export of dal's counters and gauges (``pip install sqlalchemy-dal[otel]``).

``instrument(db)`` registers observable instruments on a meter of the given (or the
global) meter provider; the SDK calls them at each collection, so nothing runs on
dal's read or write paths. Names are ``dal.cache.requests`` (attributes
``database``, ``namespace``, ``result``), ``dal.cache.entries``,
``dal.pool.checked_out``, ... (see ``dal.export.metrics``); counters are observable
counters, gauges observable gauges.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import (
    CallbackOptions,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)

from . import metrics

if TYPE_CHECKING:
    from ..database import Database

__all__ = ["Instruments", "instrument"]

_UNITS = {"": "1", "seconds": "s"}


class Instruments:
    """The instruments of one meter provider, reading every Database added to them."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._databases: dict[str, Database] = {}
        for metric in metrics.read({}):
            create = (
                meter.create_observable_counter
                if metric.kind == "counter"
                else meter.create_observable_gauge
            )
            create(
                "dal." + metric.name,
                callbacks=[self._callback(metric.name)],
                unit=_UNITS.get(metric.unit, metric.unit),
                description=metric.description,
            )

    def add(self, *databases: Database | Mapping[str, Database]) -> None:
        with self._lock:
            named = metrics.databases_by_name([self._databases, *databases])
            self._databases = named

    def remove(self, db: Database) -> None:
        """Stop reporting ``db`` (e.g. before closing it for good)."""
        with self._lock:
            self._databases = {n: d for n, d in self._databases.items() if d is not db}

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                databases = dict(self._databases)
            for metric in metrics.read(databases):
                if metric.name == name:
                    return [Observation(s.value, dict(s.labels)) for s in metric.samples]
            return []

        return observe


#: One set of instruments per meter provider: creating them twice on one meter would
#: leave the second set's callbacks unregistered.
_BY_PROVIDER: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def instrument(
    *databases: Database | Mapping[str, Database], meter_provider: MeterProvider | None = None
) -> Instruments:
    """Report ``databases`` through ``meter_provider`` (default: the global one).

    Databases get the ``database`` attribute from a mapping's names, else their URL
    (password hidden). Calling it again for the same provider adds to its instruments.
    """
    provider = meter_provider if meter_provider is not None else get_meter_provider()
    with _LOCK:
        instruments = _BY_PROVIDER.get(provider)
        if instruments is None:
            meter = provider.get_meter("dal", _version())
            instruments = _BY_PROVIDER[provider] = Instruments(meter)
    instruments.add(*databases)
    return instruments


def _version() -> str | None:
    try:
        return metadata.version("sqlalchemy-dal")
    except metadata.PackageNotFoundError:
        return None
