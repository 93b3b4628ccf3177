"""PR.md: a short markdown summary of a run, fit for a pull-request comment (`harness report RUN --format pr`):
the recipe and task(s), a compact table per task (score with its CI, the verdict against the best, peak
memory, cost), the recommendation, and a link to REPORT.md. Rendered from stored results only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.analysis.decision import ALPHA, recommend, sentence, with_verdicts, workload_volume
from harness.report.columns import fmt_bytes, fmt_metric, fmt_score
from harness.results import RunStore, task_name, write_atomic
from harness.rows import RowLike

LEGEND = (
    f"≈ not significantly different from the best, ▼ significantly worse (paired test, Holm-adjusted "
    f"p < {ALPHA}), ⚠ a floor warning (see the report)"
)


def _table(rows: Sequence[RowLike], metric: str) -> list[str]:
    lines = [f"| technique | {metric} [95% CI] | vs best | peak mem | cost |", "|---|---:|---|---:|---:|"]
    for r in rows:
        name = r["technique"] + ("" if r["status"] == "ok" else f" ({r['status']})")
        cost = "–" if r.get("cost_usd") is None else f"${r['cost_usd']:.4f}"
        lines.append(
            f"| {name} | {fmt_score(r)} | {r.get('vs_best') or '–'} | "
            f"{fmt_bytes(r.get('peak_memory_bytes'))} | {cost} |"
        )
    return lines


def render_pr(stores: list[RunStore], report_path: Path, link: str | None = None) -> str:
    """The summary; its last line links REPORT.md at `link` (e.g. a CI artifact's URL), else at its path
    relative to the current folder."""
    meta, many = stores[0].meta, len(stores) > 1
    recipe = meta["recipe"]
    seeds = meta.get("seeds") or [meta.get("seed")]
    mode = recipe.get("eval", {}).get("heldout", {}).get("mode")
    lines = [
        f"### {recipe['name']}: {recipe['model']['id']} on {', '.join(task_name(s) for s in stores)}",
        "",
        f"Run `{meta.get('run_id')}` on {meta.get('device_name')}, seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))}. {LEGEND}.",
    ]
    for store in stores:
        predictions = store.finished_predictions()
        rows = with_verdicts(store.answering_rows(), predictions)
        pick = sentence(recommend(rows, predictions, volume=workload_volume(store.meta)), lambda head: f"**{head}**")
        metric = fmt_metric({"metric": store.meta["task"]["metric"], "eval_mode": mode})
        lines += [""] + ([f"**{task_name(store)}**", ""] if many else []) + _table(rows, metric) + ["", pick]
    link = link or os.path.relpath(report_path)
    lines += ["", f"Full report (plots, per-label results, how each figure was measured): [REPORT.md]({link})"]
    return "\n".join(lines) + "\n"


def write_pr(stores: list[RunStore], folder: Path, link: str | None = None) -> tuple[Path, str]:
    """Write PR.md beside REPORT.md in folder; returns its path and text."""
    text = render_pr(stores, Path(folder) / "REPORT.md", link)
    path = Path(folder) / "PR.md"
    write_atomic(path, text)
    return path, text
