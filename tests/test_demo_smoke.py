"""The real demo recipe, shrunk by overrides onto the tiny model: two tasks, every kind, the combined
report, exports, and `check` / `compare` on the result. (Resuming an interrupted multi-task run:
tests/test_kill_resume.py.)"""

import json

from click.testing import CliRunner

from harness.cli import main
from harness.config import load_recipe
from harness.results import open_runs

REPO_RECIPE = "recipes/demo.yaml"


def test_shrunken_demo_runs_every_technique_on_both_tasks(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(REPO_RECIPE)
    overrides = [
        f"model={tiny_model_dir}",
        f"output_dir={tmp_path / 'out'}",
        "device=cpu",
        "eval.heldout.limit=4",
        "eval.heldout.batch_size=4",
        "eval.heldout.max_new_tokens=4",
        "eval.heldout.bootstrap_samples=100",
        "eval.lm_eval.limit=4",
    ]
    overrides += [
        f"techniques.{t.name}.train.{key}"
        for t in recipe.techniques
        if hasattr(t, "train")
        for key in ("max_steps=1", "batch_size=2")
    ]
    runner = CliRunner()
    result = runner.invoke(main, ["run", REPO_RECIPE, *overrides], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out" / "demo").iterdir()
    stores = open_runs(run_dir)
    assert [s.meta["task"]["name"] for s in stores] == ["product-catalogue", "ticket-routing"]
    for store in stores:
        rows = {r["technique"]: r for r in store.rows}
        classification = store.meta["task"]["name"] == "ticket-routing"  # gets the majority-label floor
        floor_row = "majority" if classification else "echo-input"  # an open-ended task: the echoed input
        assert set(rows) == {"zero-shot", "few-shot", "rag", "full", "lora", "qlora", floor_row}
        assert rows.pop(floor_row)["kind"] == "baseline"
        for name, row in rows.items():
            expected = "skipped" if name == "rag" and store.meta["task"]["name"] == "ticket-routing" else "ok"
            assert row["status"] == expected, (name, row["error"])
            if expected == "ok":
                assert row["lm_eval:general_ability:acc"] is not None
    assert next(r for r in stores[0].rows if r["technique"] == "rag")["recall_at_k"] == 1.0

    report = (run_dir / "REPORT.md").read_text()
    assert report.count("### product-catalogue") == 1 and report.count("### ticket-routing") == 1
    # 4 examples cannot make anything significantly above a floor: no recommendation from nothing (issue 28)
    assert (
        "**product-catalogue**: No recommendation: no technique scores significantly above the task's floor, "
        "echoing the input" in report
    )
    # the untrained tiny model names no label: nothing beats always answering the majority label
    assert "**ticket-routing**: No recommendation: no technique scores significantly above the task's floor" in report
    assert "**lora** named no label in 100% of answers" in report
    assert "rag** on ticket-routing skipped: task 'ticket-routing' has no corpus" in report
    assert len((run_dir / "results.csv").read_text().splitlines()) == 1 + 14
    exported = json.loads(runner.invoke(main, ["report", str(run_dir), "--format", "json"]).output)
    assert [len(run["rows"]) for run in exported] == [7, 7]

    same = runner.invoke(main, ["check", str(run_dir), "--baseline", str(run_dir)])
    assert same.exit_code == 0 and "13 technique(s)" in same.output, same.output  # the floor rows included
    assert runner.invoke(main, ["compare", str(run_dir), str(run_dir)]).exit_code == 0
