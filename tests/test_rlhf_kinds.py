"""RLHF on the tiny model: a reward model (kind reward) learns its pairs, RLOO against it raises its
reward, KTO and ORPO train on the pairs, and the recipe errors and failed-dependency rows of `reward:`."""

import json

import pytest
import torch
from rich.progress import Progress

from harness import models, planning, prompting
from harness.config import ModelSpec, Recipe, load_recipe
from harness.evaluate import reward as scoring
from harness.tasks import load_task
from harness.techniques.base import RunContext
from harness.techniques.finetune import save_artifact, trained_source
from harness.yamlconfig import ConfigError

PAIRS = 8
REWARD_TRAIN = {"max_steps": 8, "batch_size": 4, "limit": PAIRS, "learning_rate": 1e-3, "logging_steps": 2}


def context(tiny_model_dir, techniques: list[dict], run_dir=None) -> RunContext:
    recipe = Recipe.model_validate(
        {"name": "t", "model": str(tiny_model_dir), "task": "support-replies", "techniques": techniques}
    )
    task = load_task("support-replies")
    return RunContext(recipe=recipe, task=task, device="cpu", run_dir=run_dir, progress=Progress(disable=True))


def pair_margins(model, tokenizer, task) -> list[float]:
    """reward(chosen) - reward(rejected) on the reward model's training pairs."""
    examples = task.train[:PAIRS]
    prompts = [prompting.messages(task, e) for e in examples]

    def rewarded(answer_of):
        texts = [scoring.conversation_text(tokenizer, p, answer_of(e)) for p, e in zip(prompts, examples)]
        return scoring.scores(model, tokenizer, texts, batch_size=8)

    return [c - r for c, r in zip(rewarded(lambda e: e.chosen), rewarded(lambda e: e.rejected))]


@pytest.fixture(scope="module")
def reward_model(tiny_model_dir, tmp_path_factory):
    """A full reward model trained on 8 pairs and saved where a run keeps it (artifacts/rm.seed-0); the
    margins on its pairs before and after, and its training log."""
    from harness.techniques.reward import RewardTechnique, fit

    spec = RewardTechnique.model_validate({"name": "rm", "kind": "reward", "adapter": "full", "train": REWARD_TRAIN})
    run_dir = tmp_path_factory.mktemp("rlhf-run")
    ctx = context(tiny_model_dir, [spec.model_dump()], run_dir)
    model, tokenizer = scoring.load_reward_model(ctx.recipe.model, "cpu")
    before = pair_margins(model, tokenizer, ctx.task)
    trained, stats, _ = fit(spec, ctx, model, tokenizer, None)
    after = pair_margins(trained.eval(), tokenizer, ctx.task)
    save_artifact(trained, tokenizer, run_dir / "artifacts" / "rm.seed-0")
    return run_dir, before, after, stats


def test_the_reward_model_learns_its_training_pairs(reward_model):
    _, before, after, stats = reward_model
    assert all(m > 0 for m in after)  # pair accuracy 1.0 on the 8 pairs it trained on
    assert sum(after) / PAIRS > sum(before) / PAIRS + 0.5  # the mean margin rises
    margins = [point["margin"] for point in stats.history]
    assert margins[-1] > margins[0] and stats.history[-1]["accuracy"] == 1.0


def imitate_both_replies(model, tokenizer, task, examples, steps: int = 30):
    """A few steps of SFT on both replies of each pair, so the policy samples either: RL then has a choice
    the reward model cares about (the tiny model's own samples are noise it scores alike)."""
    texts = [
        scoring.conversation_text(tokenizer, prompting.messages(task, e), reply)
        for e in examples
        for reply in (e.chosen, e.rejected)
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return model


def test_rloo_against_the_reward_model_raises_its_mean_reward(reward_model, tiny_model_dir):
    from harness.techniques.rl import RlooTechnique, rl_fit

    run_dir = reward_model[0]
    reward_spec = {"name": "rm", "kind": "reward", "train": REWARD_TRAIN}
    spec = RlooTechnique.model_validate(
        {
            "name": "rl",
            "kind": "rloo",
            "adapter": "full",
            "reward": {"model": "rm"},
            "rloo": {"generations": 8, "max_completion_tokens": 24, "beta": 0.01},
            "train": {
                "max_steps": 8, "batch_size": 8, "limit": 1, "learning_rate": 5e-3, "logging_steps": 1,
                "warmup_ratio": 0, "lr_scheduler": "constant",
            },
        }
    )  # fmt: skip
    ctx = context(tiny_model_dir, [reward_spec, spec.model_dump()], run_dir)
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    model = imitate_both_replies(model.train(), tokenizer, ctx.task, ctx.task.train[:1])
    _, stats, _ = rl_fit(spec, ctx)(model, tokenizer, None, None)
    learned = [point["rewards/rm/mean"] for point in stats.history]
    assert len(learned) == 8 and all("kl" in point for point in stats.history)  # beta > 0: TRL logs the KL
    assert sum(learned[-3:]) / 3 > sum(learned[:3]) / 3  # the reward model's score rises over its steps
    assert stats.extra["trained_against"] == "rm" and stats.extra["rl_model_reward_last"] == learned[-1]


@pytest.mark.parametrize("kind, settings", [("kto", {"beta": 0.1}), ("orpo", {"beta": 0.1})])
def test_kto_and_orpo_train_on_the_pairs(tiny_model_dir, kind, settings):
    from harness import kinds
    from harness.techniques.preference import preference_fit

    spec = kinds.get(kind).settings.model_validate(
        {
            "name": kind,
            "kind": kind,
            kind: settings,
            "train": {"max_steps": 2, "batch_size": 4, "limit": 8, "logging_steps": 1, "max_length": 256},
        }
    )
    ctx = context(tiny_model_dir, [spec.model_dump()])
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    from harness.techniques.finetune import lora_config

    trained, stats, _ = preference_fit(spec, ctx)(model, tokenizer, None, lora_config(spec.lora))
    assert stats.steps == 2 and len(stats.losses) == 2 and all(loss == loss for loss in stats.losses)  # no NaN
    assert trained.get_nb_trainable_parameters()[0] > 0  # LoRA adapters were trained


RECIPE = """name: x
task: support-replies
techniques:
  - {name: sft, kind: lora}
  - {name: rm, kind: reward}
"""


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "  - {name: rl, kind: rloo, reward: {model: rmm}}\n",
            "technique 'rl': reward.model 'rmm' is not a technique of this recipe; it must name a `kind: reward` "
            "technique (did you mean 'rm'?)",
        ),
        (
            "  - {name: rl, kind: grpo, reward: {model: sft}}\n",
            "reward.model 'sft' is kind lora, not a reward model; it must name a `kind: reward` technique (one of: rm)",
        ),
        (
            "eval: {reward_model: nope}\n",
            "eval.reward_model 'nope' is not a technique of this recipe; it must name a `kind: reward` "
            "technique (one of: rm)",
        ),
        ("  - {name: d, kind: dpo, init_from: rm}\n", "init_from 'rm' is a reward model, which scores answers"),
        (
            "  - {name: d, kind: dpo, dpo: {loss: kto}}\n",
            "'kto' is not a DPOTrainer loss: it is kind: kto (TRL KTOTrainer)",
        ),
        ("  - {name: p, kind: ppo}\n", "kind ppo: the pinned TRL 1.16.0 has no PPOTrainer"),
        ("  - {name: r, kind: reward, retrieval: {}}\n", "a reward model scores a message and an answer without"),
        (
            "  - {name: r, kind: reward, search: {trials: 2, space: {train.learning_rate: [1.0e-4, 1.0e-3]}}}\n"
            "eval: {validation: {size: 8}}\n",
            "search.objective validation_score: a reward model answers nothing to score",
        ),
    ],
)
def test_reward_recipe_errors(write, entry, message):
    assert message in str(pytest.raises(ConfigError, load_recipe, write("r.yaml", RECIPE + entry)).value)


def test_reward_models_train_before_the_techniques_that_need_them():
    recipe = load_recipe_text(
        RECIPE
        + "  - {name: rl, kind: rloo, init_from: sft, reward: {model: rm}}\n  - {name: zero, kind: prompt}\n"
        + "eval: {reward_model: rm}\n"
    )
    waves = [[t.name for t in wave] for wave in planning.waves(recipe.techniques, recipe.eval.reward_model)]
    # rm first; with eval.reward_model every technique that answers waits for it, the RL for sft too
    assert waves == [["rm"], ["sft", "zero"], ["rl"]]
    assert [[t.name for t in w] for w in planning.waves(recipe.techniques)] == [["sft", "rm", "zero"], ["rl"]]


def load_recipe_text(text: str):
    import yaml

    return Recipe.model_validate(yaml.safe_load(text))


@pytest.mark.slow  # three cell processes (~15 s on an idle 2-core machine); the unit test below is in the default suite
def test_a_failed_reward_model_is_a_failed_row_of_the_rl_that_needs_it_and_the_others_run(
    write, tiny_model_dir, tmp_path
):
    from conftest import run_cli, tiny_recipe

    techniques = (
        "  - {name: rm, kind: reward, lora: {target_modules: [input_layernorm]}}\n"
        "  - {name: rl, kind: rloo, reward: {model: rm}, train: {max_steps: 1, batch_size: 4}}\n"
        "  - {name: zero, kind: prompt}\n"
    )
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "out", techniques).replace("ticket-routing", "support-replies")
    result = run_cli("run", write("r.yaml", recipe.replace("limit: 12", "limit: 4")))
    assert result.exit_code == 1, result.output  # a failed technique
    (run_dir,) = (tmp_path / "out" / "tiny").iterdir()
    rows = {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    assert rows["rm"]["status"] == "failed" and "LlamaRMSNorm" in rows["rm"]["error"]
    assert rows["rl"]["status"] == "failed"
    assert rows["rl"]["error"].startswith("RuntimeError: reward.model 'rm' failed, so this technique cannot run: ")
    assert rows["zero"]["status"] == "ok"


def test_a_failed_reward_model_fails_the_rl_that_needs_it_naming_why(tiny_model_dir, tmp_path):
    """The RL cell's error is the reward model's own failure, read from its cell (before: 'no trained model')."""
    ctx = context(tiny_model_dir, [{"name": "rm", "kind": "reward"}], tmp_path)
    failed = {"status": "failed", "error": "ValueError: Target modules {'nope'} not found in the base model."}
    cell = planning.Cell("rm", 0)
    planning.cell_path(tmp_path, cell).parent.mkdir(parents=True)
    planning.cell_path(tmp_path, cell).write_text(
        json.dumps({"cell": cell.to_dict(), "row": failed, "predictions": []})
    )
    with pytest.raises(RuntimeError) as error:
        trained_source(ctx, "rm", "reward.model")
    assert str(error.value) == (
        "reward.model 'rm' failed, so this technique cannot run: "
        "ValueError: Target modules {'nope'} not found in the base model."
    )


def test_the_report_gives_reward_models_their_own_table_and_never_ranks_them(tmp_path):
    from harness.analysis import decision
    from harness.report import markdown
    from harness.results import RunStore

    meta = {"task": {"name": "t", "metric": "rouge_l"}, "recipe": {"techniques": []}}
    store = RunStore(tmp_path, meta)
    answers = [{"id": "a", "input": "q", "expected": "x", "predicted": "x", "correct": 1.0}]
    common = {"status": "ok", "metric": "rouge_l", "n_eval": 1}
    store.record({"technique": "rm", "kind": "reward", "status": "ok", "score": None, "reward_accuracy": 0.9,
                  "reward_accuracy_ci_low": 0.7, "reward_accuracy_ci_high": 1.0, "reward_margin": 2.5,
                  "reward_pairs": 16, "train_seconds": 30.0}, [])  # fmt: skip
    store.record({"technique": "rl", "kind": "rloo", "score": 0.4, "trained_against": "rm", "reward_model": "rm",
                  "reward_score": 1.5, "reward_spearman": 0.6, "judge_spearman": 0.2, **common}, answers)  # fmt: skip
    store.record({"technique": "dpo", "kind": "dpo", "score": 0.3, "reward_model": "rm", "reward_score": 0.5,
                  "reward_spearman": 0.5, "judge_spearman": 0.1, **common}, answers)  # fmt: skip
    assert [r["technique"] for r in store.answering_rows()] == ["rl", "dpo"]
    ranked = decision.recommend(store.answering_rows(), store.finished_predictions())
    assert ranked.technique != "rm"
    section = markdown.reward_models_section(store, store.answering_rows())
    assert "| rm | 90% [70%, 100%] | 2.50 | 16 | 30.0s | – | rl |" in section
    assert (
        "rl 1.50 (Spearman with ROUGE-L 0.60; judge 0.20); dpo 0.50 (Spearman with ROUGE-L 0.50; judge 0.10)" in section
    )
    assert (
        "more closely than the judge on 2 of 2 techniques' answers (mean Spearman 0.55 against the judge's 0.15)"
        in section
    )
    assert "| rm |" not in markdown.results_table(store.answering_rows())
    from harness.report.terminal import reward_model_line  # the terminal names it under its table

    assert reward_model_line(store.reward_model_rows()[0]) == (
        "reward model rm: ranks 90% of 16 held-out pairs right (chosen above rejected), mean margin 2.50"
    )
    for row in store.answering_rows():  # a judge whose grades were all alike has no correlation to set beside
        row.update(judge_model="j", judge_spearman=None)
    assert "its grades have no rank correlation with ROUGE-L (too few scored, or all alike) on rl, dpo" in (
        markdown.reward_models_section(store, store.answering_rows())
    )


def test_eval_reward_model_scores_each_answer_and_correlates_it_with_the_metric(reward_model, tiny_model_dir):
    run_dir = reward_model[0]
    ctx = context(tiny_model_dir, [{"name": "rm", "kind": "reward"}], run_dir)
    examples = ctx.heldout_examples()[:4]
    # two answers per kind: the chosen reply (the metric's 1.0), the rejected one, so both sides vary
    predictions = [
        {"id": e.id, "predicted": answer, "correct": value, "expected": e.output}
        for e in examples[:2]
        for answer, value in ((e.chosen, 1.0), (e.rejected, 0.1))
    ]
    figures = scoring.reward_heldout(ctx, "rm", run_dir / "artifacts" / "rm.seed-0", predictions)
    assert all(isinstance(p["reward_score"], float) for p in predictions)
    assert figures["reward_model"] == "rm" and figures["reward_score"] == pytest.approx(
        sum(p["reward_score"] for p in predictions) / 4
    )
    assert -1 <= figures["reward_spearman"] <= 1 and figures["reward_seconds"] > 0
