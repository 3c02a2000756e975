"""The benchmark script runs end to end on SQLite and reports what it promises.

It runs as users run it (``python -m benchmarks``, a subprocess from the repository
root) in its quick mode. No timing is asserted: only that every competitor and
workload is there, the figures are sane, and dal's correctness figures hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {"hit", "miss", "zipf", "mixed", "stampede", "pool", "http", "async"}
COMPETITORS = {
    "dal",
    "lru-floor",
    "cachetools",
    "cachedmethod",
    "dogpile",
    "core",
    "orm",
    "core-nullpool",
    "raw",
    "tornado-nodb",
    "tornado-raw",
    "tornado-dal",
    # the async workload's (tests/test_benchmark_async.py checks their figures)
    "dal-async",
    "orm-async",
    "raw-async",
    "cashews",
    "aiocache",
    "async-lru",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run: its JSON document, PNG path and printed table."""
    out = tmp_path_factory.mktemp("bench")
    json_path, png_path = out / "bench.json", out / "bench.png"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--json",
            str(json_path),
            "--plot",
            str(png_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return {
        "doc": json.loads(json_path.read_text(encoding="utf-8")),
        "png": png_path,
        "stdout": completed.stdout,
    }


def rows(doc: dict[str, Any], workload: str, competitor: str) -> list[dict[str, Any]]:
    return [
        r for r in doc["results"] if r["workload"] == workload and r["competitor"] == competitor
    ]


def test_every_workload_and_competitor_is_reported(run: dict[str, Any]) -> None:
    results = run["doc"]["results"]
    assert {r["workload"] for r in results} == WORKLOADS
    assert {r["competitor"] for r in results} == COMPETITORS | {"ideal"}
    for workload in WORKLOADS - {"pool", "http"}:  # http's is tornado-dal
        assert rows(run["doc"], workload, "dal"), f"no dal row in {workload}"


def test_figures_are_positive(run: dict[str, Any]) -> None:
    for r in run["doc"]["results"]:
        where = f"{r['workload']} {r['case']} {r['competitor']}"
        assert r["threads"] >= 1, where
        assert r["ops_per_s"] > 0, where
        for field in ("p50_us", "p99_us"):
            if r["competitor"] != "ideal":
                assert r[field] is not None and r[field] >= 0, where
        if r["p50_us"] is not None:
            assert r["p99_us"] >= r["p50_us"], where
        if r["hit_ratio"] is not None:
            assert 0 <= r["hit_ratio"] <= 1, where
        assert r["queries"] >= 0, where
        if r["stale_reads"] is not None:
            assert r["stale_reads"] >= 0, where


def test_dal_serves_no_stale_reads(run: dict[str, Any]) -> None:
    mixed = rows(run["doc"], "mixed", "dal")
    assert mixed
    assert all(r["stale_reads"] == 0 for r in mixed)


def test_the_checker_sees_stale_reads_of_a_cache_without_invalidation(
    run: dict[str, Any],
) -> None:
    # plain cachetools keeps serving rows after they were updated: if the checker
    # found nothing there, it would not be checking anything for dal either
    assert sum(r["stale_reads"] for r in rows(run["doc"], "mixed", "cachetools")) > 0


def test_a_stampede_costs_dal_one_query(run: dict[str, Any]) -> None:
    (dal,) = rows(run["doc"], "stampede", "dal")
    assert dal["queries"] == 1
    assert dal["queries_max"] == 1
    (core,) = rows(run["doc"], "stampede", "core")
    assert core["queries"] == core["threads"]


def test_hits_issue_no_queries(run: dict[str, Any]) -> None:
    for r in run["doc"]["results"]:
        if r["workload"] == "hit":
            assert r["queries"] == 0, r["competitor"]
            assert r["hit_ratio"] == 1.0, r["competitor"]


def test_targets_are_evaluated_and_printed(run: dict[str, Any]) -> None:
    targets = run["doc"]["targets"]
    assert {t["workload"] for t in targets} == WORKLOADS - {"pool"}
    assert all(isinstance(t["passed"], bool) for t in targets)
    assert "Targets" in run["stdout"]
    assert run["stdout"].count("PASS") + run["stdout"].count("MISS") == len(targets)


def test_json_meta_describes_the_run(run: dict[str, Any]) -> None:
    meta = run["doc"]["meta"]
    assert meta["quick"] is True
    assert meta["db"].startswith("sqlite")
    assert set(meta["workloads"]) >= WORKLOADS  # and PostgreSQL-only ones, skipped here


def test_plot_is_a_png(run: dict[str, Any]) -> None:
    data = run["png"].read_bytes()
    assert data.startswith(PNG_SIGNATURE)


def test_the_raw_floor_is_in_the_miss_table(run: dict[str, Any]) -> None:
    (raw,) = [r for r in rows(run["doc"], "miss", "raw") if r["case"] == "get"]
    (dal,) = [r for r in rows(run["doc"], "miss", "dal") if r["case"] == "get"]
    assert raw["queries"] == dal["queries"]  # one statement per cold key, as dal's misses
    assert "held connection" in raw["label"] and "statement cache" in raw["label"]
    assert "raw " in run["stdout"]


def test_the_zipf_ideal_pays_the_raw_floor_for_each_miss(run: dict[str, Any]) -> None:
    for ideal in rows(run["doc"], "zipf", "ideal"):
        case = {r["competitor"]: r for r in run["doc"]["results"] if r["case"] == ideal["case"]}
        assert ideal["extra"]["miss_read"] == "raw"
        share = ideal["extra"]["distinct_keys"] / ideal["extra"]["requests"]
        expected = 1 / (
            share / case["raw"]["ops_per_s"] + (1 - share) / case["lru-floor"]["ops_per_s"]
        )
        assert ideal["ops_per_s"] == pytest.approx(expected)
        assert case["dal"]["extra"]["of_ideal"] == pytest.approx(
            case["dal"]["ops_per_s"] / expected
        )


def test_bytes_per_cached_row_are_reported_beside_a_dict_of_tuples(run: dict[str, Any]) -> None:
    memory = run["doc"]["meta"]["memory"]
    assert memory["rows"] > 0
    # A tuple of five values is at least its header and five pointers, per row.
    assert memory["dict_bytes_per_row"] > 80
    assert memory["dal_bytes_per_row"] > memory["dict_bytes_per_row"] * 0.5
    assert memory["ratio"] == pytest.approx(
        memory["dal_bytes_per_row"] / memory["dict_bytes_per_row"]
    )
    assert "bytes/row" in run["stdout"] and "dict of tuples" in run["stdout"]


def test_get_many_is_checked_against_one_core_in_query(run: dict[str, Any]) -> None:
    (target,) = [t for t in run["doc"]["targets"] if t["case"] == "get_many x50"]
    (dal,) = [r for r in rows(run["doc"], "miss", "dal") if r["case"] == "get_many x50"]
    (core,) = [r for r in rows(run["doc"], "miss", "core") if r["case"] == "get_many x50"]
    assert target["measured"] == pytest.approx(dal["ops_per_s"] / core["ops_per_s"])
    assert target["bound"] == 1.0


def test_the_chart_shows_stale_reads_and_stampede_queries(run: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    from benchmarks.plot import chart
    from benchmarks.results import Result

    figure = chart([Result(**r) for r in run["doc"]["results"]], "test")
    try:
        panels = {axis.get_title(): axis for axis in figure.axes}
        stale = next(a for t, a in panels.items() if t.startswith("stale reads"))
        stampede = next(a for t, a in panels.items() if "stampede" in t)

        def bars(axis: Any) -> list[tuple[str, float]]:
            """(competitor, height) per bar, in order: one container per bar."""
            names = [t.get_text() for t in axis.get_xticklabels()]
            heights = [float(c.datavalues[0]) for c in axis.containers]
            return list(zip(names, heights, strict=True))

        mixed = [r for r in run["doc"]["results"] if r["workload"] == "mixed"]
        assert mixed and all(r["extra"]["chart"] == "stale_reads" for r in mixed)
        charted = [r for r in run["doc"]["results"] if r["extra"].get("chart") == "stale_reads"]
        assert sorted(bars(stale)) == sorted((r["competitor"], r["stale_reads"]) for r in charted)
        assert ("dal", 0) in bars(stale)
        stampedes = [r for r in run["doc"]["results"] if r["extra"].get("chart") == "queries"]
        assert {r["workload"] for r in stampedes} >= {"stampede"}
        assert sorted(bars(stampede)) == sorted((r["competitor"], r["queries"]) for r in stampedes)
        assert ("dal", 1) in bars(stampede)
    finally:
        plt.close(figure)
