"""Adding a competitor or a workload to the benchmark is one registration.

A competitor class registered with ``@competitor`` (and nothing else) shows up in
``--list``, in every table of its kind, in the chart and in the JSON; a workload class
registered with ``@workload`` runs with ``--workload`` and has its targets checked.
The runs are in process, on SQLite, in the quick mode.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks import base
from benchmarks.__main__ import main
from benchmarks.data import core_read, core_read_many, core_write
from benchmarks.results import Rule, Sample

#: Every table a sync cache that batches takes part in.
CACHE_TABLES = {
    ("hit", ""),
    ("miss", "get"),
    ("miss", "get_many x50"),
    ("zipf", "1 thread"),
    ("zipf", "4 threads"),
    ("mixed", "95/5"),
    ("mixed", "80/20"),
    ("stampede", ""),
}


class DictCache(base.Competitor):
    """A dict under a lock, its key dropped after a write: what a user might write by hand."""

    name = "dict-cache"
    label = "a dict under a lock, key dropped after each write"
    kind = base.Kind.CACHE
    batches = True
    colour = "#123456"

    def reset(self) -> None:
        engine = self.env.engine
        cache: dict[int, Any] = {}
        lock = threading.Lock()
        load = self._loads.counting(core_read(engine))
        load_many = core_read_many(engine)
        write_row = core_write(engine)

        def read(key: int) -> Any:
            with lock:
                if key in cache:
                    return cache[key]
            row = load(key)
            with lock:
                cache[key] = row
            return row

        def read_many(keys: Sequence[int]) -> dict[int, Any]:
            with lock:
                missing = [key for key in keys if key not in cache]
            self._loads.add(len(missing))
            rows = load_many(missing)
            with lock:
                cache.update(rows)
                return {key: cache[key] for key in keys if key in cache}

        def write(key: int, version: int) -> None:
            write_row(key, version)
            with lock:
                cache.pop(key, None)

        self.read, self.read_many, self.write = read, read_many, write


@pytest.fixture
def registered() -> Iterator[None]:
    base.load()
    base.competitor(DictCache)
    try:
        yield
    finally:
        del base.COMPETITORS[DictCache.name]


def test_a_competitor_registered_once_is_in_every_table_of_its_kind(
    registered: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--list"]) == 0
    assert "dict-cache" in capsys.readouterr().out

    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    workloads = "hit,miss,zipf,mixed,stampede,pool"
    argv = ["--quick", "--repeat", "1", "--workload", workloads, "--json", str(out)]
    assert main([*argv, "--plot", str(png)]) == 0
    printed = capsys.readouterr().out

    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    tables = {(r["workload"], r["case"]) for r in results}
    assert tables >= CACHE_TABLES
    assert {(r["workload"], r["case"]) for r in results if r["competitor"] == "dict-cache"} == (
        CACHE_TABLES  # and not pool's, a table of no-cache engines
    )
    assert printed.count("\n  dict-cache ") == len(CACHE_TABLES)
    mixed = [r for r in results if r["competitor"] == "dict-cache" and r["workload"] == "mixed"]
    # Checked like every cache's (a fill racing a write can still store the old row here).
    assert len(mixed) == 2 and all(r["stale_reads"] is not None for r in mixed)


def test_the_chart_draws_a_registered_competitor_in_its_colour(registered: None) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from benchmarks.plot import chart
    from benchmarks.results import Result

    row = Result(
        workload="stampede",
        case="",
        competitor="dict-cache",
        label="",
        threads=64,
        ops_per_s=1.0,
        p50_us=1.0,
        p99_us=2.0,
        hit_ratio=0.5,
        stale_reads=None,
        queries=3,
        queries_max=3,
        repetitions=1,
        extra={"chart": "queries"},
    )
    figure = chart([row], "test")
    try:
        colours = {to_hex(p.get_facecolor()) for axis in figure.axes for p in axis.patches}
        assert "#123456" in colours
    finally:
        plt.close(figure)


class Echo(base.Workload):
    """A workload of the simplest kind: the hit path of every cache, 100 reads."""

    name = "echo"
    summary = "every cache reads one warm key 100 times"
    rules = (
        Rule("dal answers every read", lambda rows: rows["dal"].hit_ratio, "==", 1, "of reads"),
    )

    def cases(self) -> list[base.Case]:
        key = self.env.keys.ranked[0]

        def measure(competitor: base.Competitor, rep: int) -> Sample:
            for _ in range(100):
                competitor.read(key)
            return Sample(ops=100, wall_ns=1_000, latencies_ns=[10] * 100, reads=100)

        return [
            base.Case(
                workload=self.name,
                name="",
                describe="100 reads of one warm key",
                threads=1,
                competitors=self.competitors(base.Kind.CACHE),
                measure=measure,
                prepare=lambda competitor: competitor.prime([key]),
            )
        ]


def test_a_workload_registered_once_runs_and_has_its_targets_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base.load()
    base.workload(Echo)
    try:
        out = tmp_path / "bench.json"
        assert main(["--quick", "--repeat", "1", "--workload", "echo", "--json", str(out)]) == 0
    finally:
        del base.WORKLOADS[Echo.name]
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert {r["competitor"] for r in doc["results"]} >= {"dal", "cachetools", "dogpile"}
    (target,) = doc["targets"]
    assert target["workload"] == "echo" and target["passed"] is True
    (line,) = [line for line in printed.splitlines() if "dal answers every read" in line]
    assert line.split()[:2] == ["PASS", "echo"] and line.endswith("(target == 1 of reads)")
