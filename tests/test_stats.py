"""Paired statistics pooled over seeds: Holm's correction, the two-level bootstrap, (seed, id) pairing
and the collapse check."""

import numpy as np
import pytest

from harness.analysis import decision, stats


def predictions(outcomes_by_seed: dict, answers: list[str] | None = None) -> list[dict]:
    """One prediction per (seed, example): seed -> list of 0/1 outcomes."""
    return [
        {"id": f"e{i}", "seed": seed, "correct": bool(c), "parsed": answers[i] if answers else "x"}
        for seed, outcomes in outcomes_by_seed.items()
        for i, c in enumerate(outcomes)
    ]


def test_holm_matches_a_hand_computed_case():
    # sorted: a 0.01 x4 = 0.04; c 0.03 x3 = 0.09; b 0.04 x2 = 0.08 -> 0.09 (monotone); d 0.5 x1 = 0.5
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1, still monotone
    assert stats.holm({}) == {}


def test_mcnemar_is_reexported_by_decision():
    assert decision.mcnemar_p is stats.mcnemar_p


def simulated(n: int, seeds: int, rng, p_a=0.7, p_b=0.5):
    return (
        predictions({s: rng.random(n) < p_a for s in range(seeds)}),
        predictions({s: rng.random(n) < p_b for s in range(seeds)}),
    )


def test_bootstrap_ci_covers_the_true_difference_and_narrows_with_more_examples():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(40):
        a, b = simulated(100, 2, rng)
        d = stats.paired_difference(a, b, samples=400, seed=trial)
        covered += d.ci_low <= 0.2 <= d.ci_high
    assert covered >= 34  # nominal 95%: 38 of 40 expected

    small = stats.paired_difference(*simulated(100, 3, rng))
    large = stats.paired_difference(*simulated(1600, 3, rng))
    assert large.ci_high - large.ci_low < (small.ci_high - small.ci_low) / 2  # ~1/sqrt(16) as wide
    assert large.ci_low <= 0.2 <= large.ci_high and large.p_value < 1e-6
    assert (large.n_pairs, large.n_seeds) == (4800, 3)


def test_pairs_are_keyed_by_seed_and_id():
    first_half, second_half = [1] * 10 + [0] * 10, [0] * 10 + [1] * 10
    a = predictions({0: first_half, 1: second_half})
    same = stats.paired_difference(a, list(reversed(predictions({0: first_half, 1: second_half}))))
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # the same outcomes with the seeds swapped: equal means, but every one of the 40 pairs disagrees
    swapped = stats.paired_difference(a, predictions({0: second_half, 1: first_half}))
    assert swapped.diff == 0.0 and swapped.ci_low < -0.2 and swapped.ci_high > 0.2


def test_only_shared_pairs_count_and_none_without_any():
    a = predictions({0: [1, 1, 0, 0]})
    b = predictions({0: [0, 0]}) + predictions({1: [1, 1, 1, 1]})  # seed 1 has no partner in a
    d = stats.paired_difference(a, b)
    assert (d.diff, d.n_pairs, d.n_seeds) == (1.0, 2, 1)
    assert stats.paired_difference(a, predictions({5: [1, 1, 0, 0]})) is None
    legacy = [p | {"seed": None} for p in a]  # older runs have no seed field: they pair among themselves
    assert stats.paired_difference(legacy, [{k: v for k, v in p.items() if k != "seed"} for p in a]).diff == 0.0


def test_mean_ci_over_seeds_widens_with_seed_variance():
    rng = np.random.default_rng(0)
    steady = predictions({s: rng.random(200) < 0.6 for s in range(4)})
    erratic = predictions({s: rng.random(200) < p for s, p in enumerate((0.3, 0.9, 0.3, 0.9))})
    low, high = stats.mean_ci_over_seeds(steady, samples=1000, seed=0)
    wide_low, wide_high = stats.mean_ci_over_seeds(erratic, samples=1000, seed=0)
    assert low < 0.6 < high and wide_low < 0.6 < wide_high
    assert wide_high - wide_low > 3 * (high - low)


def test_collapsed_answer_needs_more_than_the_threshold():
    assert stats.collapsed_answer(predictions({0: [1] * 20}, ["billing"] * 19 + ["returns"])) == ("billing", 0.95)
    assert stats.collapsed_answer(predictions({0: [1] * 10}, ["billing"] * 9 + ["returns"])) is None  # 90%: not above
    assert stats.collapsed_answer([{"id": "e0", "correct": True}]) is None  # generation tasks have no parsed label
