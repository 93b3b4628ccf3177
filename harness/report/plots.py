"""PNG plots for REPORT.md: score against peak memory and against cost, with the Pareto front drawn; a
study's search trials and learning curves; cost of ownership against request volume."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from harness.analysis.decision import pareto_front, scored_rows
from harness.figures import FIGURES
from harness.report.text import file_name
from harness.results import own_folder
from harness.rows import RowLike
from harness.yamlconfig import ConfigWarning

Draw = TypeVar("Draw", bound=Callable[..., "Path | None"])


def optional(draw: Draw) -> Draw:
    """A plot is an extra: one that cannot be drawn or written (a file name the file system refuses, a full
    disk, a value matplotlib cannot place) is left out of REPORT.md with a warning, and the report, written
    after every cell finished, is still written."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        try:
            return draw(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — whatever failed, the report matters more than its picture
            import matplotlib.pyplot as plt

            plt.close("all")
            path = inspect.signature(draw).bind(*args, **kwargs).arguments.get("path")
            warnings.warn(
                f"plot {path} left out of the report: {type(exc).__name__}: {exc}", ConfigWarning, stacklevel=2
            )
            return None

    return drawn  # type: ignore[return-value]


AXES = {  # file suffix: (row key, axis label from the figure table, scale to display units, tick format)
    "memory": ("peak_memory_bytes", f"{FIGURES['peak_memory_bytes'].label} (GiB)", 1 / 2**30, "{:.1f}"),
    "cost": ("cost_usd", f"{FIGURES['cost_usd'].label} (USD)", 1.0, "${:.4f}"),
}


@optional
def plot_tradeoff(rows: Sequence[RowLike], axis: str, title: str, path: Path) -> Path | None:
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
        ax.errorbar(
            x,
            y,
            yerr=[[y - low], [high - y]],
            fmt="o",
            color="tab:blue" if on_front else "tab:gray",
            capsize=3,
            alpha=0.9,
        )
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    by_name = {name: (x, y) for name, x, y, _ in points}
    ax.plot(
        [by_name[n][0] for n in front], [by_name[n][1] for n in front], "--", color="tab:blue", label="Pareto front"
    )
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # few, readable ticks: costs are tiny numbers
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: tick.format(value)))
    ax.set_ylabel(f"score ({points[0][3].get('metric') or 'metric'}), 95% CI")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(plt, fig, path)


def plot_path(task: str, what: str) -> str:
    """Where one of a task's plots goes, relative to the report folder: plots/<task>-<what>, the task's
    name made a safe file name (it comes from results.json), so no plot is written outside plots/."""
    return f"plots/{file_name(task)}-{what}"


def _figure(panels: int = 1):
    """A figure for files only (Agg: no display), one panel per axis in a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), dpi=110, squeeze=False)
    return plt, fig, list(axes[0])


def _save(plt, fig, path: Path) -> Path:
    """Written beside, then renamed: a run killed while plotting leaves no half-written image."""
    fig.tight_layout()
    own_folder(path.parent)
    partial = path.with_name(f".{path.name}.partial")
    fig.savefig(partial, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    partial.replace(path)
    return path


@optional
def plot_search(
    points: Mapping[str, Mapping],
    chosen: Mapping[str, float],
    labels: Mapping[str, str],
    title: str,
    path: Path,
) -> Path | None:
    """Objective vs the searched value (or the trial number when several settings were searched), one
    series per technique, its chosen trial starred and pruned trials hollow (their loss is from the step
    they stopped at). points: technique -> {x_label, log, finished: [(x, objective)], pruned: [...]}
    (study_sections.search_points); labels: technique -> its objective's axis label. A panel per
    (objective, x axis). None when no trial has a value."""
    drawn = {name: p for name, p in points.items() if p["finished"] or p["pruned"]}
    if not drawn:
        return None
    from matplotlib.ticker import MaxNLocator

    panels = list(dict.fromkeys((labels[name], p["x_label"], p["log"]) for name, p in drawn.items()))
    plt, fig, axes = _figure(len(panels))
    for ax, (label, x_label, log) in zip(axes, panels):
        for name, p in drawn.items():
            if (labels[name], p["x_label"], p["log"]) != (label, x_label, log):
                continue
            finished = sorted(p["finished"])
            (line,) = ax.plot([x for x, _ in finished], [v for _, v in finished], "o-", alpha=0.8, label=name)
            if p["pruned"]:
                ax.plot(*zip(*p["pruned"]), "o", mfc="none", color=line.get_color(), label=f"{name} (pruned, partial)")
            pick = dict(finished).get(chosen[name]) if name in chosen else None
            if pick is not None:
                ax.plot(chosen[name], pick, "*", markersize=16, color=line.get_color(), markeredgecolor="black")
        ax.plot([], [], "*", color="gray", markersize=12, markeredgecolor="black", label="chosen")
        ax.set_xlabel(x_label)
        if log:
            ax.set_xscale("log")
        elif x_label == "trial":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    return _save(plt, fig, path)


@optional
def plot_learning_curve(
    curves: Mapping[str, Sequence[tuple[int, float, float, int]]],
    levels: Mapping[str, tuple[float, float | None, float | None]],
    ylabel: str,
    title: str,
    path: Path,
) -> Path | None:
    """Score vs training examples (log-2 axis): per trained technique its (examples, mean, std, n) points
    with std error bars; per technique that does not train, a horizontal line at its score, shaded over
    its 95% CI. None when no trained technique has a point."""
    drawn = {name: list(points) for name, points in curves.items() if points}
    if not drawn:
        return None
    from matplotlib.ticker import FuncFormatter

    plt, fig, (ax,) = _figure()
    for name, points in drawn.items():
        ax.errorbar(
            [p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], fmt="o-", capsize=3, label=name
        )
    for index, (name, (score, low, high)) in enumerate(levels.items()):
        color = f"C{len(drawn) + index}"  # continue the line colours: a level never shares a curve's colour
        ax.axhline(score, linestyle="--", color=color, label=name)
        if low is not None and high is not None:
            ax.axhspan(low, high, color=color, alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)  # outside: many lines cross the plot
    return _save(plt, fig, path)


# Training-curve panels: (log key, axis label); a panel is drawn when some technique logged the key.
CURVE_PANELS = (
    ("loss", "training loss"),
    ("reward", "mean reward (GRPO)"),
    ("rewards/accuracies", "DPO reward accuracy"),
)


@optional
def plot_training(rows: Sequence[RowLike], title: str, path: Path) -> Path | None:
    """Per trained technique, its logged training figures against the optimizer step: the loss, GRPO's
    mean reward, DPO's reward accuracy (each a panel). None when no row has a curve of two points."""
    curves = {
        r["technique"]: r["train_curve"]
        for r in rows
        if r.get("status") == "ok" and len(r.get("train_curve") or []) >= 2
    }
    panels = [
        (key, label)
        for key, label in CURVE_PANELS
        if any(sum(key in point for point in curve) >= 2 for curve in curves.values())
    ]
    if not panels:
        return None
    plt, fig, axes = _figure(len(panels))
    for ax, (key, label) in zip(axes, panels):
        for name, curve in curves.items():
            points = [(p["step"], p[key]) for p in curve if key in p and "step" in p]
            if len(points) >= 2:
                ax.plot(*zip(*points), marker=".", label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


@optional
def plot_cost_at_volume(rows: Sequence[RowLike], title: str, path: Path, workload: float | None = None) -> Path | None:
    """Cost of ownership (training once, then serving each request) against request volume, one line per
    technique, both axes logarithmic; the workload's volume as a dashed vertical line. None when no row
    has a cost line."""
    import math

    import numpy as np

    from harness.analysis import ownership

    rows = ownership.costed(rows)
    if not rows:
        return None
    marks = [c.volume for c in ownership.crossings(rows)] + ([workload] if workload else [])
    top = max(6, math.ceil(math.log10(10 * max(marks, default=1))))  # past every crossing: at least 1M requests
    volumes = np.logspace(0, top, 200)
    plt, fig, (ax,) = _figure()
    for row in rows:
        ax.plot(volumes, [ownership.total_cost(row, v) for v in volumes], label=row["technique"])
    if workload:
        ax.axvline(workload, linestyle="--", color="gray", label=f"workload ({ownership.volume_text(workload)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests served (log scale)")
    ax.set_ylabel("cost: training + serving (USD, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    return _save(plt, fig, path)


@optional
def plot_serving(rows: Sequence[RowLike], title: str, path: Path, target: float | None = None) -> Path | None:
    """Served throughput (requests/s) against p95 latency, one line per load-tested technique, each point
    labelled with its concurrency; the workload's p95 target as a dashed vertical line. None when no
    technique has a measured level."""
    from matplotlib.ticker import MaxNLocator

    measured = [r for r in rows if r.get("serving_levels")]
    if not measured:
        return None
    plt, fig, (ax,) = _figure()
    ax.xaxis.set_major_locator(MaxNLocator(6))
    if target:
        ax.axvline(target, linestyle="--", color="gray", label=f"p95 target ({target:g}s)")
    for row in measured:
        levels = row["serving_levels"]
        x = [level["latency_p95_seconds"] for level in levels]
        y = [level["requests_per_second"] for level in levels]
        ax.plot(x, y, marker="o", label=row["technique"])
        for level, px, py in zip(levels, x, y):
            ax.annotate(str(level["concurrency"]), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("latency p95 per request (s)")
    ax.set_ylabel("requests/s")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(plt, fig, path)
