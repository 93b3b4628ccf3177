"""kind: dpo on the tiny model: it trains from the base or from another technique's result, and every
technique of a preference task is scored on the held-out pairs."""

import json

import pytest
from conftest import run_rows, tiny_recipe

from harness import models
from harness.config import ModelSpec, load_recipe
from harness.evaluate import preference
from harness.yamlconfig import ConfigError

FAST = "train: {max_steps: 3, batch_size: 4, limit: 16, logging_steps: 1, max_length: 256}"


def preference_recipe(model_dir, out, techniques):
    recipe = tiny_recipe(model_dir, out, techniques).replace("task: ticket-routing", "task: support-replies")
    return recipe.replace("max_new_tokens: 4", "max_new_tokens: 8")


def test_sft_then_dpo_runs_and_every_technique_gets_preference_figures(write, tiny_model_dir, tmp_path):
    # DPO from the base model, with adapter: full, is test_dpo_raises_the_chosen_answers_likelihood...'s
    techniques = (
        f"  - {{name: sft, kind: lora, {FAST}}}\n"
        f"  - {{name: sft-dpo, kind: dpo, init_from: sft, dpo: {{beta: 0.2, loss: ipo}}, {FAST}}}\n"
    )
    run_dir, rows = run_rows(write, preference_recipe(tiny_model_dir, tmp_path / "out", techniques), tmp_path / "out")
    assert rows.pop("echo-input")["kind"] == "baseline"  # the open-ended task's floor
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        assert 0 <= row["preference_accuracy"] <= 1 and row["preference_margin"] is not None
    assert rows["sft-dpo"]["init_from"] == "sft" and rows["sft"]["init_from"] is None
    # it owns the SFT it starts from: its one-off training cost includes it
    assert rows["sft-dpo"]["train_cost_usd"] == pytest.approx(
        rows["sft-dpo"]["own_train_cost_usd"] + rows["sft"]["train_cost_usd"]
    )
    curve = rows["sft-dpo"]["train_curve"]
    assert len(curve) == 3 and all("rewards/accuracies" in point for point in curve)
    assert rows["sft-dpo"]["train_steps"] == 3
    assert rows["sft-dpo"]["trainable_params"] < rows["sft-dpo"]["total_params"]  # adapter: lora (the default)
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "sft-dpo.jsonl").open()]
    assert all("preference_margin" in p for p in predictions)
    assert (run_dir / "artifacts" / "sft-dpo.seed-0" / "adapter_config.json").is_file()


def test_dpo_raises_the_chosen_answers_likelihood_on_its_training_pairs(tiny_model_dir):
    import torch
    from rich.progress import Progress

    from harness import prompting
    from harness.config import Recipe
    from harness.tasks import load_task
    from harness.techniques.base import RunContext
    from harness.techniques.preference import DpoTechnique, dpo_fit

    task = load_task("support-replies")
    pairs = task.train[:8]
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)

    def margins(m):
        prompts = [prompting.render(tokenizer, prompting.messages(task, e)) for e in pairs]
        return preference.score_pairs(m, tokenizer, prompts, [e.chosen for e in pairs], [e.rejected for e in pairs], 4)

    before = margins(model)
    spec = DpoTechnique.model_validate(
        {
            "name": "d",
            "kind": "dpo",
            "adapter": "full",
            "train": {"max_steps": 24, "batch_size": 4, "limit": 8, "learning_rate": 2e-3, "logging_steps": 4},
        }
    )
    recipe = Recipe.model_validate(
        {"name": "t", "model": str(tiny_model_dir), "task": "support-replies", "techniques": [spec.model_dump()]}
    )
    ctx = RunContext(recipe=recipe, task=task, device="cpu", run_dir=None, progress=Progress(disable=True))
    trained, stats, _ = dpo_fit(spec, ctx)(model, tokenizer, None, None)
    after = margins(trained.eval())
    # The likelihood margin (chosen minus rejected, summed over tokens) rises on every pair. The tiny
    # model's raw margins stay negative (the chosen replies are three times longer), so the preference
    # accuracy that rises is DPO's own: the margin measured against the starting model (TRL's rewards).
    assert all(a > b + 20 for a, b in zip(after.margins, before.margins))
    accuracies = [point["rewards/accuracies"] for point in stats.history]
    assert accuracies[-1] == 1.0 and accuracies[-1] > accuracies[0]


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "{name: d, kind: dpo, init_from: sfft}",
            "init_from 'sfft' is not a technique of this recipe (did you mean 'sft'?)",
        ),
        ("{name: d, kind: dpo, init_from: zero}", "init_from 'zero' must name a trained technique"),
        ("{name: d, kind: dpo, init_from: d}", "init_from makes a loop through 'd'"),
        ("{name: d, kind: dpo, dpo: {loss: dpoo}}", "techniques.3.dpo.loss"),
    ],
)
def test_dpo_recipe_errors(write, entry, message):
    path = write(
        "r.yaml",
        "name: x\ntask: support-replies\ntechniques:\n  - {name: zero, kind: prompt}\n"
        f"  - {{name: sft, kind: lora}}\n  - {{name: other, kind: full}}\n  - {entry}\n",
    )
    assert message in str(pytest.raises(ConfigError, load_recipe, path).value)


def test_dpo_on_a_task_without_preference_pairs_is_skipped_and_the_run_succeeds(write, tiny_model_dir, tmp_path):
    """Does-not-apply is one rule for every kind (the Kind declares what it needs): dpo on ticket-routing is
    a skipped row with the reason, not a failed one, and so is a technique that starts from it; it gets no
    search trials; `harness run` exits 0. (Before, dpo's cell failed and the run exited 1.)"""
    techniques = (
        f"  - {{name: dpo, kind: dpo, {FAST}, search: {{trials: 2, space: {{train.learning_rate: "
        "{log_uniform: [1e-5, 1e-4]}}}}\n"
        f"  - {{name: dpo-rl, kind: grpo, init_from: dpo, grpo: {{generations: 4}}, {FAST}}}\n"
    )
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "out", techniques).replace(
        "eval:\n", "eval:\n  validation: {size: 8}\n"
    )
    run_dir, rows = run_rows(write, recipe, tmp_path / "out")  # exits 0
    assert rows["dpo"]["status"] == "skipped"
    assert rows["dpo"]["error"].startswith(
        "task 'ticket-routing' has no preference pairs, which 'dpo' needs (kind dpo); fix: add `fields: {chosen:"
    )
    assert rows["dpo-rl"]["status"] == "skipped"
    assert rows["dpo-rl"]["error"].startswith("'dpo-rl' starts from 'dpo', which does not apply: task 'ticket-routing'")
    assert not (run_dir / "search.db").exists() and not list((run_dir / "cells").glob("*validation*"))
