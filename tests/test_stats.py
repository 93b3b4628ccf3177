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
    assert large.ci_low <= 0.2 <= large.ci_high and large.p_value == 2 / 2001  # every replicate above 0
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


def _excludes_zero(d) -> bool:
    return d.ci_low > 0 or d.ci_high < 0


def test_seeds_that_disagree_give_no_significant_difference_and_an_interval_over_zero():
    """The issue's case: pooled over (seed, example) pairs McNemar calls a worse than b (48 discordant
    pairs against 17, p < 0.001), but one of the two seeds has a ahead: the interval, which resamples
    seeds, spans 0. The p-value is now the same bootstrap's, so the two say one thing: not significant.
    A stratified (Cochran–Mantel–Haenszel) test would still say significant here: conditioned on the two
    seeds, both strata's discordant pairs add up as in the pooled test."""
    n = 200
    a0, b0 = [0] * 40 + [1] * 5 + [1] * 155, [1] * 40 + [0] * 5 + [1] * 155  # seed 0: a loses 40, wins 5
    a1, b1 = [1] * 12 + [0] * 8 + [1] * 180, [0] * 12 + [1] * 8 + [1] * 180  # seed 1: a wins 12, loses 8
    a, b = predictions({0: a0, 1: a1}), predictions({0: b0, 1: b1})
    assert stats.mcnemar_p(a0 + a1, b0 + b1) < 0.001  # what the table used to print beside the interval
    d = stats.paired_difference(a, b)
    assert d.diff == pytest.approx((17 - 48) / (2 * n))
    assert d.ci_low < 0 < d.ci_high and d.p_value >= decision.ALPHA
    assert (d.p_value < decision.ALPHA) == _excludes_zero(d)

    from harness.rows import make_row

    rows = [make_row(name, "prompt", "ok", metric="accuracy", score=s) for name, s in (("a", 0.87), ("b", 0.95))]
    verdict = decision.paired_vs_best(rows, {"a": a, "b": b})["a"]
    assert verdict.marker == "tied" and decision.vs_best_text(verdict).startswith("≈")


def test_the_p_value_agrees_with_the_interval_on_random_comparisons():
    """200 random paired comparisons (1 to 4 seeds, 10 to 80 examples, 0/1 and continuous values, seeds
    that agree and seeds that do not): p < alpha exactly when the interval excludes 0, and a "worse"
    verdict (Holm-adjusted) always comes with an interval entirely below 0."""
    from harness.rows import make_row

    rng = np.random.default_rng(28)
    significant = 0
    for trial in range(200):
        seeds, n, binary = int(rng.integers(1, 5)), int(rng.integers(10, 81)), bool(rng.integers(2))
        shifts = rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0, 0.2), seeds)  # per-seed gap, varying
        drawn = [paired_draw(rng, n, shift, binary) for shift in shifts]
        a = stored({s: x for s, (x, _) in enumerate(drawn)}, binary)
        b = stored({s: y for s, (_, y) in enumerate(drawn)}, binary)
        d = stats.paired_difference(a, b, samples=400, seed=trial)
        assert (d.p_value < 0.05) == _excludes_zero(d), (trial, d)
        significant += d.p_value < 0.05
        if trial % 10 == 0:  # a table of three, Holm-adjusted
            c = stored({s: np.roll(x, 1) for s, (x, _) in enumerate(drawn)}, binary)
            metric = "accuracy" if binary else "rouge_l"
            scores = (("a", 0.5), ("b", 0.4), ("c", 0.3))
            rows = [make_row(k, "prompt", "ok", metric=metric, score=s) for k, s in scores]
            for v in decision.paired_vs_best(rows, {"a": a, "b": b, "c": c}).values():
                assert v.marker != "worse" or v.ci_high < 0
    assert 40 < significant < 160  # both answers occur: the property is not checked on one side only


def paired_draw(rng, n: int, shift: float, binary: bool):
    """One seed's per-example values of two techniques, a ahead of b by about `shift`."""
    base = rng.uniform(0.2, 0.8)
    if binary:
        return rng.random(n) < base + shift / 2, rng.random(n) < base - shift / 2
    x = rng.uniform(0, 1, n)
    return x, np.clip(x - shift + rng.normal(0, 0.2, n), 0, 1)


def stored(values_by_seed: dict, binary: bool) -> list[dict]:
    """Predictions as stored: `correct` under a 0/1 metric, `value` under a continuous one."""
    return [
        {"id": f"e{i}", "seed": seed, "correct": bool(v), "parsed": "x"}
        if binary
        else {"id": f"e{i}", "seed": seed, "correct": None, "value": float(v)}
        for seed, values in values_by_seed.items()
        for i, v in enumerate(values)
    ]


def test_collapse_is_checked_per_seed_and_names_the_seed():
    """The issue's case: one seed answered 'yes' 200/200 times, the other 'yes' 136/200 (pooled 84%,
    under the 90% threshold); and one seed on 'yes' 200/200 beside one on 'no' 194/200 (pooled 51.5%).
    Both were unflagged when the answers were pooled over seeds."""
    from harness.rows import make_row

    labels = ["yes", "no", "maybe"]

    def run(seed_answers: dict) -> tuple[list, dict]:
        rows = [
            make_row("lora", "lora", "ok", metric="accuracy", score=0.5),
            make_row("majority", "baseline", "ok", metric="accuracy", score=0.5, majority_label="yes"),
        ]
        lora = [
            {"id": f"e{i}", "seed": seed, "correct": answer == labels[i % 3], "parsed": answer}
            for seed, answers in seed_answers.items()
            for i, answer in enumerate(answers)
        ]
        majority = [p | {"parsed": "yes", "correct": p["parsed"] == "yes"} for p in lora]
        return rows, {"lora": lora, "majority": majority}

    one_seed_on_yes = {0: ["yes"] * 200, 1: ["yes"] * 136 + ["no"] * 32 + ["maybe"] * 32}
    assert stats.collapsed_answer(run(one_seed_on_yes)[1]["lora"]) is None  # pooled: 84%
    assert stats.collapsed_seeds(run(one_seed_on_yes)[1]["lora"]) == {0: ("yes", 1.0)}
    flags = decision.floor_flags(*run(one_seed_on_yes))["lora"]
    assert "answers collapsed in 1 of 2 seeds: seed 0 onto 'yes' (100% of its answers)" in flags

    two_labels = {0: ["yes"] * 200, 1: ["no"] * 194 + ["maybe"] * 6}
    flags = decision.floor_flags(*run(two_labels))["lora"]
    assert (
        "answers collapsed in 2 of 2 seeds: seed 0 onto 'yes' (100% of its answers); "
        "seed 1 onto 'no' (97% of its answers)"
    ) in flags

    every_seed_alike = {0: ["yes"] * 200, 1: ["yes"] * 194 + ["no"] * 6}  # all seeds on one label: one line
    assert "answers collapsed onto 'yes' (98% of answers)" in decision.floor_flags(*run(every_seed_alike))["lora"]
