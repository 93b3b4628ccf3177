"""Comparing two runs: `harness compare` (deltas per technique and metric, with significance where the
same examples were scored) and `harness check` (the CI gate: regressions beyond thresholds)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import baseline as floor
from harness import figures, metrics
from harness.evaluate import lmeval
from harness.report.decision import paired_p
from harness.results import RunStore, open_runs, task_name
from harness.yamlconfig import ConfigError


@dataclass(frozen=True)
class Pair:
    task: str
    technique: str
    a: dict | None  # the row in the first (baseline) run; None when missing there
    b: dict | None
    store_a: RunStore | None
    store_b: RunStore | None

    def score_p(self) -> float | None:
        """The paired p between the two runs' per-example values (McNemar under a 0/1 metric, Wilcoxon
        under a continuous one); None unless the same examples were scored with the same metric."""
        if not (self.store_a and self.store_b and self.a and self.b) or self.a.get("metric") != self.b.get("metric"):
            return None
        predictions = {"a": self.store_a.predictions(self.technique), "b": self.store_b.predictions(self.technique)}
        return paired_p(predictions, "a", "b", metrics.is_binary(self.a.get("metric")))


def pairs(baseline: str | Path, run: str | Path) -> Iterator[Pair]:
    """Rows of the two runs matched by task and technique, in the baseline's order, then new ones."""
    by_task_a = {task_name(s): s for s in open_runs(baseline)}
    by_task_b = {task_name(s): s for s in open_runs(run)}
    for task in [*by_task_a, *(t for t in by_task_b if t not in by_task_a)]:
        sa, sb = by_task_a.get(task), by_task_b.get(task)
        rows_a = {r["technique"]: r for r in sa.ordered_rows()} if sa else {}
        rows_b = {r["technique"]: r for r in sb.ordered_rows()} if sb else {}
        for technique in [*rows_a, *(t for t in rows_b if t not in rows_a)]:
            yield Pair(task, technique, rows_a.get(technique), rows_b.get(technique), sa, sb)


def compared_metrics(pair: Pair) -> list[str]:
    rows = [r for r in (pair.a, pair.b) if r]
    return [m for m in [*figures.compared(), *lmeval.columns(rows)] if any(r.get(m) is not None for r in rows)]


def better(metric: str) -> bool:
    """Whether a higher value of the figure is better (the figure table says; unknown figures: higher)."""
    figure = figures.get(metric)
    return figure is None or figure.better != "lower"


# --- check ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float
    relative: bool  # limit is a fraction of the baseline figure ("10%"), else an absolute amount

    def exceeded(self, change: float, baseline: float) -> bool:
        allowed = self.limit * abs(baseline) if self.relative else self.limit
        return change > allowed + 1e-12

    def __str__(self) -> str:
        return f"{self.limit:.0%}" if self.relative else f"{self.limit:g}"


def parse_threshold(text: str, source: str = "threshold") -> Threshold:
    """'score=0.02' (absolute) or 'peak_memory_bytes=10%' (relative to the baseline)."""
    match = re.fullmatch(r"\s*([\w:.\-\[\]]+)\s*=\s*([0-9.]+)\s*(%?)\s*", str(text))
    if not match:
        raise ConfigError(
            f"{source}: {text!r} is not METRIC=AMOUNT or METRIC=PERCENT%, e.g. score=0.02 or peak_memory_bytes=10%"
        )
    metric, amount, percent = match.groups()
    return Threshold(metric, float(amount) / (100 if percent else 1), bool(percent))


@dataclass(frozen=True)
class Violation:
    task: str
    technique: str
    metric: str
    baseline: float | None
    value: float | None
    reason: str


def check(
    run: str | Path, baseline: str | Path, max_drop: list[Threshold], max_increase: list[Threshold]
) -> tuple[list[Violation], int]:
    """(violations, techniques checked): every baseline technique that finished must finish again, and
    stay within each threshold."""
    require_same_study(baseline, run)
    violations, checked = [], 0
    for pair in pairs(baseline, run):
        if pair.a is None or pair.a["status"] != "ok":
            continue  # new in this run, or not passing in the baseline: nothing to regress from
        checked += 1
        if pair.b is None or pair.b["status"] != "ok":
            reason = "missing from the run" if pair.b is None else f"{pair.b['status']}: {pair.b.get('error') or ''}"
            violations.append(Violation(pair.task, pair.technique, "status", None, None, reason))
            continue
        for limits, sign, word in ((max_drop, -1, "dropped"), (max_increase, 1, "rose")):
            for threshold in limits:
                old, new = pair.a.get(threshold.metric), pair.b.get(threshold.metric)
                if old is None:
                    continue
                if new is None:
                    violations.append(
                        Violation(pair.task, pair.technique, threshold.metric, old, None, "not measured in the run")
                    )
                elif threshold.exceeded(sign * (new - old), old):
                    violations.append(
                        Violation(
                            pair.task, pair.technique, threshold.metric, old, new, f"{word} by more than {threshold}"
                        )
                    )
    return violations, checked


def require_same_study(baseline: str | Path, run: str | Path) -> None:
    """A ConfigError when the two runs share no task, or no technique on a shared task: they come from
    different recipes or tasks, and reporting every baseline technique "missing" would hide that."""
    stores_a, stores_b = open_runs(baseline), open_runs(run)

    def techniques(stores) -> set[tuple[str, str]]:  # the majority floor is in every classification run
        return {(task_name(s), r["technique"]) for s in stores for r in s.rows if r["technique"] != floor.NAME}

    shared_tasks = {task_name(s) for s in stores_a} & {task_name(s) for s in stores_b}
    if shared_tasks and techniques(stores_a) & techniques(stores_b):
        return

    def describe(stores) -> str:
        names = sorted({r["technique"] for s in stores for r in s.rows if r["technique"] != floor.NAME})
        return (
            f"recipe {stores[0].meta.get('recipe', {}).get('name')!r} on task(s) "
            f"{', '.join(task_name(s) for s in stores)} (techniques: {', '.join(names) or 'none'})"
        )

    differ = "recipes (no technique in common)" if shared_tasks else "tasks"
    raise ConfigError(
        f"the run and the baseline compare different {differ}, "
        f"so there is nothing to check: run {run} is {describe(stores_b)}; baseline {baseline} is "
        f"{describe(stores_a)}. Fix: give a baseline from the same recipe and task"
    )


def thresholds_from(
    meta: dict, drops: tuple[str, ...], increases: tuple[str, ...]
) -> tuple[list[Threshold], list[Threshold]]:
    """Command-line thresholds, else the recipe's `check:` section, else score may drop by 0.02."""
    recipe_check = meta.get("recipe", {}).get("check") or {}
    drop = [parse_threshold(t, "--max-drop") for t in drops] or [
        parse_threshold(f"{m}={v}", "recipe check.max_drop") for m, v in recipe_check.get("max_drop", {}).items()
    ]
    rise = [parse_threshold(t, "--max-increase") for t in increases] or [
        parse_threshold(f"{m}={v}", "recipe check.max_increase")
        for m, v in recipe_check.get("max_increase", {}).items()
    ]
    if not drop and not rise:
        drop = [Threshold("score", 0.02, False)]
    return drop, rise
