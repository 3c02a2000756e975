"""What the run shows: a progress bar while it runs, then its results as a readable
table and as JSON."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from .config import Config
from .drivers import MAX_OVERFLOW, redact
from .results import Result, Target

__all__ = ["DEFINITIONS", "Progress", "describe_run", "render", "write_json"]

#: What the columns mean; printed under the table and stored in the JSON.
DEFINITIONS = {
    "ops_per_s": "requests served per second, all threads together (median of repetitions)",
    "p50_us/p99_us": "per-call latency percentiles in microseconds, timing loop cost removed",
    "hit_ratio": "share of reads the cache answered (1 - misses / reads)",
    "stale_reads": (
        "reads that returned a version older than a write to that row completed before "
        "the read began, summed over repetitions"
    ),
    "queries": "statements sent to the database per run (median), counted on the engine",
    "ratio": "the case's reference throughput / this row's: 2.0 = the reference is twice as fast",
    "server_cpu_us": "http: CPU time of the server process per request (median of repetitions)",
    "of_ideal": (
        "throughput / the compulsory-miss ideal: a cache that misses only on a key's first "
        "request (distinct keys / requests), paying the raw floor of a read for those (the "
        "driver's prepared select on a held connection, measured in the same run) and the "
        "locked-LRUCache floor for the rest"
    ),
}

_COLUMNS = ("competitor", "ops/s", "p50 µs", "p99 µs", "hit %", "stale", "queries", "ratio", "")


def describe_run(
    config: Config, *, timer_overhead_ns: int, server: str, libraries: Sequence[str]
) -> dict[str, Any]:
    """The ``meta`` of the JSON: what ran, where, with which versions (of ``libraries``:
    distribution names)."""
    return {
        "db": redact(config.url),
        "server": server,
        "rows": config.rows,
        "requests": config.requests,
        "zipf": config.zipf,
        "cache_size": config.cache_size,
        "threads": list(config.threads),
        "pool_size": config.pool_size,
        "max_overflow": MAX_OVERFLOW,
        "repeat": config.repeat,
        "seed": config.seed,
        "quick": config.quick,
        "workloads": list(config.workloads),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {
            name: _version(name)
            for name in dict.fromkeys(("sqlalchemy-dal", "SQLAlchemy", *libraries))
        },
        "timer_overhead_ns": timer_overhead_ns,
        "definitions": DEFINITIONS,
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def render(
    results: Sequence[Result],
    targets: Sequence[Target],
    meta: Mapping[str, Any],
    describe: Mapping[tuple[str, str], str],
) -> str:
    """The table, one section per case, then the targets."""
    lines = [
        f"dal benchmark: {meta['server']}, {meta['rows']:,} rows, seed {meta['seed']}, "
        f"medians of {meta['repeat']} interleaved repetitions, {meta['cpus']} CPUs, "
        f"Python {meta['python']}",
        f"threads: N > 1 run on a ThreadPoolExecutor(max_workers=N); every pool: "
        f"pool_size={meta['pool_size']}, max_overflow={meta['max_overflow']}",
    ]
    sections: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        sections.setdefault((result.workload, result.case), []).append(result)
    for (workload, case), rows in sections.items():
        title = f"{workload} {case}".strip()
        reference = rows[0].reference
        lines += ["", f"{title}: {describe.get((workload, case), '')}"]
        if reference:
            lines[-1] += f" (ref = {reference})"
        table = [_COLUMNS] + [_cells(r) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
        for row in table:
            cells = [row[0].ljust(widths[0])]
            cells += [
                cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)
            ]
            lines.append(("  " + "  ".join(cells) + "  " + row[-1]).rstrip())
    if "memory" in meta:
        lines += ["", _memory_line(meta["memory"])]
    if targets:
        lines += ["", f"Targets (set for PostgreSQL; this run: {meta['server']})"]
        width = max(len(f"{t.workload} {t.case}") for t in targets)
        for t in targets:
            verdict = "PASS" if t.passed else "MISS"
            where = f"{t.workload} {t.case}".ljust(width)
            bound = f"target {t.op} {_with_unit(t.bound, t.unit)}"
            if t.limit is not None:
                bound += f"; {t.limit.text}: at most {_with_unit(t.limit.value, t.unit)}"
            lines.append(
                f"  {verdict}  {where}  {t.text}: {_with_unit(t.measured, t.unit)} ({bound})"
            )
    lines += ["", "Columns:"]
    lines += [f"  {name}: {text}" for name, text in DEFINITIONS.items()]
    return "\n".join(lines)


def _memory_line(held: Mapping[str, Any]) -> str:
    return (
        f"memory: {held['rows']:,} cached rows, by tracemalloc: dal "
        f"{held['dal_bytes_per_row']:,.0f} bytes/row, a plain dict of tuples "
        f"{held['dict_bytes_per_row']:,.0f} bytes/row ({held['ratio']:.2f}x)"
    )


def _cells(r: Result) -> tuple[str, ...]:
    notes = []
    if "of_ideal" in r.extra and r.competitor != "ideal":
        notes.append(f"{r.extra['of_ideal']:.0%} of ideal")
    if "server_cpu_us" in r.extra:
        notes.append(f"server CPU {r.extra['server_cpu_us']:,.0f} µs/request")
    if r.competitor == "ideal":
        notes.append(f"{r.extra['distinct_keys']:,} distinct keys / {r.extra['requests']:,}")
    return (
        r.competitor,
        f"{r.ops_per_s:,.0f}",
        _micros(r.p50_us),
        _micros(r.p99_us),
        "-" if r.hit_ratio is None else f"{100 * r.hit_ratio:.1f}",
        "-" if r.stale_reads is None else f"{r.stale_reads:,}",
        _number(r.queries),
        "-" if r.ratio is None else _number(r.ratio),
        "  ".join(notes),
    )


def _micros(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _with_unit(value: float, unit: str) -> str:
    return f"{_number(value)}x" if unit == "x" else f"{_number(value)} {unit}"


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def write_json(
    path: Path, meta: Mapping[str, Any], results: Sequence[Result], targets: Sequence[Target]
) -> None:
    document = {
        "meta": dict(meta),
        "results": [r.as_json() for r in results],
        "targets": [t.as_json() for t in targets],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


class Progress:
    """Counts ``total`` steps; ``note`` prints a line without breaking the bar."""

    def __init__(self, total: int = 0, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._start = time.monotonic()
        self._drawn = False

    def step(self, text: str) -> None:
        """Start step ``done + 1`` of ``total``, described by ``text``."""
        self.done += 1
        elapsed = time.monotonic() - self._start
        count = f"{self.done:>{len(str(self.total))}}/{self.total}"
        if not self.tty:
            print(f"[{count} {elapsed:5.1f}s] {text}", file=self.stream, flush=True)
            return
        width = shutil.get_terminal_size((80, 20)).columns
        filled = round(20 * (self.done - 1) / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {count} {elapsed:5.1f}s {text}"
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def note(self, text: str) -> None:
        """A message line, above the bar on a terminal."""
        self._clear()
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
            self._drawn = False
