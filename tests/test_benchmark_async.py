"""The ``async`` benchmark workload runs end to end on SQLite and PostgreSQL.

As users run it (``python -m benchmarks --workload async``, a subprocess from the
repository root), in quick mode. No timing is asserted: only that every async
competitor is in every table it belongs to, and that dal's correctness figures hold:
no stale read in the zipf runs with writes, one query for a 64-coroutine stampede.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = {"hit", "miss", "zipf 1 coroutine", "zipf 64 coroutines", "stampede"}
CACHES = {"dal-async", "cashews", "aiocache", "async-lru"}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of the async workload: its JSON document and printed table."""
    args = []
    if request.param == "postgres":
        args = ["--db", request.getfixturevalue("postgres_url")]
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    args += ["--quick", "--workload", "async", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "skipping" not in done.stderr, done.stderr  # every competitor ran
    doc = json.loads(out.read_text(encoding="utf-8"))
    return {"doc": doc, "stdout": done.stdout, "backend": request.param}


def table(run: dict[str, Any], case: str) -> dict[str, dict[str, Any]]:
    return {r["competitor"]: r for r in run["doc"]["results"] if r["case"] == case}


def test_every_async_case_has_its_competitors(run: dict[str, Any]) -> None:
    assert {r["workload"] for r in run["doc"]["results"]} == {"async"}
    assert {r["case"] for r in run["doc"]["results"]} == CASES
    assert set(table(run, "hit")) == CACHES | {"dal"}  # the sync get hit, for the target
    assert set(table(run, "miss")) == CACHES | {"orm-async", "raw-async"}
    for case in CASES - {"hit", "miss"}:
        assert set(table(run, case)) == CACHES | {"orm-async"}, case


def test_the_raw_floor_names_the_async_driver(run: dict[str, Any]) -> None:
    raw = table(run, "miss")["raw-async"]
    driver = {"sqlite": "aiosqlite", "postgres": "asyncpg"}[run["backend"]]
    assert driver in raw["label"] and "held connection" in raw["label"]
    assert raw["queries"] == table(run, "miss")["dal-async"]["queries"]  # one per cold key


def test_hits_issue_no_queries(run: dict[str, Any]) -> None:
    for name, row in table(run, "hit").items():
        assert row["queries"] == 0 and row["hit_ratio"] == 1.0, name


def test_dal_serves_no_stale_read_where_caches_without_invalidation_do(
    run: dict[str, Any],
) -> None:
    for case in ("zipf 1 coroutine", "zipf 64 coroutines"):
        rows = table(run, case)
        assert rows["dal-async"]["stale_reads"] == 0, case
        assert rows["orm-async"]["stale_reads"] == 0, case
        # The checker sees what a cache without invalidation serves: it is checking.
        assert rows["async-lru"]["stale_reads"] > 0, case


def test_a_64_coroutine_stampede_costs_dal_one_query(run: dict[str, Any]) -> None:
    rows = table(run, "stampede")
    assert rows["dal-async"]["queries_max"] == 1
    assert rows["orm-async"]["queries"] == 64  # no cache: every coroutine reads


def test_the_async_targets_are_checked_and_printed(run: dict[str, Any]) -> None:
    targets = run["doc"]["targets"]
    texts = [t["text"] for t in targets]
    (hit,) = [t for t in targets if "sync get hit" in t["text"]]
    rows = table(run, "hit")
    assert hit["measured"] == pytest.approx(
        rows["dal"]["ops_per_s"] / rows["dal-async"]["ops_per_s"]
    )
    for name in ("cashews", "aiocache", "raw async driver", "AsyncSession.get"):
        assert any(name in text for text in texts), name
    (stampede,) = [t for t in targets if t["case"] == "stampede"]
    assert stampede["passed"] is True
    stale = [t for t in targets if t["case"].startswith("zipf")]
    assert len(stale) == 2 and all(t["passed"] for t in stale)
    assert run["stdout"].count("PASS") + run["stdout"].count("MISS") == len(targets)
