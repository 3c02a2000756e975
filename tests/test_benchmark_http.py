"""The ``http`` workload runs end to end at its quick size, on each backend with an
async driver.

As users run it, ``python -m benchmarks --quick --workload http --db URL``, which starts
the three servers and the load generator as processes of their own. No timing is
asserted: the rows are there and sane, dal's cache answered, and no read was stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {"tornado-nodb", "tornado-raw", "tornado-dal"}


def run_http(url: str, out: Path) -> dict[str, Any]:
    command = ["-m", "benchmarks", "--quick", "--workload", "http", "--db", url]
    completed = subprocess.run(
        [sys.executable, *command, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def test_http_workload(adb_sync_url: str, tmp_path: Path) -> None:
    doc = run_http(adb_sync_url, tmp_path / "http.json")
    rows = {r["competitor"]: r for r in doc["results"]}
    assert set(rows) == SERVERS
    for r in rows.values():
        assert r["workload"] == "http"
        assert r["ops_per_s"] > 0
        assert 0 <= r["p50_us"] <= r["p99_us"]
        assert r["stale_reads"] == 0, r["competitor"]
        assert r["extra"]["server_cpu_us"] > 0, r["competitor"]  # the server's own, per request
    dal = rows["tornado-dal"]
    assert 0 < dal["hit_ratio"] < 1  # warmed, yet some misses: Zipf over more rows than fit
    assert rows["tornado-raw"]["hit_ratio"] is None
    targets = [t for t in doc["targets"] if t["workload"] == "http"]
    assert len(targets) == 3
    assert all(isinstance(t["passed"], bool) for t in targets)
    # the items table it made is gone
    engine = create_engine(adb_sync_url, poolclass=NullPool)
    try:
        assert not inspect(engine).has_table("items")
    finally:
        engine.dispose()
