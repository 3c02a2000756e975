"""``python -m benchmarks``: the command line, and one run from data to report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from . import data, report
from .base import COMPETITORS, WORKLOADS, Case, available, load, run_case
from .config import DEFAULTS, QUICK, Config, Env
from .drivers import QueryCounter, created_database, make_engine, redact
from .measure import Memory, calibrate_timer, memory
from .report import Progress
from .results import Result, evaluate

__all__ = ["main", "parse"]


def _names(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return tuple(WORKLOADS)
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if "all" in names:
        return tuple(WORKLOADS)
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)} or all"
        )
    return tuple(dict.fromkeys(names))


def _threads(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of thread counts: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmark dal against no cache and the caches users pick (--list shows them) on "
            "the same data and request sequences, interleaved, reporting medians."
        ),
        epilog="workloads: " + "; ".join(f"{n}: {w.summary}" for n, w in WORKLOADS.items()),
    )
    add = parser.add_argument
    add(
        "--db",
        metavar="URL",
        help="database URL (default: an embedded SQLite file in a temporary directory)",
    )
    add(
        "--workload",
        action="append",
        metavar="NAME[,NAME]",
        help=f"workloads to run, repeatable or comma-separated (default: all of "
        f"{', '.join(WORKLOADS)})",
    )
    add(
        "--quick",
        action="store_true",
        help="a small run that finishes in seconds (for tests); explicit options still apply",
    )
    add("--seed", type=int, help=f"seed of the data and request sequences ({DEFAULTS['seed']})")
    add("--rows", type=int, help=f"rows in the table ({DEFAULTS['rows']:,})")
    add(
        "--requests",
        type=int,
        help=f"zipf requests ({DEFAULTS['requests']:,}); other workloads scale from it",
    )
    add(
        "--threads",
        type=_threads,
        metavar="N[,N]",
        help="thread counts for zipf; mixed uses the largest (1,8)",
    )
    add("--zipf", type=float, metavar="S", help=f"Zipf exponent ({DEFAULTS['zipf']})")
    add("--cache-size", type=int, help=f"entries per cache ({DEFAULTS['cache_size']:,})")
    add("--repeat", type=int, help=f"interleaved repetitions per case ({DEFAULTS['repeat']})")
    add("--json", type=Path, metavar="PATH", help="write the results as JSON")
    add("--plot", type=Path, metavar="PATH", help="write a PNG chart (needs matplotlib)")
    add("--list", action="store_true", help="list the workloads and competitors, and exit")
    return parser


def parse(argv: Sequence[str] | None = None) -> Config | None:
    """The run's ``Config``, or None after ``--list``."""
    load()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, workload in WORKLOADS.items():
            print(f"workload    {name:<14} {workload.summary}")
        for name, competitor in COMPETITORS.items():
            print(f"competitor  {name:<14} {competitor.label}")
        return None
    preset = QUICK if args.quick else DEFAULTS
    sizes: dict[str, Any] = {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in preset.items()
    }
    try:
        return Config(
            url=args.db or "",
            workloads=_names(args.workload),
            quick=args.quick,
            json_path=args.json,
            plot_path=args.plot,
            **sizes,
        )
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))


@contextlib.contextmanager
def _database(config: Config, progress: Progress) -> Iterator[Config]:
    """The config with a URL: the one given (its database created if missing, and then
    dropped afterwards), or a SQLite file removed afterwards."""
    if config.url:
        with created_database(config.url) as created:
            if created:
                progress.note(f"created the database of {redact(config.url)}; dropped after")
            yield config
        return
    with tempfile.TemporaryDirectory(prefix="dal-bench-") as directory:
        yield dataclasses.replace(config, url=f"sqlite:///{Path(directory) / 'bench.sqlite3'}")


def _server(engine: Engine) -> str:
    with engine.connect():
        version = ".".join(str(p) for p in engine.dialect.server_version_info or ())
    return f"{engine.dialect.name} {version}"


def run(config: Config, progress: Progress) -> tuple[list[Result], list[Case], str, int, Memory]:
    """Create the data, run every case, drop the data; rows, cases, server, overhead, memory."""
    engine = make_engine(config.url, pool_size=config.pool_size)
    counter = QueryCounter(engine)  # before the first connection, which it instruments
    loop = asyncio.new_event_loop()
    try:
        server = _server(engine)
        progress.note(f"creating {config.rows:,} rows in {redact(config.url)} ({server})")
        data.create(engine, config.rows, config.seed)
        env = Env(
            config=config,
            engine=engine,
            counter=counter,
            keys=data.KeySpace(config.rows, config.seed),
            timer_overhead_ns=calibrate_timer(),
            loop=loop,
        )
        cases = [
            dataclasses.replace(case, competitors=available(case.competitors, progress))
            for name in config.workloads
            for case in WORKLOADS[name](env).cases()
        ]
        cases = [case for case in cases if case.competitors]
        progress.total = sum(len(case.competitors) for case in cases) * config.repeat
        results = [row for case in cases for row in run_case(env, case, progress)]
        progress.note("measuring bytes per cached row")
        held = memory(env)
        return results, cases, server, env.timer_overhead_ns, held
    finally:
        loop.close()
        data.drop(engine)
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv)
    if config is None:
        return 0
    started = time.monotonic()
    progress = Progress()
    try:
        with _database(config, progress) as config:
            results, cases, server, overhead, held = run(config, progress)
    except KeyboardInterrupt:
        progress.close()
        print("interrupted; the benchmark table was dropped", file=sys.stderr)
        return 130
    progress.close()
    libraries = [c.library for c in COMPETITORS.values() if c.library]
    meta = report.describe_run(
        config, timer_overhead_ns=overhead, server=server, libraries=libraries
    )
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["memory"] = held.as_json()
    checked = evaluate(results, {name: w.rules for name, w in WORKLOADS.items()})
    describe = {(case.workload, case.name): case.describe for case in cases}
    print(report.render(results, checked, meta, describe))
    if config.json_path is not None:
        report.write_json(config.json_path, meta, results, checked)
    if config.plot_path is not None:
        from .plot import plot

        plot(results, config.plot_path, f"dal benchmark on {server}, {config.rows:,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
