"""`harness calibrate RUN RUN [RUN...]`: how far repeated runs of one recipe (other seeds, other machines)
move on their own, and the `check:` thresholds that tolerate that much and no more.

The rule: a figure may move by the larger of K standard deviations of its run-to-run values and the
widest range the runs showed (with two or three runs the standard deviation alone is a poor estimate).
Scores are absolute amounts; memory, time and cost are a share of their mean, since a baseline on
another machine scales them. A `check:` threshold names a figure, not a technique, so the noisiest
technique's allowance is the one suggested.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import figures, gate
from harness.analysis import floor
from harness.results import RunStore, open_runs, task_name
from harness.yamlconfig import ConfigError

K = 3  # standard deviations of the run-to-run spread a change must exceed to count
RULE = f"max({K} × std, max − min) over the runs, the noisiest technique's; memory, time and cost as a % of the mean"


@dataclass(frozen=True)
class Spread:
    """One figure of one technique over the repeated runs."""

    task: str
    technique: str
    metric: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values)  # sample std: the runs are a sample of the re-runs possible

    @property
    def range(self) -> float:
        return max(self.values) - min(self.values)

    @property
    def relative(self) -> bool:
        """Memory, time and cost are judged as a share of the baseline; scores as an amount."""
        figure = figures.get(self.metric)
        return figure is not None and figure.unit != "score"

    def allowance(self) -> float:
        """How far the figure moved on its own: an amount, or a fraction of the mean when relative."""
        moved = max(K * self.std, self.range)
        if not self.relative:
            return moved
        return 0.0 if moved == 0 else moved / abs(self.mean) if self.mean else math.inf


@dataclass(frozen=True)
class Suggestion:
    threshold: gate.Threshold
    direction: str  # "max_drop" or "max_increase"
    source: Spread  # the noisiest technique's spread, which set the threshold


def spreads(runs: Sequence[str | Path]) -> list[Spread]:
    """Each figure of each technique that finished in at least two of the runs, in the first run's order."""
    stores = [open_runs(run) for run in runs]
    require_repeats(runs, stores)
    rows = [{(task_name(s), r["technique"]): r for s in run for r in s.ordered_rows()} for run in stores]
    found = []
    for task, technique in rows[0]:
        if technique in floor.NAMES:
            continue  # the floor is the same in every run: nothing to calibrate
        same = [r for run in rows if (r := run.get((task, technique))) and r["status"] == "ok"]
        for metric in gate.compared_figures(same):
            values = tuple(float(r[metric]) for r in same if r.get(metric) is not None)
            if len(values) >= 2:
                found.append(Spread(task, technique, metric, values))
    return found


def require_repeats(runs: Sequence[str | Path], stores: list[list[RunStore]]) -> None:
    """A ConfigError unless there are two or more runs of the same recipe's tasks and techniques."""
    if len(runs) < 2:
        raise ConfigError(
            f"harness calibrate needs at least 2 runs of the same recipe to measure their spread, got {len(runs)}. "
            "Fix: run the recipe again (e.g. `harness run RECIPE seed=1`) and give every run folder"
        )
    for run, store in zip(runs[1:], stores[1:]):
        gate.require_same_study(runs[0], run, roles=("first run", "run"))
        if gate.techniques(store) != gate.techniques(stores[0]):
            raise ConfigError(
                f"harness calibrate compares re-runs of one recipe, but run {run} is {gate.describe(store)} "
                f"and the first run {runs[0]} is {gate.describe(stores[0])}. Fix: give runs of the same recipe"
            )


def suggest(found: Sequence[Spread]) -> list[Suggestion]:
    """One threshold per figure: the largest allowance over techniques, rounded up (see RULE)."""
    suggestions = []
    for metric in dict.fromkeys(s.metric for s in found):
        noisiest = max((s for s in found if s.metric == metric), key=Spread.allowance)
        allowance = noisiest.allowance()
        if math.isinf(allowance):
            continue  # a figure that was 0 in some runs only: no share of it can be suggested
        direction = "max_drop" if gate.better(metric) else "max_increase"
        threshold = (
            gate.Threshold(metric, math.ceil(allowance * 100 - 1e-9) / 100, True)
            if noisiest.relative
            else gate.Threshold(metric, math.ceil(allowance * 1000 - 1e-9) / 1000, False)
        )
        suggestions.append(Suggestion(threshold, direction, noisiest))
    return suggestions


def check_block(suggestions: Sequence[Suggestion], n_runs: int) -> str:
    """A recipe's `check:` section holding the suggestions, ready to paste."""
    lines = [f"# harness calibrate over {n_runs} runs: {RULE}", "check:"]
    for direction in ("max_drop", "max_increase"):
        chosen = [s.threshold for s in suggestions if s.direction == direction]
        if chosen:
            lines.append(f"  {direction}:")
            lines += [f"    {_key(t.metric)}: {_amount(t)}" for t in chosen]
    return "\n".join(lines) + "\n"


def _key(metric: str) -> str:
    return f"'{metric}'" if ":" in metric else metric  # lm_eval:<task>:<metric> reads as a key only quoted


def _amount(threshold: gate.Threshold) -> str:
    return f"{threshold.limit * 100:g}%" if threshold.relative else f"{threshold.limit:g}"


def noise_thresholds(
    runs: Sequence[str | Path], baseline: str | Path
) -> tuple[list[gate.Threshold], list[gate.Threshold]]:
    """(drops, increases) suggested from the repeated runs, for `harness check --noise-from`; they must
    be runs of the baseline's recipe, or their spread says nothing about it."""
    if len(runs) < 2:
        raise ConfigError(
            f"--noise-from needs at least 2 runs of the baseline's recipe to measure their spread, got {len(runs)}. "
            "Fix: give --noise-from once per run, e.g. --noise-from RUN_1 --noise-from RUN_2"
        )
    gate.require_same_study(baseline, runs[0], roles=("baseline", "--noise-from run"))
    suggestions = suggest(spreads(runs))
    return (
        [s.threshold for s in suggestions if s.direction == "max_drop"],
        [s.threshold for s in suggestions if s.direction == "max_increase"],
    )
