"""Cost of ownership from hand-made rows (no model): the per-row cost figures, where cost lines cross,
which technique is cheapest over which volumes, and how volumes are worded."""

import math

import pytest

from harness.analysis import ownership

PRICES = {"cpu": 3.6}  # $3.60 an hour: $0.001 a second


def row(name: str, train: float, per_request: float, **extra) -> dict:
    return {
        "technique": name,
        "kind": "prompt",
        "status": "ok",
        "train_cost_usd": train,
        "serving_usd_per_request": per_request,
        **extra,
    }


# --- the per-row figures -------------------------------------------------------------------------


def test_the_run_cost_leaves_out_lm_eval_which_gets_its_own_line():
    """zero-shot ran the shared base-model lm-eval (40 of its 100 s); few-shot reused the scores."""
    zero = {"device": "cpu", "wall_seconds": 100.0, "lm_eval_seconds": 40.0, "eval_seconds": 20.0, "n_eval": 10}
    few = zero | {"lm_eval_seconds": 0.0, "wall_seconds": 60.0}
    costs = ownership.run_costs(zero, PRICES)
    assert costs["cost_usd"] == pytest.approx(0.060) and costs["lm_eval_cost_usd"] == pytest.approx(0.040)
    assert costs["train_cost_usd"] == 0.0  # nothing trained
    assert costs["serving_usd_per_request"] == pytest.approx(0.001 * 20 / 10)  # lm-eval is not serving either
    shared = ownership.run_costs(few, PRICES)
    assert shared["cost_usd"] == pytest.approx(0.060) and shared["lm_eval_cost_usd"] == 0.0
    without = ownership.run_costs(zero | {"lm_eval_seconds": None}, PRICES)
    assert without["cost_usd"] == pytest.approx(0.100) and without["lm_eval_cost_usd"] is None


def test_training_is_one_off_and_retrieval_is_part_of_serving():
    lora = {
        "device": "cuda:0",
        "wall_seconds": 500.0,
        "train_seconds": 360.0,
        "eval_seconds": 36.0,
        "n_eval": 100,
        "retrieval_seconds_per_request": 0.04,
    }
    costs = ownership.run_costs(lora, {"cuda": 3.6})
    assert costs["train_cost_usd"] == pytest.approx(0.36) and costs["cost_usd"] == pytest.approx(0.5)
    assert costs["serving_usd_per_request"] == pytest.approx(0.001 * (0.36 + 0.04))
    unpriced = ownership.run_costs(lora, {"cpu": 1.0})  # no price for the device: no costs, not zero ones
    assert unpriced["cost_usd"] is None and unpriced["train_cost_usd"] is None
    assert unpriced["serving_usd_per_request"] is None


def test_a_token_priced_row_keeps_its_cost_and_serves_at_its_token_cost():
    api = {
        "device": "cpu",
        "wall_seconds": 30.0,
        "eval_seconds": 29.0,
        "n_eval": 50,
        "cost_usd": 0.25,
        "api_input_tokens": 20000,
        "api_output_tokens": 500,
    }
    costs = ownership.run_costs(api, PRICES)
    assert costs["cost_usd"] == 0.25 and costs["train_cost_usd"] == 0.0
    assert costs["serving_usd_per_request"] == pytest.approx(0.005)


# --- where lines cross ---------------------------------------------------------------------------


def test_two_lines_cross_at_the_known_volume():
    rag, lora = row("rag", 0.0, 0.0005), row("lora", 10.0, 0.0001)
    assert ownership.break_even(rag, lora) == pytest.approx(25_000)
    assert ownership.total_cost(rag, 25_000) == pytest.approx(ownership.total_cost(lora, 25_000))
    (crossing,) = ownership.crossings([rag, lora])
    assert (crossing.before, crossing.after) == ("rag", "lora") and crossing.volume == pytest.approx(25_000)
    assert ownership.cheapest_to_start([rag, lora]) is rag and ownership.cheapest_per_request([rag, lora]) is lora
    assert ownership.cheapest_ranges([rag, lora]) == [
        ("rag", 0.0, pytest.approx(25_000)),
        ("lora", pytest.approx(25_000), math.inf),
    ]


def test_parallel_lines_never_cross():
    zero, few = row("zero", 0.0, 0.0002), row("lora", 5.0, 0.0002)
    assert ownership.break_even(zero, few) is None and ownership.crossings([zero, few]) == []
    assert ownership.cheapest_ranges([zero, few]) == [("zero", 0.0, math.inf)]


def test_cheaper_to_start_and_per_request_dominates():
    good, bad = row("good", 1.0, 0.0001), row("bad", 2.0, 0.0003)
    assert ownership.break_even(good, bad) is None and ownership.crossings([bad, good]) == []
    assert ownership.cheapest_to_start([bad, good]) is good and ownership.cheapest_per_request([bad, good]) is good
    assert ownership.cheapest_ranges([bad, good]) == [("good", 0.0, math.inf)]


def test_the_cheapest_over_each_range_of_volumes():
    """prompt < lora < full to start, the reverse per request; prompt and full cross off the envelope."""
    rows = [
        row("full", 100.0, 0.0001),
        row("prompt", 0.0, 0.002),
        row("lora", 10.0, 0.0005),
        row("failed", 0.0, 0.0, status="failed"),
        {"technique": "unpriced", "status": "ok"},
    ]
    assert [(c.before, c.after) for c in ownership.crossings(rows)] == [
        ("prompt", "lora"),
        ("prompt", "full"),
        ("lora", "full"),
    ]
    ranges = ownership.cheapest_ranges(rows)
    assert [name for name, _, _ in ranges] == ["prompt", "lora", "full"]
    assert ranges[0][2] == ranges[1][1] == pytest.approx(10 / 0.0015)
    assert ranges[1][2] == ranges[2][1] == pytest.approx(90 / 0.0004)
    assert ownership.cheapest_ranges([]) == []


@pytest.mark.parametrize(
    "volume, text",
    [
        (40_123, "40k"),
        (1_234_567, "1.2M"),
        (850, "850"),
        (999_999, "1M"),
        (0.3, "1"),
        (6_666.7, "6.7k"),
        (2.5e9, "2.5B"),
    ],
)
def test_volumes_are_rounded_to_two_significant_figures(volume, text):
    assert ownership.volume_text(volume) == text


def test_a_technique_started_from_another_owns_its_training_too():
    from harness.analysis import ownership

    sft = {"technique": "sft", "train_cost_usd": 0.004}
    dpo = ownership.with_starting_model({"technique": "dpo", "train_cost_usd": 0.003}, sft)
    assert dpo["train_cost_usd"] == pytest.approx(0.007) and dpo["own_train_cost_usd"] == 0.003
    assert ownership.with_starting_model({"train_cost_usd": 0.003}, None) == {"train_cost_usd": 0.003}
    # RL against a reward model owns that too: SFT, then the reward model, then its own RL
    rm = {"technique": "rm", "train_cost_usd": 0.002}
    rl = ownership.with_starting_model({"technique": "rl", "train_cost_usd": 0.001}, sft, rm)
    assert rl["train_cost_usd"] == pytest.approx(0.007) and rl["own_train_cost_usd"] == 0.001
