"""PNG plots for REPORT.md: score against peak memory and against cost, with the Pareto front drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.report.decision import pareto_front, scored_rows

AXES = {  # file suffix: (row key, axis label, scale to display units, tick format)
    "memory": ("peak_memory_bytes", "peak memory (GiB)", 1 / 2**30, "{:.1f}"),
    "cost": ("cost_usd", "cost (USD)", 1.0, "${:.4f}"),
}


def plot_tradeoff(rows: Sequence[dict], axis: str, title: str, path: Path) -> Path | None:
    """Score (with its 95% CI) against the axis's figure for each scored technique; the Pareto front
    (nothing else is both cheaper and better) as a line. None when fewer than two techniques have both."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, MaxNLocator

    key, label, scale, tick = AXES[axis]
    points = [(r["technique"], r[key] * scale, r["score"], r) for r in scored_rows(rows) if r.get(key) is not None]
    if len(points) < 2:
        return None
    front = pareto_front([(name, x, y) for name, x, y, _ in points])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, x, y, row in points:
        on_front = name in front
        low, high = row.get("ci_low", y), row.get("ci_high", y)
        ax.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="o", color="tab:blue" if on_front else "tab:gray",
                    capsize=3, alpha=0.9)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    by_name = {name: (x, y) for name, x, y, _ in points}
    ax.plot([by_name[n][0] for n in front], [by_name[n][1] for n in front], "--", color="tab:blue",
            label="Pareto front")
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # few, readable ticks: costs are tiny numbers
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: tick.format(value)))
    ax.set_ylabel(f"score ({points[0][3].get('metric') or 'metric'}), 95% CI")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
