"""Prometheus export of dal's counters and gauges (``pip install sqlalchemy-dal[prometheus]``).

``DalCollector(db)`` registers with ``prometheus_client``'s global registry (or the
``registry=`` given) and reads ``db.stats()`` at each scrape: nothing runs on dal's
read or write paths. Names: ``dal_cache_requests_total{database, namespace,
result="hit"|"miss"}``, ``dal_cache_loads_total``, ``dal_cache_entries``,
``dal_cache_stale_fills_prevented_total``, ``dal_cache_evictions_total``,
``dal_cache_invalidations_total``, ``dal_pool_checked_out``, ``dal_pool_overflow``,
... (see ``dal.export.metrics``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.registry import Collector

from . import metrics

if TYPE_CHECKING:
    from ..database import Database

__all__ = ["DalCollector"]


class DalCollector(Collector):
    """Exports the stats of one or more Databases at every scrape.

    Databases are labelled ``database=`` with their URL (password hidden), or with
    the names of a mapping: ``DalCollector({"main": db, "replica": other})``.
    ``registry=None`` registers nowhere (call ``registry.register`` yourself).
    """

    def __init__(
        self,
        *databases: Database | Mapping[str, Database],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if not databases:
            raise TypeError("DalCollector needs at least one Database")
        self._databases = metrics.databases_by_name(databases)
        self.registry = registry
        if registry is not None:
            registry.register(self)

    def unregister(self) -> None:
        """Leave the registry it registered with (e.g. when its Databases close)."""
        if self.registry is not None:
            self.registry.unregister(self)
            self.registry = None

    def collect(self) -> Iterator[PromMetric]:
        for metric in metrics.read(self._databases):
            yield _family(metric)

    def describe(self) -> Iterator[PromMetric]:
        # Names without samples: registering checks them against the registry's
        # other collectors without reading any stats.
        for metric in metrics.read({}):
            yield _family(metric)


def _family(metric: metrics.Metric) -> PromMetric:
    name = "dal_" + metric.name.replace(".", "_")
    if metric.unit:
        name += f"_{metric.unit}"
    label_names = [k for k, _ in metric.samples[0].labels] if metric.samples else []
    family: CounterMetricFamily | GaugeMetricFamily
    if metric.kind == "counter":
        family = CounterMetricFamily(name, metric.description, labels=label_names)
    else:
        family = GaugeMetricFamily(name, metric.description, labels=label_names)
    for sample in metric.samples:
        family.add_metric([v for _, v in sample.labels], sample.value)
    return family
