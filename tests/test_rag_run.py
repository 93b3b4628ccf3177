"""End to end on the tiny model: RAG, LoRA + RAG, and lm-eval columns on every technique."""

import json

import pytest
from click.testing import CliRunner

from harness import results
from harness.analysis import forgetting
from harness.cli import main

RECIPE = """
name: tiny-rag
model: {model}
task: product-catalogue
device: cpu
output_dir: {out}
techniques:
  - {{name: zero, kind: prompt}}
  - {{name: rag, kind: rag, retrieval: {{retriever: bm25, k: 2, context_tokens: 64}}}}
  - {{name: lora-rag, kind: lora, train: {{max_steps: 2, batch_size: 4, limit: 16}}, retrieval: {{k: 1}}}}
eval:
  heldout: {{limit: 8, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200}}
  lm_eval: {{tasks: [general_ability], limit: 4, batch_size: 4}}
"""


def test_rag_and_lm_eval_fill_their_columns_for_every_technique(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, out=tmp_path / "out"))
    result = CliRunner().invoke(main, ["run", str(recipe)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out" / "tiny-rag").iterdir()
    rows = {r["technique"]: r for r in results.RunStore.open(run_dir).rows}
    assert rows.pop("echo-input")["kind"] == "baseline"  # the open-ended task's floor
    assert all(r["status"] == "ok" for r in rows.values()), [r["error"] for r in rows.values()]

    for name in ("rag", "lora-rag"):  # product names make BM25 find the right page every time
        assert rows[name]["recall_at_k"] == 1.0 and rows[name]["retriever"] == "bm25"
        assert rows[name]["retrieval_misses"] == 0 and rows[name]["index_chunks"] == 64
        predictions = [json.loads(line) for line in (run_dir / "predictions" / f"{name}.jsonl").open()]
        assert all(p["retrieved"][0] == p["gold_docs"][0] for p in predictions)
    assert rows["rag"]["retrieval_k"] == 2 and rows["lora-rag"]["retrieval_k"] == 1
    assert not rows["rag"]["index_cached"] and rows["lora-rag"]["index_cached"]  # built once per run
    assert rows["zero"].get("recall_at_k") is None
    for name in ("rag", "lora-rag"):  # retrieval is part of serving a request
        row = rows[name]
        assert 0 < row["retrieval_seconds_per_request"] <= row["retrieval_seconds"]
        assert row["serving_usd_per_request"] == pytest.approx(
            (row["eval_seconds"] / 8 + row["retrieval_seconds_per_request"]) * 0.10 / 3600
        )
    assert rows["zero"].get("retrieval_seconds_per_request") is None

    for row in rows.values():
        assert 0 <= row["lm_eval:general_ability:acc"] <= 1 and row["lm_eval:general_ability:acc_stderr"] > 0
    assert rows["rag"]["lm_eval_shared"] and not rows["lora-rag"].get("lm_eval_shared")  # same base model
    assert rows["rag"]["lm_eval:general_ability:acc"] == rows["zero"]["lm_eval:general_ability:acc"]
    # lm-eval's items are kept per seed, and the trained technique is tested against the base model on them
    assert rows["zero"]["lm_eval_base"] and rows["rag"]["lm_eval_base"] and not rows["lora-rag"].get("lm_eval_base")
    assert len(forgetting.items(rows["lora-rag"], "general_ability:acc")) == 4  # one seed, 4 items
    assert set(forgetting.versus_base(list(rows.values()))) == {
        ("lora-rag", "general_ability:acc"),
        ("lora-rag", "general_ability:acc_norm"),
    }

    report = (run_dir / "REPORT.md").read_text()
    assert "recall" in report and "general_ability acc" in report and "gold retrieved" in report
    assert "| 1.00@2 |" in report
    assert "against the base model's (zero)" in report and "| lora-rag | general_ability acc |" in report
