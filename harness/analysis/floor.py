"""The trivial floor of a classification task: always answer the most common training label.

On an imbalanced label set that scores well on accuracy without learning anything, so the report
tests every technique against it (analysis/decision.floor_flags). It is scored by the same code and
confidence interval as a technique and stored as a row of kind "baseline" (technique NAME), with
predictions in the held-out shape, one copy per seed so that paired tests find every (seed, id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from harness import metrics
from harness.tasks import Example, Task

NAME = "majority"
KIND = "baseline"  # the floor row's `kind` (stored; a run's reference, not the `--baseline` run of `harness check`)
IMBALANCE_RATIO = 1.5  # largest label share over smallest: above it, accuracy flatters the majority answer


def _labels(task: Task) -> list[str]:
    if not task.labels:
        raise ValueError(f"task {task.name!r} has no labels: the majority baseline needs a classification task")
    return task.labels


def label_shares(task: Task) -> dict[str, float]:
    """Each label's share of the train split's outputs, in the task's label order (0 for an absent label)."""
    counts = Counter(e.output for e in task.train)
    total = sum(counts.values()) or 1
    return {label: counts[label] / total for label in _labels(task)}


def is_imbalanced(task: Task) -> bool:
    """Whether the largest label share exceeds IMBALANCE_RATIO times the smallest (a label missing from
    train counts as infinitely rarer)."""
    shares = label_shares(task).values()
    return max(shares) > IMBALANCE_RATIO * min(shares)


def majority_label(task: Task) -> str:
    """The most common train label; a tie goes to the first in the task's label order (deterministic)."""
    shares = label_shares(task)
    return max(_labels(task), key=lambda label: shares[label])  # max keeps the first of equal keys


def majority(
    task: Task, examples: Sequence[Example], seeds: Sequence[int], bootstrap_samples: int, seed: int
) -> tuple[dict, list[dict]]:
    """(row values, predictions) of answering the majority label for every example."""
    labels = _labels(task)
    label, metric = majority_label(task), task.spec.metric
    expected = [e.output for e in examples]
    scored = metrics.score(metric, expected, [label] * len(examples), task.labels)
    low, high = metrics.metric_ci(metric, scored, expected, task.labels, bootstrap_samples, seed)
    answers = [
        {
            "id": e.id,
            "input": e.input,
            "expected": e.output,
            "predicted": label,
            "parsed": parsed,
            **metrics.outcome(metric, value),
        }
        for e, parsed, value in zip(examples, scored.parsed, scored.correct)
    ]
    score = scored.metrics[metric]
    values = {
        "metric": metric,
        "score": score,
        "ci_low": low,
        "ci_high": high,
        "n_eval": len(examples),
        "invalid_rate": scored.invalid_rate,
        **{f"score_{name}": v for name, v in scored.metrics.items()},
        "majority_label": label,
        "chance_score": 1 / len(labels),
        # the same seed fields a seed-free technique (zero-shot) carries: one score, valid for every seed
        "n_seeds": len(seeds),
        "seed_scores": [score] * len(seeds),
        "score_std": 0.0,
        "seed_invariant": len(seeds) > 1,
    }
    return values, [answer | {"seed": s} for s in seeds for answer in answers]
