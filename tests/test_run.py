"""End to end on the tiny model: harness run, report and validate (studies, kills and resume: test_study.py)."""

import json

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import results
from harness.rows import CORE

TWO = """\
  - {name: zero, kind: prompt, shots: 0}
  - {name: few, kind: prompt, shots: 2}
"""


def test_run_writes_results_predictions_and_report(write, tiny_model_dir, tmp_path):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", TWO))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    data = json.loads((run_dir / "results.json").read_text())
    assert data["meta"]["recipe"]["name"] == "tiny" and data["meta"]["seed"] == 0
    assert data["meta"]["versions"]["torch"] and data["meta"]["task"]["n_test"] == 120
    rows = {r["technique"]: r for r in data["rows"]}
    assert set(rows) == {"zero", "few", "majority"}  # a classification task gets the majority-label floor
    assert rows["majority"]["kind"] == "baseline" and rows["majority"]["majority_label"]
    rows_majority_label = rows.pop("majority")["majority_label"]
    for row in rows.values():
        assert set(CORE) <= set(row)
        assert row["status"] == "ok" and row["error"] is None
        assert row["n_eval"] == 12 and row["metric"] == "accuracy"
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
        assert row["eval_seconds"] > 0 and row["wall_seconds"] >= row["eval_seconds"]
        assert row["peak_memory_bytes"] > 10 * 2**20 and row["peak_memory_method"].startswith("process RSS")
        assert row["trainable_params"] == 0 and row["total_params"] > 0
        assert row["cost_usd"] == pytest.approx(row["wall_seconds"] / 3600 * 0.10)
        assert row["train_seconds"] is None  # nothing was trained
        predictions = [json.loads(line) for line in (run_dir / "predictions" / f"{row['technique']}.jsonl").open()]
        assert len(predictions) == 12
        assert sum(p["correct"] for p in predictions) / 12 == pytest.approx(row["score"])
    report = (run_dir / "REPORT.md").read_text()
    assert "| zero | prompt | ok |" in report and "## Recipe" in report and "## Wrong answers" in report
    assert (
        f"Floor: always answering '{rows_majority_label}'" in report
        and "uniformly among the labels would score 0.167" in report
    )
    frame = results.load_frame(run_dir)
    assert list(frame["technique"]) == ["zero", "few", "majority"]

    (run_dir / "REPORT.md").unlink()
    rerendered = run_cli("report", run_dir)
    assert rerendered.exit_code == 0 and (run_dir / "REPORT.md").read_text() == report


def test_validate_reports_errors_cleanly(write, tmp_path):
    recipe = write("r.yaml", "name: x\ntask: ticket-routing\ntechniques:\n  - {name: a, kind: prompt, shot: 1}\n")
    result = run_cli("validate", recipe)
    assert result.exit_code == 2
    assert "unknown key 'techniques.0.shot' (did you mean 'techniques.0.shots'?)" in result.output


def test_an_uncached_hub_model_offline_fails_fast_and_leaves_no_run_folder(write, tmp_path, monkeypatch):
    import time

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)  # HF_HUB_OFFLINE=1, read at its import
    recipe = write(
        "r.yaml",
        f"name: x\nmodel: nobody/does-not-exist\ntask: ticket-routing\noutput_dir: {tmp_path / 'out'}\n"
        "techniques:\n  - {name: zero, kind: prompt}\n",
    )
    start = time.monotonic()
    result = run_cli("run", recipe)
    assert result.exit_code == 2, result.output
    assert "'nobody/does-not-exist' is not in the Hugging Face cache" in result.output
    assert time.monotonic() - start < 20  # not the hub client's minute of retries
    assert not (tmp_path / "out").exists()


SERVED = (
    TWO + "  - {name: lora, kind: lora, train: {max_steps: 2, batch_size: 4, limit: 16}, lora: {rank: 2, alpha: 4}}\n"
)


def test_run_measures_serving_and_reports_the_cost_at_volume(write, tiny_model_dir, tmp_path):
    extra = (
        "  lm_eval: {tasks: [general_ability], limit: 4, batch_size: 4}\nworkload: {requests: 1000000, period: month}\n"
    )
    text = tiny_recipe(tiny_model_dir, tmp_path / "out", SERVED, extra).replace(
        "bootstrap_samples: 200}", "bootstrap_samples: 200, latency_samples: 2}"
    )
    result = run_cli("run", write("r.yaml", text))
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    rows = {r["technique"]: r for r in results.RunStore.open(run_dir).rows}
    for name in ("zero", "few", "lora"):
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert row["latency_p95_seconds"] >= row["latency_p50_seconds"] > 0
        assert row["prompt_tokens_p95"] >= row["prompt_tokens_mean"] > 0
        assert 0 < row["output_tokens_mean"] <= row["output_tokens_p95"] <= 4  # max_new_tokens
        assert row["serving_usd_per_request"] == pytest.approx(row["eval_seconds"] / 12 * 0.10 / 3600)
        assert row["eval_examples_per_second"] == pytest.approx(12 / row["eval_seconds"])  # requests/s, batched
        assert row["cost_usd"] == pytest.approx((row["wall_seconds"] - row["lm_eval_seconds"]) * 0.10 / 3600)
        assert row["lm_eval_cost_usd"] == pytest.approx(row["lm_eval_seconds"] * 0.10 / 3600)
    assert rows["few"]["prompt_tokens_mean"] > rows["zero"]["prompt_tokens_mean"]  # two shots are read every time
    assert rows["zero"]["train_cost_usd"] == 0 and rows["lora"]["train_cost_usd"] == pytest.approx(
        rows["lora"]["train_seconds"] * 0.10 / 3600
    )
    # the shared base-model lm-eval is billed once, on its own line, never to zero-shot's cost
    assert rows["zero"]["lm_eval_seconds"] > 0 and rows["few"]["lm_eval_shared"]
    assert rows["few"]["lm_eval_cost_usd"] == 0 and rows["lora"]["lm_eval_cost_usd"] > 0

    report = (run_dir / "REPORT.md").read_text()
    section = report[report.index("## Cost at volume") : report.index("## How each figure was measured")]
    assert "(plots/ticket-routing-cost-at-volume.png)" in section and "at 1M requests a month" in section
    assert (run_dir / "plots" / "ticket-routing-cost-at-volume.png").read_bytes()[:4] == b"\x89PNG"
    assert "the cheapest to start" in section and "| lora | $0.0" in section
