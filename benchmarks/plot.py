"""A PNG of throughput and p99 latency per competitor and case (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import COMPETITORS, Competitor, load
from .results import Result

__all__ = ["chart", "plot"]

#: The derived row's colour; every competitor's is its class's ``colour``.
IDEAL_COLOUR = "#bcbd22"


def _colour(name: str) -> str:
    if name == "ideal":
        return IDEAL_COLOUR
    cls = COMPETITORS.get(name)
    return cls.colour if cls is not None else Competitor.colour


def _names(rows: Sequence[Result]) -> list[str]:
    """The competitors of ``rows`` in registration order (each looks the same in every chart)."""
    present = dict.fromkeys(r.competitor for r in rows)
    order = [*COMPETITORS, "ideal"]
    return [n for n in order if n in present] + sorted(set(present) - set(order))


def plot(results: Sequence[Result], path: Path, title: str) -> None:
    """Write the chart of ``results`` to ``path`` as a PNG."""
    figure = chart(results, title)
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def chart(results: Sequence[Result], title: str) -> Any:
    """Throughput and p99 latency per case (log scales), then what sets caches apart:
    stale reads in the mixed workloads and queries a stampede on one cold key costs."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    load()
    rows = {(f"{r.workload} {r.case}".strip(), r.competitor): r for r in results}
    cases = list(dict.fromkeys(case for case, _ in rows))
    names = _names(results)
    groups = {case: [n for n in names if (case, n) in rows] for case in cases}
    width = 0.84 / max(len(group) for group in groups.values())
    figure, axes = plt.subplot_mosaic(
        [["top", "top"], ["bottom", "bottom"], ["stale", "stampede"]],
        figsize=(max(10.0, 1.3 * len(cases)), 12.0),
        height_ratios=[3, 3, 2.2],
        layout="constrained",
    )
    top, bottom = axes["top"], axes["bottom"]
    bottom.sharex(top)
    labelled: set[str] = set()
    for c, case in enumerate(cases):
        group = groups[case]
        for j, name in enumerate(group):
            row = rows[case, name]
            x = c + (j - (len(group) - 1) / 2) * width
            colour = _colour(name)
            label = None if name in labelled else name
            labelled.add(name)
            top.bar(x, row.ops_per_s, width, color=colour, label=label)
            if row.p99_us:
                bottom.bar(x, row.p99_us, width, color=colour)
    top.set_yscale("log")
    top.set_ylabel("throughput, requests/s (higher is better)")
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, µs (lower is better)")
    bottom.set_xticks(range(len(cases)), cases, rotation=20, ha="right")
    top.tick_params(labelbottom=False)
    for axis in (top, bottom):
        axis.grid(axis="y", which="major", alpha=0.3)
    # Above the panels, where no bar can be under it.
    figure.legend(ncols=min(len(names), 8), fontsize="small", loc="outside upper center")
    top.set_title(title)
    _counts(
        axes["stale"],
        [r for r in results if r.extra.get("chart") == "stale_reads"],
        lambda r: r.stale_reads or 0,
        "stale reads, all repetitions (fewer is better)",
    )
    _counts(
        axes["stampede"],
        [r for r in results if r.extra.get("chart") == "queries"],
        lambda r: r.queries,
        "queries for one cold key read by a stampede (fewer is better)",
    )
    return figure


def _counts(
    axis: Any, rows: Sequence[Result], value: Callable[[Result], float], title: str
) -> None:
    """Bars of a count per case and competitor, each labelled with its value and name."""
    cases = list(dict.fromkeys(_title(r) for r in rows))
    names = _names(rows)
    ticks: list[float] = []
    labels: list[str] = []
    for c, case in enumerate(cases):
        group = [r for n in names for r in rows if r.competitor == n and _title(r) == case]
        width = 0.84 / max(len(group), 1)
        for j, row in enumerate(group):
            x = c + (j - (len(group) - 1) / 2) * width
            bar = axis.bar(x, value(row), width * 0.9, color=_colour(row.competitor))
            axis.bar_label(bar, labels=[f"{value(row):,.0f}"], fontsize="small")
            ticks.append(x)
            labels.append(row.competitor)
        if len(cases) > 1:
            label = case.replace(" ", "\n", 1)  # "async zipf 64 coroutines" in two lines
            axis.text(c, 0.97, label, transform=axis.get_xaxis_transform(), ha="center", va="top")
    axis.set_xticks(ticks, labels, rotation=45, ha="right", fontsize="small")
    axis.set_title(title, fontsize="medium")
    axis.margins(y=0.35)  # room for the case names above the bars
    if not rows:
        axis.text(0.5, 0.5, "not run", ha="center", va="center", transform=axis.transAxes)


def _title(row: Result) -> str:
    return f"{row.workload} {row.case}".strip()
