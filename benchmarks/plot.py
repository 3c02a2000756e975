"""A PNG of throughput and p99 latency per competitor and case (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .stats import Result

__all__ = ["plot"]

#: Fixed colours, so a competitor looks the same in every chart; dal stands out.
COLOURS = {
    "dal": "#d62728",
    "lru-floor": "#7f7f7f",
    "ideal": "#bcbd22",
    "cachetools": "#1f77b4",
    "cachedmethod": "#17becf",
    "dogpile": "#9467bd",
    "core": "#2ca02c",
    "orm": "#8c564b",
    "core-nullpool": "#e377c2",
}


def plot(results: Sequence[Result], path: Path, title: str) -> None:
    """Grouped bars, one group per case: throughput above, p99 latency below (log scales)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = {(f"{r.workload} {r.case}".strip(), r.competitor): r for r in results}
    cases = list(dict.fromkeys(case for case, _ in rows))
    names = [n for n in COLOURS if any(r.competitor == n for r in results)]
    names += sorted({r.competitor for r in results} - set(names))
    groups = {case: [n for n in names if (case, n) in rows] for case in cases}
    width = 0.84 / max(len(group) for group in groups.values())
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(10.0, 1.3 * len(cases)), 8.5), sharex=True, layout="constrained"
    )
    labelled: set[str] = set()
    for c, case in enumerate(cases):
        group = groups[case]
        for j, name in enumerate(group):
            row = rows[case, name]
            x = c + (j - (len(group) - 1) / 2) * width
            colour = COLOURS.get(name, "#444444")
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
    for axis in (top, bottom):
        axis.grid(axis="y", which="major", alpha=0.3)
    top.legend(ncols=min(len(names), 5), fontsize="small", loc="upper right")
    top.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
