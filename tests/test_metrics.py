"""Metrics exports: Prometheus (a real CollectorRegistry, its text output parsed) and
OpenTelemetry (the SDK with an InMemoryMetricReader). Both read ``stats()``; these
tests check names, kinds, labels and that the figures move as the cache does.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import dal
from dal.export.otel import instrument
from dal.export.prometheus import DalCollector
from tests.models import Users
from tests.test_bus import seed


def scrape(registry: CollectorRegistry) -> dict[str, Any]:
    """``{family name: (type, {labels tuple: value})}`` from the registry's text output."""
    families = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        samples = {}
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        families[family.name] = (family.type, samples)
    return families


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total")
    _, samples = families[family]
    return float(samples[(sample, tuple(sorted(labels.items())))])


def use_cache(db: dal.Database) -> Users:
    users = Users(db)
    seed(users)
    users.get(1)  # a miss and a load
    users.get(1)  # a hit
    users.get(2)  # a miss and a load
    users.find(name="user1")  # a miss in the finds namespace
    return users


def test_prometheus_exports_counters_and_gauges(sqlite_db: dal.Database) -> None:
    registry = CollectorRegistry()
    DalCollector({"main": sqlite_db}, registry=registry)
    users = use_cache(sqlite_db)

    families = scrape(registry)

    main = {"database": "main"}
    assert families["dal_cache_requests"][0] == "counter"
    assert (
        value(families, "dal_cache_requests_total", **main, namespace="Users.get", result="hit")
        == 1
    )
    assert (
        value(families, "dal_cache_requests_total", **main, namespace="Users.get", result="miss")
        == 2
    )
    assert (
        value(families, "dal_cache_requests_total", **main, namespace="Users.find", result="miss")
        == 1
    )
    assert value(families, "dal_cache_loads_total", **main, namespace="Users.get") == 2
    assert families["dal_cache_entries"][0] == "gauge"
    assert value(families, "dal_cache_entries", **main, namespace="Users.get") == 2
    for counter in ("stale_fills_prevented", "evictions", "invalidations", "expirations"):
        assert families[f"dal_cache_{counter}"][0] == "counter", counter
        assert value(families, f"dal_cache_{counter}_total", **main) >= 0
    for gauge in ("size", "checked_out", "overflow", "checked_in"):
        assert families[f"dal_pool_{gauge}"][0] == "gauge", gauge
    assert value(families, "dal_pool_size", **main) == sqlite_db.settings.pool_size
    assert value(families, "dal_pool_checked_out", **main) == 0
    assert value(families, "dal_cache_paused", **main) == 0

    users.update(1, name="renamed")  # an invalidation, and an entry gone
    after = scrape(registry)
    assert value(after, "dal_cache_invalidations_total", **main) > value(
        families, "dal_cache_invalidations_total", **main
    )
    assert value(after, "dal_cache_entries", **main, namespace="Users.get") == 1


def test_no_key_becomes_a_label(sqlite_db: dal.Database) -> None:
    registry = CollectorRegistry()
    DalCollector(sqlite_db, registry=registry)
    users = Users(sqlite_db)
    seed(users, 20)
    for pk in range(1, 21):
        users.get(pk)
    users.find(name="user7")

    text = generate_latest(registry).decode()

    label_names = {
        name
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for name in s.labels
    }
    assert label_names <= {"database", "namespace", "result"}
    namespaces = {
        s.labels["namespace"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "namespace" in s.labels
    }
    assert namespaces == {"Users.get", "Users.find"}
    assert "user7" not in text
    # The default label is the URL, without a password.
    assert sqlite_db.settings.url.render_as_string(hide_password=True) in text


def test_two_databases_on_one_url_are_both_reported(sqlite_db: dal.Database) -> None:
    other = dal.Database(sqlite_db.settings.url, pool_size=3)
    try:
        registry = CollectorRegistry()
        DalCollector(sqlite_db, other, registry=registry)
        families = scrape(registry)
    finally:
        other.close()

    url = sqlite_db.settings.url.render_as_string(hide_password=True)
    assert value(families, "dal_pool_size", database=url) == 5
    assert value(families, "dal_pool_size", database=f"{url}#2") == 3


def test_the_collector_registers_with_the_registry_given(sqlite_db: dal.Database) -> None:
    registry = CollectorRegistry()
    collector = DalCollector(sqlite_db, registry=registry)
    assert "dal_cache_requests" in scrape(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        DalCollector(sqlite_db, registry=registry)  # the same names twice
    collector.unregister()
    assert "dal_cache_requests" not in scrape(registry)


def test_the_collector_reports_the_pool_of_a_session_in_progress(
    sqlite_db: dal.Database,
) -> None:
    registry = CollectorRegistry()
    DalCollector({"db": sqlite_db}, registry=registry)
    with sqlite_db.session() as session:
        session.connection()
        assert value(scrape(registry), "dal_pool_checked_out", database="db") == 1
    assert value(scrape(registry), "dal_pool_checked_out", database="db") == 0


def test_the_bus_is_reported_when_it_runs(pg_db: dal.Database, postgres_url: str) -> None:
    from tests.test_bus import bus_stats
    from tests.waiting import wait_until

    a = dal.Database(postgres_url, invalidation="postgres")
    try:
        wait_until(lambda: bus_stats(a)["state"] == "listening")
        registry = CollectorRegistry()
        DalCollector({"a": a, "plain": pg_db}, registry=registry)
        families = scrape(registry)
        assert value(families, "dal_bus_listening", database="a") == 1
        assert families["dal_bus_reconnects"][0] == "counter"
        assert value(families, "dal_bus_reconnects_total", database="a") == 0
        assert ("dal_bus_listening", (("database", "plain"),)) not in families["dal_bus_listening"][
            1
        ]
    finally:
        a.close()


# --- OpenTelemetry ------------------------------------------------------------------------


def otel_points(reader: Any) -> dict[str, Any]:
    """``{instrument name: (data, [(attributes, value)])}`` from one collection."""
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = [(dict(p.attributes), p.value) for p in metric.data.data_points]
                found[metric.name] = (metric.data, points)
    return found


def otel_value(found: dict[str, Any], name: str, **attributes: str) -> float:
    (hit,) = [v for attrs, v in found[name][1] if attrs == attributes]
    return float(hit)


def test_opentelemetry_reports_observable_counters_and_gauges(sqlite_db: dal.Database) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument({"main": sqlite_db}, meter_provider=provider)
        use_cache(sqlite_db)

        found = otel_points(reader)

        requests, _ = found["dal.cache.requests"]
        assert isinstance(requests, Sum) and requests.is_monotonic
        main = {"database": "main"}
        get = {**main, "namespace": "Users.get"}
        assert otel_value(found, "dal.cache.requests", **get, result="hit") == 1
        assert otel_value(found, "dal.cache.requests", **get, result="miss") == 2
        assert otel_value(found, "dal.cache.loads", **get) == 2
        entries, _ = found["dal.cache.entries"]
        assert isinstance(entries, Gauge)
        assert otel_value(found, "dal.cache.entries", **get) == 2
        assert isinstance(found["dal.pool.checked_out"][0], Gauge)
        assert otel_value(found, "dal.pool.size", **main) == 5
        for counter in ("stale_fills_prevented", "evictions", "invalidations"):
            data, _ = found[f"dal.cache.{counter}"]
            assert isinstance(data, Sum) and data.is_monotonic, counter

        Users(sqlite_db).get(3)
        again = otel_points(reader)
        assert otel_value(again, "dal.cache.requests", **get, result="miss") == 3
    finally:
        provider.shutdown()


def test_a_second_call_adds_to_the_same_instruments(sqlite_db: dal.Database) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    other = dal.Database(sqlite_db.settings.url, pool_size=3)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        first = instrument({"one": sqlite_db}, meter_provider=provider)
        second = instrument({"two": other}, meter_provider=provider)
        assert first is second
        found = otel_points(reader)
        assert otel_value(found, "dal.pool.size", database="one") == 5
        assert otel_value(found, "dal.pool.size", database="two") == 3
        first.remove(sqlite_db)
        names = {a["database"] for a, _ in otel_points(reader)["dal.pool.size"][1]}
        assert names == {"two"}
    finally:
        provider.shutdown()
        other.close()


def test_importing_dal_imports_neither_exporter() -> None:
    code = (
        "import sys, dal; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry')"
        " or m in ('dal.export.prometheus', 'dal.export.otel')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "prometheus" not in dal.__all__ and "otel" not in dal.__all__
