"""kind: reward — a reward model: the base model with a one-number head (sequence classification),
trained with TRL's RewardTrainer to score a task's chosen answer above its rejected one.

A reward model is not a generator: its row has no task score and the report shows it in a table of
its own (reward models), never ranked against the techniques that answer. Its figures are measured on
the held-out pairs: the share where reward(chosen) > reward(rejected) with a 95% bootstrap interval, and
the mean reward margin. What it is for: `reward: {model: <name>}` of kind rloo or grpo (RL against the
learned reward, harness/techniques/rl.py) and `eval.reward_model: <name>` (every technique's held-out
answers scored by it, harness/evaluate/reward.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from harness import figures, kinds
from harness.config import TrainedTechnique
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import LoraSettings, lora_config, parameter_counts, save_artifact, training_figures
from harness.techniques.preference import fit_pairs, preference_records


class RewardTechnique(TrainedTechnique):
    """A reward model trained on the task's (prompt, chosen, rejected) pairs."""

    kind: Literal["reward"]
    adapter: Literal["lora", "full"] = "lora"  # lora: adapters plus the new score head are trained
    lora: LoraSettings = LoraSettings()

    @model_validator(mode="after")
    def _scores_only(self):
        if self.retrieval is not None:  # RL and eval.reward_model give it the bare message and answer
            raise ValueError(
                "a reward model scores a message and an answer without retrieved passages: drop `retrieval:`"
            )
        if self.search is not None and self.search.objective != "validation_loss":
            raise ValueError(
                f"search.objective {self.search.objective}: a reward model answers nothing to score; "
                "search it on validation_loss (its pairwise loss on the validation pairs)"
            )
        return self


def run_reward(spec: RewardTechnique, ctx: RunContext) -> Outcome:
    from harness import measure
    from harness.evaluate import reward as scoring

    model, tokenizer = scoring.load_reward_model(ctx.recipe.model, ctx.load_device)
    peft_config = (
        lora_config(spec.lora, "SEQ_CLS") if spec.adapter == "lora" else None
    )  # peft trains the new score head whole
    model, stats, method = fit(spec, ctx, model, tokenizer, peft_config)
    measure.release_memory()
    trainable, total = parameter_counts(model)
    folder = ctx.run_dir / "artifacts" / ctx.cell.id
    artifact = save_artifact(model, tokenizer, folder) if ctx.final else None
    model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    model.eval()
    with measure.measure(ctx.device) as phase:
        pairs = scoring.score_heldout_pairs(model, tokenizer, ctx)
    values = {
        **pairs,
        "eval_seconds": phase.seconds,
        "eval_peak_memory_bytes": phase.peak_bytes,
        **training_figures(stats),
        "trainable_params": trainable,
        "total_params": total,
        "artifact_bytes": artifact,
        "peak_memory_method": method,
        "train_curve": [{k: h[k] for k in CURVE_KEYS if k in h} for h in stats.history],
    }
    return Outcome(values, [])


# RewardTrainer's log at each step: the loss, and on the batch, the share of pairs ranked right and the margin
CURVE_KEYS = ("step", "epoch", "loss", "accuracy", "margin", "mean_reward", "learning_rate")


def fit(spec: RewardTechnique, ctx: RunContext, model, tokenizer, peft_config):
    """TRL's RewardTrainer on the preference pairs (Bradley-Terry loss: -log sigmoid(r_chosen - r_rejected))."""
    from trl import RewardConfig, RewardTrainer

    records, validation = preference_records(ctx, spec.train)
    return fit_pairs(spec, ctx, (RewardConfig, RewardTrainer, {}), model, tokenizer, peft_config, records, validation)


kinds.register(
    kinds.Kind(
        "reward",
        RewardTechnique,
        run_reward,
        "a reward model (TRL RewardTrainer) on chosen/rejected pairs: scores answers, generates none",
        trained=True,
        default_learning_rate=1e-4,
        needs=lambda spec: (kinds.PREFERENCE_PAIRS,),
        generates=False,
        figures=(
            figures.Figure("reward_accuracy", "reward model ranks chosen above rejected", "share", "higher"),
            figures.Figure("reward_accuracy_ci_low", "reward model accuracy 95% CI low", "share", "higher"),
            figures.Figure("reward_accuracy_ci_high", "reward model accuracy 95% CI high", "share", "higher"),
            figures.Figure("reward_margin", "reward margin (chosen - rejected)", "number", "higher"),
            figures.Figure("reward_pairs", "held-out pairs the reward model scored", "count"),
        ),
    )
)
