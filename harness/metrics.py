"""Answer normalisation, metrics and bootstrap confidence intervals.

Metrics (the recipe/task names them):
- exact_match: the normalised first line of the answer equals the normalised expected answer.
- contains: the normalised expected answer appears anywhere in the normalised answer.
- accuracy / macro_f1 (classification): the answer is parsed to a label (see parse_label), then
  scored with scikit-learn's accuracy_score / f1_score(average="macro") over the task's labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

INVALID = "<invalid>"  # the parsed label of an answer that names no label
_EDGE_PUNCT = " \t\"'`.,;:!?()[]{}*_"


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation and quotes at both ends."""
    return re.sub(r"\s+", " ", text.lower()).strip(_EDGE_PUNCT)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def parse_label(answer: str, labels: Sequence[str]) -> str:
    """The first label named (as a whole word) in the answer's first line; INVALID when none is."""
    line = normalize(first_line(answer))
    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(normalize(label))}(?!\w)", line)
        if match:
            found.append((match.start(), label))
    return min(found)[1] if found else INVALID


@dataclass(frozen=True)
class Scored:
    """Per-example scoring of one technique: the parsed answers and 0/1 correctness."""

    parsed: list[str]
    correct: np.ndarray  # float 0/1 per example
    metrics: dict[str, float]  # every metric that applies to the task
    invalid_rate: float | None  # classification only: answers that named no label


def score(metric: str, expected: Sequence[str], answers: Sequence[str], labels: Sequence[str] | None) -> Scored:
    if labels:
        parsed = [parse_label(a, labels) for a in answers]
        correct = np.array([p == e for p, e in zip(parsed, expected)], dtype=float)
        metrics = {"accuracy": float(accuracy_score(expected, parsed)), "macro_f1": macro_f1(expected, parsed, labels)}
        invalid = float(np.mean([p == INVALID for p in parsed])) if parsed else 0.0
        return Scored(parsed, correct, metrics, invalid)
    parsed = [normalize(first_line(a)) for a in answers]
    exact = np.array([p == normalize(e) for p, e in zip(parsed, expected)], dtype=float)
    contains = np.array([normalize(e) in normalize(a) for a, e in zip(answers, expected)], dtype=float)
    metrics = {"exact_match": _mean(exact), "contains": _mean(contains)}
    return Scored(parsed, contains if metric == "contains" else exact, metrics, None)


def macro_f1(expected: Sequence[str], parsed: Sequence[str], labels: Sequence[str]) -> float:
    return float(f1_score(expected, parsed, labels=list(labels), average="macro", zero_division=0))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, samples: int, seed: int, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap: resample example indices with replacement, recompute the statistic."""
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(samples)]
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def metric_ci(metric: str, scored: Scored, expected: Sequence[str], labels, samples: int, seed: int):
    """95% CI of the task's metric. Mean-type metrics resample correctness; macro-F1 is recomputed."""
    if metric == "macro_f1":
        exp, par = np.array(expected, dtype=object), np.array(scored.parsed, dtype=object)
        return bootstrap_ci(lambda idx: macro_f1(exp[idx], par[idx], labels), len(exp), samples, seed)
    correct = scored.correct
    return bootstrap_ci(lambda idx: float(correct[idx].mean()), len(correct), samples, seed)
