"""kind: grpo on the tiny model: RL rewarded by the task's own metric, the mean reward logged per step."""

import json

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import metrics
from harness.config import load_recipe
from harness.tasks import load_task
from harness.techniques.rl import format_reward, task_reward
from harness.yamlconfig import ConfigError


def test_grpo_runs_end_to_end_and_logs_its_reward_every_step(write, tiny_model_dir, tmp_path):
    techniques = (
        "  - {name: rl, kind: grpo, grpo: {generations: 4, max_completion_tokens: 4, format_reward: 0.5},\n"
        "     train: {max_steps: 3, batch_size: 8, limit: 16, logging_steps: 1, learning_rate: 1.0e-4}}\n"
    )
    result = run_cli("run", write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", techniques)))
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    row = next(r for r in json.loads((run_dir / "results.json").read_text())["rows"] if r["technique"] == "rl")
    assert row["status"] == "ok", row["error"]
    assert row["kind"] == "grpo" and row["train_steps"] == 3 and row["n_eval"] == 12
    curve = row["train_curve"]
    assert [point["step"] for point in curve] == [1, 2, 3]
    assert all(0 <= point["reward"] <= 1.5 for point in curve)  # task reward (0/1) + 0.5 x format reward (0/1)
    assert row["trainable_params"] < row["total_params"]  # LoRA adapters by default
    assert (run_dir / "plots" / "ticket-routing-training.png").stat().st_size > 1000  # loss and reward panels
    assert (
        "![ticket-routing: training curves](plots/ticket-routing-training.png)" in (run_dir / "REPORT.md").read_text()
    )


def test_the_reward_is_the_tasks_metric_on_each_sampled_answer():
    routing = load_task("ticket-routing")
    reward = task_reward(routing)
    completions = [
        [{"role": "assistant", "content": "billing"}],
        [{"role": "assistant", "content": "Shipping."}],
        [{"role": "assistant", "content": "no idea"}],
    ]
    assert reward(completions, expected=["billing", "billing", "billing"]) == [1.0, 0.0, 0.0]
    assert format_reward(routing)(completions) == [1.0, 1.0, 0.0]
    replies = load_task("support-replies")
    expected = replies.train[0].output
    values = task_reward(replies)([expected, "thanks"], expected=[expected, expected])
    assert values[0] == 1.0 and 0 <= values[1] < 0.5
    assert values[1] == pytest.approx(metrics.get("rouge_l").value(expected, "thanks", None))


def test_a_batch_must_hold_whole_groups(write):
    path = write(
        "r.yaml",
        "name: x\ntask: ticket-routing\ntechniques:\n"
        "  - {name: rl, kind: grpo, grpo: {generations: 3}, train: {batch_size: 8}}\n",
    )
    assert "must be a multiple of grpo.generations" in str(pytest.raises(ConfigError, load_recipe, path).value)
