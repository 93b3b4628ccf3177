"""One finished tiny run for the deploy tests (tests/test_deploy*.py): a few-shot prompt, RAG, LoRA and
full fine-tuning on product-catalogue (it has a corpus), at float32 so answers can be compared exactly;
the few-shot technique load-tested at the end of the run (eval.serving)."""

from __future__ import annotations

import json
from pathlib import Path

RECIPE = """
name: tiny-deploy
model: {{id: {model}, dtype: float32}}
task: product-catalogue
device: cpu
output_dir: {out}
techniques:
  - {{name: few-shot, kind: prompt, shots: 2}}
  - {{name: rag, kind: rag, retrieval: {{retriever: bm25, k: 1, context_tokens: 48}}}}
  - {{name: lora, kind: lora, train: {{max_steps: 1, batch_size: 4, limit: 8, learning_rate: 1.0e-2}}}}
  - {{name: full, kind: full, train: {{max_steps: 1, batch_size: 4, limit: 8}}}}
eval:
  heldout: {{limit: 6, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200, latency_samples: 0}}
  serving: {{concurrency: [1, 2], requests: 4, techniques: [few-shot]}}   # the run's own load test
workload: {{requests: 1000, latency_p95_seconds: 60}}
"""


def run_deploy_recipe(model_dir: Path, folder: Path) -> Path:
    """Run the recipe with the harness's own CLI; the run folder."""
    from click.testing import CliRunner

    from harness.cli import main

    recipe = folder / "deploy.yaml"
    recipe.write_text(RECIPE.format(model=model_dir, out=folder / "out"))
    result = CliRunner().invoke(main, ["run", str(recipe)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "out" / "tiny-deploy").iterdir()
    return run_dir


def run_predictions(run_dir: Path, technique: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions" / f"{technique}.jsonl").open()]
