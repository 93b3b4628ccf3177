"""Comparing two runs: `harness compare` (deltas per technique and metric, with significance where the
same examples were scored) and `harness check` (the CI gate: regressions beyond thresholds)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import figures, metrics
from harness.analysis import floor
from harness.analysis.decision import paired_p
from harness.results import RunStore, open_runs, task_name
from harness.rows import RowLike
from harness.yamlconfig import ConfigError


@dataclass(frozen=True)
class Pair:
    task: str
    technique: str
    a: RowLike | None  # the row in the first (baseline) run; None when missing there
    b: RowLike | None
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


def compared_figures(rows: Sequence[RowLike]) -> list[str]:
    """The figures `compare`/`check` look at by default (score, memory, time, cost, the rows' lm-eval scores)."""
    return [*figures.compared(), *figures.lm_eval_keys(rows)]


def compared_metrics(pair: Pair) -> list[str]:
    rows = [r for r in (pair.a, pair.b) if r]
    return [m for m in compared_figures(rows) if any(r.get(m) is not None for r in rows)]


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
        """'15%', or the amount in the figure's unit ('100 MiB', '30.0s', '$0.0100'; a score as written)."""
        if self.relative:
            return f"{self.limit:.0%}"
        figure = figures.get(self.metric)
        return figure.format(self.limit) if figure and figure.unit in UNIT_AMOUNTS else f"{self.limit:g}"


UNIT_AMOUNTS = ("bytes", "seconds", "usd", "count")  # figures whose amounts read better in their unit than as numbers
# Figures that move with the machine's load, not with the code: on a shared CPU a re-run of the same
# commit took twice as long. A fixed threshold on them fails unchanged commits, so none is set by default
# and the gate says so when one is given without a measured spread (`calibrate`, `check --noise-from`).
LOAD_UNITS = ("seconds", "usd")


def load_dependent(thresholds: Sequence[Threshold]) -> list[str]:
    """The metrics among `thresholds` whose figures move with the machine's load (time and cost)."""
    return [t.metric for t in thresholds if (f := figures.get(t.metric)) is not None and f.unit in LOAD_UNITS]


def change_text(metric: str, old: float, new: float) -> str:
    """How a figure moved, in its unit: 'rose by 212 MiB (+22%)', 'dropped by 0.083'. Scores and shares
    move by an amount (their thresholds are amounts); other figures also by a share of the baseline."""
    delta = new - old
    figure = figures.get(metric)
    amount = figure.format(abs(delta)) if figure else f"{abs(delta):.4g}"
    relative = figure is not None and figure.unit not in ("score", "share", "number") and old
    share = f" ({delta / abs(old):+.0%})" if relative else ""
    return f"{'dropped' if delta < 0 else 'rose'} by {amount}{share}"


def parse_threshold(text: str, source: str = "threshold") -> Threshold:
    """'score=0.02' (absolute) or 'peak_memory_bytes=10%' (relative to the baseline)."""
    match = re.fullmatch(r"\s*([\w:.\-\[\]]+)\s*=\s*([0-9.]+)\s*(%?)\s*", str(text))
    if not match:
        raise ConfigError(
            f"{source}: {text!r} is not METRIC=AMOUNT or METRIC=PERCENT%, e.g. score=0.02 or peak_memory_bytes=10%"
        )
    metric, amount, percent = match.groups()
    return Threshold(metric, float(amount) / (100 if percent else 1), bool(percent))


ALPHA = 0.05  # a drop over its threshold fails only when the paired test's p is below this


@dataclass(frozen=True)
class Outcome:
    """One figure of one technique checked against one threshold, and why it passed or failed."""

    task: str
    technique: str
    metric: str
    baseline: float | None
    value: float | None
    threshold: str  # "may drop 0.02", "may rise 10%"; "" for a technique that failed or went missing
    p_value: float | None  # the paired test on the same examples; None where it was not run
    failed: bool
    reason: str


def check(
    run: str | Path,
    baseline: str | Path,
    max_drop: list[Threshold],
    max_increase: list[Threshold],
    alpha: float | None = ALPHA,
) -> tuple[list[Outcome], int]:
    """(an outcome per technique and threshold, techniques checked): every baseline technique that finished
    must finish again and stay within each threshold. A score drop over its threshold fails only when the
    paired test on the same examples has p < alpha (None: the threshold alone), since on a few dozen
    examples a drop of one or two answers is often noise."""
    require_same_study(baseline, run)
    outcomes, checked = [], 0
    for pair in pairs(baseline, run):
        if pair.a is None or pair.a["status"] != "ok":
            continue  # new in this run, or not passing in the baseline: nothing to regress from
        checked += 1
        if pair.b is None or pair.b["status"] != "ok":
            reason = "missing from the run" if pair.b is None else f"{pair.b['status']}: {pair.b.get('error') or ''}"
            outcomes.append(Outcome(pair.task, pair.technique, "status", None, None, "", None, True, reason))
            continue
        for limits, sign, verb in ((max_drop, -1, "drop"), (max_increase, 1, "rise")):
            outcomes += [o for t in limits if (o := _judge(pair, t, sign, verb, alpha))]
    return outcomes, checked


def _judge(pair: Pair, threshold: Threshold, sign: int, verb: str, alpha: float | None) -> Outcome | None:
    """The outcome of one threshold on one technique; None when the baseline lacks the figure."""
    assert pair.a is not None and pair.b is not None  # check() judges only techniques present in both runs
    old, new = pair.a.get(threshold.metric), pair.b.get(threshold.metric)
    if old is None:
        return None
    rule = f"may {verb} {threshold}"

    def outcome(failed: bool, reason: str, p: float | None = None) -> Outcome:
        return Outcome(pair.task, pair.technique, threshold.metric, old, new, rule, p, failed, reason)

    if new is None:
        return outcome(True, "not measured in the run")
    over = threshold.exceeded(sign * (new - old), old)
    moved = change_text(threshold.metric, old, new)
    if threshold.metric != "score" or alpha is None:  # no per-example values, or significance turned off
        why = "" if threshold.metric != "score" else " (significance not required)"
        return outcome(over, f"{moved}, over {threshold}{why}" if over else "within threshold")
    p = pair.score_p()
    if p is None:
        note = f"threshold alone: {_why_unpaired(pair)}"
        return outcome(over, f"{moved}, over {threshold}; {note}" if over else f"within threshold; {note}")
    if not over:
        return outcome(False, "within threshold", p)
    if p < alpha:
        return outcome(True, f"{moved}, over {threshold} and significant (p={p:.2g} < {alpha:g})", p)
    return outcome(False, f"over threshold but not significant (p={p:.2g}): noise", p)


def _why_unpaired(pair: Pair) -> str:
    """Why the paired test could not run on this pair, for the row's reason."""
    assert pair.a is not None and pair.b is not None
    stores = (("baseline", pair.store_a), ("run", pair.store_b))
    sides = [name for name, store in stores if not (store and store.predictions(pair.technique))]
    if sides:
        return f"no per-example predictions in the {' or the '.join(sides)}"
    if pair.a.get("metric") != pair.b.get("metric"):
        return f"the metric changed ({pair.a.get('metric')} -> {pair.b.get('metric')})"
    return "the two runs scored different examples"


def require_same_study(baseline: str | Path, run: str | Path, roles: tuple[str, str] = ("baseline", "run")) -> None:
    """A ConfigError when the two runs share no task, or no technique on a shared task: they come from
    different recipes or tasks, and reporting every baseline technique "missing" would hide that.
    `roles` names the two runs in the message (calibrate compares re-runs, not a baseline and a run)."""
    stores_a, stores_b = open_runs(baseline), open_runs(run)
    shared_tasks = {task_name(s) for s in stores_a} & {task_name(s) for s in stores_b}
    if shared_tasks and techniques(stores_a) & techniques(stores_b):
        return
    differ = "recipes (no technique in common)" if shared_tasks else "tasks"
    first, second = roles
    raise ConfigError(
        f"the {second} and the {first} compare different {differ}, "
        f"so there is nothing to compare: {second} {run} is {describe(stores_b)}; {first} {baseline} is "
        f"{describe(stores_a)}. Fix: give runs of the same recipe and task"
    )


def techniques(stores: list[RunStore]) -> set[tuple[str, str]]:
    """(task, technique) of every row but the floor (it is in every run: analysis/floor.py)."""
    return {(task_name(s), r["technique"]) for s in stores for r in s.rows if r["technique"] not in floor.NAMES}


def describe(stores: list[RunStore]) -> str:
    """A run's recipe, tasks and techniques, for a message saying two runs differ."""
    names = sorted({r["technique"] for s in stores for r in s.rows if r["technique"] not in floor.NAMES})
    return (
        f"recipe {stores[0].meta.get('recipe', {}).get('name')!r} on task(s) "
        f"{', '.join(task_name(s) for s in stores)} (techniques: {', '.join(names) or 'none'})"
    )


def thresholds_from(
    meta: dict,
    drops: tuple[str, ...],
    increases: tuple[str, ...],
    noise: tuple[list[Threshold], list[Threshold]] = ([], []),
) -> tuple[list[Threshold], list[Threshold]]:
    """Command-line thresholds, else the recipe's `check:` section (each direction on its own); then the
    thresholds measured from repeated runs (`noise`, calibrate's) for figures neither names; else score
    may drop 0.02."""
    recipe_check = meta.get("recipe", {}).get("check") or {}
    drop = [parse_threshold(t, "--max-drop") for t in drops] or [
        parse_threshold(f"{m}={v}", "recipe check.max_drop") for m, v in recipe_check.get("max_drop", {}).items()
    ]
    rise = [parse_threshold(t, "--max-increase") for t in increases] or [
        parse_threshold(f"{m}={v}", "recipe check.max_increase")
        for m, v in recipe_check.get("max_increase", {}).items()
    ]
    named = {t.metric for t in [*drop, *rise]}
    drop += [t for t in noise[0] if t.metric not in named]
    rise += [t for t in noise[1] if t.metric not in named]
    if not drop and not rise:
        drop = [Threshold("score", 0.02, False)]
    return drop, rise


def alpha_from(meta: dict, alpha: float | None, significance: bool | None) -> float | None:
    """The significance level of the score's paired test: --alpha, else the recipe's check.alpha, else
    0.05; None when --no-significance (else the recipe's `significance: false`) turns the test off."""
    recipe_check = meta.get("recipe", {}).get("check") or {}
    if not (recipe_check.get("significance", True) if significance is None else significance):
        return None
    return alpha if alpha is not None else recipe_check.get("alpha", ALPHA)
