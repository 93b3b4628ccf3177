"""Answer normalisation, the metric registry, scoring and bootstrap confidence intervals.

A metric is one `Metric` descriptor registered in METRICS; a task's `metric:` may name any registered
one (tasks.py checks it). Built in:
- exact_match: the normalised first line of the answer equals the normalised expected answer.
- contains: the normalised expected answer appears anywhere in the normalised answer.
- rouge_l: ROUGE-L F-measure (longest common subsequence of words; the rouge_score package) between
  the whole answer and the expected answer, in [0, 1]: partial credit for free-text answers.
- chrf: sacrebleu's sentence-level chrF (character n-gram F-score) divided by 100, in [0, 1].
- embedding_similarity: cosine similarity of the answer's and the expected answer's embeddings from
  the bundled all-MiniLM-L6-v2, in [0, 1]; computed only for a task that names it (it loads a model).
- accuracy / macro_f1 (classification): the answer is parsed to a label (see parse_label); accuracy
  is the share of correct labels, macro_f1 scikit-learn's f1_score(average="macro") over the labels.

Heavy libraries (scikit-learn, rouge_score, sacrebleu) are imported when a metric is computed, so that
the task schema can read the registry and `harness validate` stays light.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from harness.registry import Registry

INVALID = "<invalid>"  # the parsed label of an answer that names no label
_EDGE_PUNCT = " \t\"'`.,;:!?()[]{}*_"


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation and quotes at both ends."""
    return re.sub(r"\s+", " ", text.lower()).strip(_EDGE_PUNCT)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def parse_label(answer: str, labels: Sequence[str]) -> str:
    """The first label named (as a whole word) in the answer's first line; INVALID when none is. Of labels
    starting at the same place the longest wins ('account closure' over 'account'), so an answer that is
    exactly a label parses to that label."""
    line = normalize(first_line(answer))
    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(normalize(label))}(?!\w)", line)
        if match:
            found.append((match.start(), label))
    return min(found, key=lambda f: (f[0], -len(f[1])))[1] if found else INVALID


# --- the registry --------------------------------------------------------------------------------

Value = Callable[[str, str, Sequence[str] | None], float]  # (expected, answer, labels) -> per-example value
# (per-example values, expected, parsed answers, labels) -> the task's figure; computed again on every
# bootstrap resample, so a corpus-level metric (macro-F1) gets an honest interval
Aggregate = Callable[[np.ndarray, np.ndarray, np.ndarray, Sequence[str] | None], float]


@dataclass(frozen=True)
class Metric:
    name: str  # the task's `metric:` value
    value: Value
    description: str = ""
    aggregate: Aggregate | None = None  # None: the mean of the per-example values
    higher_is_better: bool = True
    # Per-example values are 0/1: `harness compare`/`check` test two runs with McNemar's exact test;
    # otherwise (continuous values) with the Wilcoxon signed-rank test on the per-example differences.
    binary: bool = True
    needs_labels: bool = False  # classification only: the task must have a `labels:` list
    # Also computed (as score_<name>) for every task it applies to; False for a costly metric that runs
    # only when a task names it (it loads a model)
    secondary: bool = True

    @property
    def is_mean(self) -> bool:
        """The figure is the mean of the per-example values, so it can be bootstrapped from them alone."""
        return self.aggregate is None

    def figure(self, values: np.ndarray, expected, parsed, labels) -> float:
        if self.aggregate is not None:
            return self.aggregate(values, expected, parsed, labels)
        return float(values.mean()) if len(values) else 0.0


METRICS: Registry[Metric] = Registry("metric")


def register(metric: Metric) -> Metric:
    """Add a metric; from then on tasks may use `metric: <name>`."""
    return METRICS.add(metric.name, metric)


def get(name: str) -> Metric:
    return METRICS.get(name)


def is_binary(name: str | None) -> bool:
    """Whether a stored row's metric has 0/1 per-example values. A metric this process does not know
    (a plugin's) counts as continuous: the Wilcoxon test is valid on 0/1 values too, McNemar is not
    on continuous ones."""
    return name is not None and name in METRICS and METRICS.get(name).binary


def _exact_match(expected: str, answer: str, labels=None) -> float:
    return float(normalize(first_line(answer)) == normalize(expected))


def _contains(expected: str, answer: str, labels=None) -> float:
    return float(normalize(expected) in normalize(answer))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])  # package defaults: lowercased ASCII words, no stemming


def _rouge_l(expected: str, answer: str, labels=None) -> float:
    return float(_rouge_scorer().score(expected, answer)["rougeL"].fmeasure)


@lru_cache(maxsize=1)
def _chrf_scorer():
    from sacrebleu.metrics import CHRF

    return CHRF()  # sacrebleu's defaults: character 6-grams, beta 2, no word n-grams (chrF, not chrF++)


def _chrf(expected: str, answer: str, labels=None) -> float:
    return _chrf_scorer().sentence_score(answer, [expected]).score / 100


@lru_cache(maxsize=1)
def _embedder():
    from sentence_transformers import SentenceTransformer

    from harness.embeddings import DEFAULT_EMBEDDING_MODEL, embedding_model_path

    return SentenceTransformer(embedding_model_path(DEFAULT_EMBEDDING_MODEL), device="cpu")


def _embedding_similarity(expected: str, answer: str, labels=None) -> float:
    """Cosine similarity of the two texts' MiniLM embeddings (bundled offline), clipped to [0, 1]."""
    first, second = _embedder().encode([expected, answer], normalize_embeddings=True)
    return float(max(0.0, min(1.0, float(np.dot(first, second)))))


def _known_labels(labels: Sequence[str] | None) -> Sequence[str]:
    if labels is None:
        raise ValueError("a label metric (needs_labels) is scored without the task's labels")
    return labels


def _label_correct(expected: str, answer: str, labels: Sequence[str] | None) -> float:
    return float(parse_label(answer, _known_labels(labels)) == expected)


def macro_f1(expected: Sequence[str] | np.ndarray, parsed: Sequence[str] | np.ndarray, labels: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(expected, parsed, labels=list(labels), average="macro", zero_division=0))


register(Metric("exact_match", _exact_match, "the answer's first line equals the expected answer (normalised)"))
register(Metric("contains", _contains, "the expected answer appears in the answer (normalised)"))
register(Metric("rouge_l", _rouge_l, "ROUGE-L F-measure against the expected answer, 0-1", binary=False))
register(Metric("chrf", _chrf, "chrF (character n-gram F-score) against the expected answer, 0-1", binary=False))
register(
    Metric(
        "embedding_similarity",
        _embedding_similarity,
        "cosine similarity of MiniLM sentence embeddings of answer and expected answer, 0-1",
        binary=False,
        secondary=False,
    )
)
register(
    Metric("accuracy", _label_correct, "share of answers whose parsed label is the expected one", needs_labels=True)
)
# Per example, macro-F1 has no value of its own: the values are label correctness (what the paired
# tests compare), and the figure is recomputed from the parsed labels.
register(
    Metric(
        "macro_f1",
        _label_correct,
        "F1 per label, averaged over the labels",
        aggregate=lambda values, expected, parsed, labels: macro_f1(expected, parsed, _known_labels(labels)),
        needs_labels=True,
    )
)


def applicable(labels: Sequence[str] | None) -> list[Metric]:
    """The metrics a task is scored on: the label metrics for a classification task, else the others."""
    return [m for m in map(METRICS.get, METRICS.in_order()) if m.needs_labels == bool(labels) and m.secondary]


# --- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """Per-example scoring of one technique: the parsed answers and the task metric's values."""

    parsed: list[str]
    correct: np.ndarray  # the task metric's per-example value (float; 0/1 for a binary metric)
    metrics: dict[str, float]  # every metric that applies to the task (and the task's own)
    invalid_rate: float | None  # classification only: answers that named no label


def score(metric: str, expected: Sequence[str], answers: Sequence[str], labels: Sequence[str] | None) -> Scored:
    scored_by = applicable(labels)
    if metric not in [m.name for m in scored_by]:  # e.g. exact_match on a task with labels
        scored_by.append(get(metric))
    parsed = [parse_label(a, labels) for a in answers] if labels else [normalize(first_line(a)) for a in answers]
    exp, par = np.array(expected, dtype=object), np.array(parsed, dtype=object)
    values = {m.name: per_example(m, expected, answers, labels) for m in scored_by}
    figures = {m.name: m.figure(values[m.name], exp, par, labels) for m in scored_by}
    invalid = None
    if labels:
        invalid = float(np.mean([p == INVALID for p in parsed])) if parsed else 0.0
    return Scored(parsed, values[metric], figures, invalid)


def per_example(metric: Metric, expected: Sequence[str], answers: Sequence[str], labels) -> np.ndarray:
    return np.array([metric.value(e, a, labels) for e, a in zip(expected, answers)], dtype=float)


def outcome(metric: str, value: float) -> dict:
    """How a prediction stores its score: `correct` (bool) under a 0/1 metric; under a continuous one
    `value` (float) and `correct` None, since no threshold makes a partial answer right or wrong.
    Readers take `value` when present, else `correct`."""
    return {"correct": bool(value)} if get(metric).binary else {"value": float(value), "correct": None}


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
    """95% CI of the task's metric: each resample recomputes its figure (the mean of the per-example
    values for mean-type metrics; macro-F1 from the resampled parsed labels)."""
    m = get(metric)
    values = scored.correct
    exp, par = np.array(expected, dtype=object), np.array(scored.parsed, dtype=object)
    return bootstrap_ci(lambda idx: m.figure(values[idx], exp[idx], par[idx], labels), len(values), samples, seed)
