import numpy as np
import pytest

from harness import metrics

LABELS = ["billing", "shipping", "technical"]


def test_normalize_and_parse_label():
    assert metrics.normalize('  "Paris."  ') == "paris"
    assert metrics.parse_label("Billing", LABELS) == "billing"
    assert metrics.parse_label("Team: shipping, not billing", LABELS) == "shipping"  # first one named
    assert metrics.parse_label("\n\ntechnical issue\nbilling", LABELS) == "technical"  # first line only
    assert metrics.parse_label("rebilling", LABELS) == metrics.INVALID  # whole words only
    assert metrics.parse_label("", LABELS) == metrics.INVALID


def test_classification_scores_match_hand_computation():
    expected = ["billing", "billing", "shipping", "technical"]
    answers = ["billing", "shipping", "Shipping.", "I am not sure"]
    scored = metrics.score("accuracy", expected, answers, LABELS)
    assert scored.parsed == ["billing", "shipping", "shipping", metrics.INVALID]
    assert scored.metrics["accuracy"] == pytest.approx(0.5)
    # per-label F1: billing P=1 R=.5 -> 2/3; shipping P=.5 R=1 -> 2/3; technical 0 -> macro 4/9
    assert scored.metrics["macro_f1"] == pytest.approx(4 / 9)
    assert scored.invalid_rate == pytest.approx(0.25)
    assert scored.correct.tolist() == [1, 0, 1, 0]


def test_generation_scores():
    scored = metrics.score("contains", ["Paris", "4"], ["paris\nmore text", "The answer is 4"], None)
    assert scored.metrics == {"exact_match": 0.5, "contains": 1.0}
    assert scored.correct.tolist() == [1.0, 1.0]


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    correct = np.array([1.0] * 60 + [0.0] * 40)
    stat = lambda idx: float(correct[idx].mean())  # noqa: E731
    low, high = metrics.bootstrap_ci(stat, len(correct), 2000, seed=0)
    assert low < 0.6 < high
    assert 0.08 < high - low < 0.24  # ~ +-1.96 * sqrt(.6*.4/100) = +-0.096
    assert (low, high) == metrics.bootstrap_ci(stat, len(correct), 2000, seed=0)


def test_macro_f1_ci_is_recomputed_per_resample():
    expected = ["billing", "shipping"] * 20
    scored = metrics.score("macro_f1", expected, ["billing"] * 40, LABELS)
    low, high = metrics.metric_ci("macro_f1", scored, expected, LABELS, 500, seed=1)
    assert low <= scored.metrics["macro_f1"] <= high
    assert high < 0.5  # macro-F1 of a one-label predictor stays low in every resample
