"""The floor of every task: what an answer that needs no model scores under the task's metric.

A technique is recommended only when it scores significantly above its task's floor
(analysis/decision.py); a run where nothing does gets no recommendation. Which answer is the floor
depends on what the metric makes meaningful (FLOORS; the report's definitions print the same text):

- classification (accuracy, macro_f1): always answering the most common training label, the `majority`
  row. On an imbalanced label set that scores well on accuracy without reading the question.
- every open-ended metric (exact_match, contains, rouge_l, chrf, embedding_similarity, a plugin's): the
  example's own text echoed back as the answer (its input, then its context where the task has one), the
  `echo-input` row. Under these metrics an empty answer scores 0 (every built-in one but
  embedding_similarity, where it is arbitrary), so the echo never sits below it, and it rises exactly
  where copying already earns credit: a question whose context holds the answer (contains), the words or
  characters a summary or rewrite shares with its source (rouge_l, chrf), a copy task (exact_match), a
  question that sits near its answer in embedding space.
  Not the best training-free technique: zero-shot, few-shot and RAG are among the techniques compared, and
  a floor that depends on the model could never let them be recommended.

The floor is scored by the same code and confidence interval as a technique and stored as a row of kind
"baseline", with predictions in the held-out shape, one copy per seed so that paired tests find every
(seed, id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from harness import metrics
from harness.rows import RowLike
from harness.tasks import Example, Task

MAJORITY = "majority"
ECHO = "echo-input"
NAME = MAJORITY  # the classification floor's row (gate and calibrate skip it by this name)
NAMES = (MAJORITY, ECHO)  # reserved: no technique may take them
KIND = "baseline"  # the floor row's `kind` (stored; a run's reference, not the `--baseline` run of `harness check`)
IMBALANCE_RATIO = 1.5  # largest label share over smallest: above it, accuracy flatters the majority answer

_CLASSIFICATION = "always answering the most common training label"
_ECHO = "echoing the example's own text (its input, then its context) as the answer"
# metric -> which answer is its floor and what that answer scores there (the report prints these)
FLOORS = {
    "accuracy": f"{_CLASSIFICATION}, which scores its share of the test labels",
    "macro_f1": f"{_CLASSIFICATION}; not tested against it (the floor's macro-F1 is already low by construction)",
    "exact_match": f"{_ECHO}: scores only where the answer is the input itself (a copy task), else 0 like an "
    "empty answer",
    "contains": f"{_ECHO}: scores wherever the input or its context already holds the answer",
    "rouge_l": f"{_ECHO}: the words the source shares with the reference (the copy baseline of summarisation)",
    "chrf": f"{_ECHO}: the character n-grams the source shares with the reference (the copy baseline of "
    "translation and rewriting)",
    "embedding_similarity": f"{_ECHO}: how close the question itself sits to the reference in embedding space",
}


def floor_text(metric: str) -> str:
    """Which answer is the floor under `metric`, and what it measures there."""
    return FLOORS.get(metric, f"{_ECHO}: what copying the input earns under the metric")


def name_for(task: Task) -> str:
    """The floor row's technique name: the majority label for a classification task, else the echo."""
    return MAJORITY if task.is_classification else ECHO


def answer_text(row: RowLike) -> str:
    """A stored floor row's answer, for sentences: "always answering 'billing'", "echoing the input"."""
    if row["technique"] == ECHO:
        return "echoing the input"
    label = row.get("majority_label")
    return f"always answering '{label}'" if label is not None else "always answering the majority label"


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


def echo(example: Example) -> str:
    """The echo floor's answer: the example's input, then its context (where the task has one)."""
    return "\n".join(part for part in (example.input, example.context) if part)


def floor(
    task: Task, examples: Sequence[Example], seeds: Sequence[int], bootstrap_samples: int, seed: int
) -> tuple[str, dict, list[dict]]:
    """(technique name, row values, predictions) of the task's floor (see the module's docstring)."""
    if task.is_classification:
        return MAJORITY, *majority(task, examples, seeds, bootstrap_samples, seed)
    answers = [echo(e) for e in examples]
    values, predictions = _scored(task, examples, answers, seeds, bootstrap_samples, seed)
    return ECHO, values, predictions


def majority(
    task: Task, examples: Sequence[Example], seeds: Sequence[int], bootstrap_samples: int, seed: int
) -> tuple[dict, list[dict]]:
    """(row values, predictions) of answering the majority label for every example."""
    label = majority_label(task)
    described = {"majority_label": label, "chance_score": 1 / len(_labels(task))}
    return _scored(task, examples, [label] * len(examples), seeds, bootstrap_samples, seed, described)


def _scored(
    task: Task,
    examples: Sequence[Example],
    answers: Sequence[str],
    seeds: Sequence[int],
    bootstrap_samples: int,
    seed: int,
    described: dict | None = None,
) -> tuple[dict, list[dict]]:
    """(row values, predictions) of giving `answers` to `examples`, scored like a technique's answers;
    `described`: the fields that say what the floor answered."""
    metric = task.spec.metric
    expected = [e.output for e in examples]
    scored = metrics.score(metric, expected, answers, task.labels)
    low, high = metrics.metric_ci(metric, scored, expected, task.labels, bootstrap_samples, seed)
    predictions = [
        {
            "id": e.id,
            "input": e.input,
            "expected": e.output,
            "predicted": answer,
            "parsed": parsed,
            **metrics.outcome(metric, value),
        }
        for e, answer, parsed, value in zip(examples, answers, scored.parsed, scored.correct)
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
        **(described or {}),
        # the same seed fields a seed-free technique (zero-shot) carries: one score, valid for every seed
        "n_seeds": len(seeds),
        "seed_scores": [score] * len(seeds),
        "score_std": 0.0,
        "seed_invariant": len(seeds) > 1,
    }
    return values, [answer | {"seed": s} for s in seeds for answer in predictions]
