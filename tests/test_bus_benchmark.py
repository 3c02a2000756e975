"""The ``invalidation`` benchmark workload runs on PostgreSQL and skips elsewhere.

As users run it (``python -m benchmarks``, a subprocess from the repository root),
in quick mode. No timing is asserted: only that the figures are there and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--repeat",
            "1",
            "--json",
            str(out),
            "--workload",
            "invalidation",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, out


def test_the_workload_measures_the_bus_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    done, out = bench(tmp_path, "--db", postgres_url)

    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    (row,) = [r for r in doc["results"] if r["workload"] == "invalidation"]
    assert row["competitor"] == "dal"
    assert 0 <= row["p50_us"] <= row["p99_us"]
    assert row["stale_reads"] == 0
    texts = {t["text"] for t in doc["targets"] if t["workload"] == "invalidation"}
    assert any("p99" in text for text in texts)
    assert "invalidation" in done.stdout


def test_the_workload_skips_sqlite_with_a_note(tmp_path: Path) -> None:
    done, out = bench(tmp_path)

    assert "skipping invalidation" in done.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert not [r for r in doc["results"] if r["workload"] == "invalidation"]
