"""The search objective: validation macro-F1 for classification tasks, where validation accuracy or
loss can favour a model that answers the majority label; the report says which objective chose."""

import json

import pytest
from conftest import run_cli, run_rows, tiny_recipe

from harness.yamlconfig import ConfigError

SEARCHED = (
    "  - {name: few, kind: prompt, search: {trials: 3, space: {shots: [0, 1, 2]}, objective: validation_macro_f1}}\n"
)


def test_a_macro_f1_search_chooses_by_the_validation_macro_f1_and_the_report_says_so(write, tiny_model_dir, tmp_path):
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "out", SEARCHED).replace(
        "eval:\n", "eval:\n  validation: {size: 10}\n"
    )
    run_dir, rows = run_rows(write, recipe, tmp_path / "out")
    trials = [c for c in json.loads((run_dir / "results.json").read_text())["cells"] if c.get("trial") is not None]
    assert len(trials) == 3
    for trial in trials:  # each trial's objective is its validation macro-F1, not its accuracy
        assert trial["objective"] == trial["score_macro_f1"]
    best = max(trials, key=lambda t: t["objective"])
    row = rows["few"]
    assert row["search_objective"] == "validation_macro_f1" and row["search_best"] == best["objective"]
    assert row["chosen"] == best["params"]
    report = (run_dir / "REPORT.md").read_text()
    assert "(objective: validation macro-F1, higher is better)" in report


def test_a_macro_f1_objective_on_a_task_without_labels_is_refused_before_running(write, tmp_path):
    text = f"name: x\ntask: product-catalogue\ntechniques:\n{SEARCHED}eval: {{validation: {{size: 10}}}}\n"
    result = run_cli("validate", write("r.yaml", text))
    assert result.exit_code == 2
    assert "technique 'few': objective validation_macro_f1 needs a classification task" in result.output


def test_the_objective_is_one_of_the_known_ones(write):
    from harness.config import load_recipe

    text = (
        "name: x\ntask: ticket-routing\ntechniques:\n"
        + SEARCHED.replace("macro_f1", "f1")
        + "eval: {validation: {size: 10}}\n"
    )
    with pytest.raises(ConfigError, match="validation_macro_f1"):
        load_recipe(write("r.yaml", text))


def test_each_objective_reads_its_own_validation_figure():
    from harness.planning import Cell, chosen_trial
    from harness.worker import objective_value

    row = {"status": "ok", "score": 0.9, "score_macro_f1": 0.3, "validation_loss": 1.2}
    read = {
        o: objective_value(Cell("t", 0, "validation", objective=o), row)
        for o in ("validation_score", "validation_loss", "validation_macro_f1")
    }
    assert read == {"validation_score": 0.9, "validation_loss": 1.2, "validation_macro_f1": 0.3}
    # the majority-label trial has the best accuracy, the other the best macro-F1: macro-F1 picks the other
    trials = [{"status": "ok", "objective": 0.45, "trial": 0}, {"status": "ok", "objective": 0.6, "trial": 1}]
    assert chosen_trial(trials, "validation_macro_f1")["trial"] == 1
