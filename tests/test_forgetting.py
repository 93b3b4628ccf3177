"""Forgetting with a test: lm-eval's per-item values (log_samples) kept per seed, each technique's lm-eval
figures compared with the base model's and with the recommended technique's item by item (paired
bootstrap CI and p, Holm), and "forgets" / "no measurable change" said from the test, not from the sign."""

import pytest
from test_decision import make_run

from harness import planning
from harness.analysis import decision, forgetting
from harness.report import write_report

ITEMS = 125
FIGURE = "general_ability:acc"


def lm_eval(right: set[int], seeds=(0, 1), base: bool = False) -> dict:
    """Row fields of an lm-eval run on ITEMS items with the `right` ones correct, under every seed."""
    values = {f"i/{i}": float(i in right) for i in range(ITEMS)}
    return {
        f"lm_eval:{FIGURE}": len(right) / ITEMS,
        "lm_eval_samples": {str(s): {FIGURE: values} for s in seeds},
        "lm_eval_base": base or None,
    }


BASE = set(range(101))  # 0.808
SLIGHTLY_ABOVE = (BASE - {0, 1}) | {110, 111, 112, 113, 114}  # +3 items (+0.024): the "above the base"
FORGOT = (BASE - set(range(25))) | {120, 121}  # -23 items (-0.184)


def rows_with_lm_eval(tmp_path):
    store = make_run(
        tmp_path,
        {
            "zero": ([True] * 30 + [False] * 30, 0.001, 900),
            "lora": ([True] * 42 + [False] * 18, 0.002, 1200),
            "full": ([True] * 43 + [False] * 17, 0.010, 4000),
        },
    )
    extra = {"zero": lm_eval(BASE, base=True), "lora": lm_eval(SLIGHTLY_ABOVE), "full": lm_eval(FORGOT)}
    for row in store.rows:
        row.update(extra[row["technique"]])
    store.save()
    return store


def test_forgetting_is_said_from_the_test_not_from_the_sign(tmp_path):
    rows = rows_with_lm_eval(tmp_path).ordered_rows()
    changes = forgetting.versus_base(rows)
    assert set(changes) == {("lora", FIGURE), ("full", FIGURE)}  # the base model is the reference, not compared
    lora, full = changes[("lora", FIGURE)], changes[("full", FIGURE)]
    assert lora.difference.diff == pytest.approx(3 / ITEMS) and lora.verdict(decision.ALPHA) == "no measurable change"
    assert lora.difference.ci_low < 0 < lora.difference.ci_high
    assert full.difference.diff == pytest.approx(-23 / ITEMS) and full.verdict(decision.ALPHA) == "forgets"
    assert full.difference.ci_high < 0 and full.p_adjusted >= full.difference.p_value  # Holm over the two
    assert (full.difference.n_pairs, full.difference.n_seeds) == (2 * ITEMS, 2)


def test_the_upgrade_line_gives_the_lm_eval_change_with_its_interval_and_test(tmp_path):
    """Before: 'general_ability acc -0.160' bare, whatever the noise on 125 items."""
    store = rows_with_lm_eval(tmp_path)
    pick = decision.recommend(store.ordered_rows(), store.finished_predictions())
    assert pick.technique == "lora"
    full = next(line for line in pick.upgrades if line.startswith("**full**"))
    assert "general_ability acc -0.208 [" in full and "], significantly lower (Holm p = 0.0" in full

    report = write_report([store]).read_text()
    assert "Forgetting: each technique's lm-eval figures against the base model's (zero)" in report
    assert "| lora | general_ability acc | 0.808 | 0.832 | +0.024 [" in report
    assert "| no measurable change |" in report and "| forgets |" in report
    assert "- **lora** forgets" not in report  # the pick's change is within noise: no warning


def test_a_pick_that_forgets_is_flagged_under_the_recommendation(tmp_path):
    store = rows_with_lm_eval(tmp_path)
    for row in store.rows:
        if row["technique"] == "lora":
            row.update(lm_eval(FORGOT))
    report = write_report([store]).read_text()
    assert "**Use lora**" in report
    assert "- **lora** forgets general_ability acc: -0.184 [" in report
    assert "] against the base model (Holm p = " in report


def test_rows_without_per_item_values_keep_an_untested_delta(tmp_path):
    store = rows_with_lm_eval(tmp_path)
    for row in store.rows:
        del row["lm_eval_samples"]
    pick = decision.recommend(store.ordered_rows(), store.finished_predictions())
    full = next(line for line in pick.upgrades if line.startswith("**full**"))
    assert full.endswith("; general_ability acc -0.208 (untested: no per-item values)")
    assert "Forgetting:" not in write_report([store]).read_text()


def test_merge_keeps_each_seed_s_lm_eval_items():
    def cell(seed, right):
        row = {"technique": "lora", "kind": "lora", "status": "ok", "score": 0.5, "metric": "accuracy"}
        row |= {f"lm_eval:{FIGURE}": right / 2, "lm_eval_samples": {FIGURE: {"i/0": 1.0, "i/1": float(right > 1)}}}
        return {"cell": {"seed": seed, "params": {}}, "row": row, "predictions": [{"id": "e0", "correct": True}]}

    row, _ = planning.merge(None, [cell(0, 1), cell(1, 2)], [0, 1])
    assert row["lm_eval_samples"] == {"0": {FIGURE: {"i/0": 1.0, "i/1": 0.0}}, "1": {FIGURE: {"i/0": 1.0, "i/1": 1.0}}}
    assert len(forgetting.items(row, FIGURE)) == 4
