"""kind: grpo | rloo — online RL with TRL's GRPOTrainer or RLOOTrainer, one mechanism for both.

For each training prompt the model samples a group of answers and each answer is rewarded; GRPO raises
the likelihood of the answers that beat their group's mean (normalised by its spread), RLOO (REINFORCE
leave-one-out) of those that beat the mean of the group's other answers. The reward (`reward:`) is the
per-example value of the metric the harness scores the task on (label correctness, exact match,
contains, ROUGE-L, ...), so the RL optimises exactly what the report measures; or a learned reward, the
score of a `kind: reward` technique of the recipe (`reward: {model: <name>}`, the classic RLHF
pipeline: SFT, a reward model on preference pairs, RL against it); or both, weighted; optionally plus a
format reward. A reward model is a dependency like `init_from`: it trains in an earlier wave, and when it
failed the RL technique's row fails naming why.

TRL 1.16 has no PPOTrainer (kinds.unavailable: `kind: ppo` is a recipe error saying so); RLOO is TRL's
replacement for it in RLHF: no value model, the leave-one-out mean is the baseline.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness import figures, kinds, metrics, prompting
from harness.config import TrainedTechnique
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import LoraSettings, finetune, lora_config, trained_source
from harness.yamlconfig import Strict


class RlSettings(Strict):
    generations: int = Field(4, ge=2)  # answers sampled per prompt; each is judged against its group
    max_completion_tokens: int = Field(16, ge=1)  # the longest sampled answer; longer ones are cut
    temperature: float = Field(1.0, gt=0)  # sampling temperature: higher explores more
    beta: float = Field(0.0, ge=0)  # KL penalty toward the starting model (0: none, and no KL is measured)
    format_reward: float = Field(0.0, ge=0)  # weight of a reward for the task's answer format (a label; one line)


class RlooSettings(RlSettings):
    beta: float = Field(0.05, ge=0)  # TRL's RLOO default: the KL to the starting model is part of the reward


class RewardSource(Strict):
    """What rewards a sampled answer: the task's metric, a learned reward model, or both (weighted sum)."""

    model: str | None = None  # a `kind: reward` technique of this recipe: its score of the prompt and answer
    model_weight: float = Field(1.0, gt=0)  # weight of the reward model's score
    task_metric: float | None = Field(None, ge=0)  # weight of the task metric; default 1 alone, 0 beside a model

    @property
    def metric_weight(self) -> float:
        if self.task_metric is not None:
            return self.task_metric
        return 0.0 if self.model is not None else 1.0

    @model_validator(mode="after")
    def _something_rewards(self):
        if self.model is None and self.task_metric == 0:
            raise ValueError("reward: task_metric 0 and no model leaves nothing to reward; name a `model:`")
        return self


class RlTechnique(TrainedTechnique):
    """What grpo and rloo share: the reward, the adapter, the starting model."""

    kind: str  # each kind narrows it to its own name
    reward: RewardSource = RewardSource()
    adapter: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None  # a trained technique of this recipe whose result RL starts from

    @property
    def rl(self) -> RlSettings:
        return getattr(self, self.kind)

    @model_validator(mode="after")
    def _whole_groups(self):
        if self.train.batch_size % self.rl.generations:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of {self.kind}.generations "
                f"({self.rl.generations}): each batch holds whole groups of answers to one prompt"
            )
        return self


class GrpoTechnique(RlTechnique):
    """GRPO on the task's train prompts."""

    kind: Literal["grpo"]
    grpo: RlSettings = RlSettings()


class RlooTechnique(RlTechnique):
    """RLOO on the task's train prompts."""

    kind: Literal["rloo"]
    rloo: RlooSettings = RlooSettings()


def task_reward(task):
    """The reward TRL calls with the sampled completions and the dataset's `expected` column: the
    task metric's per-example value for each answer."""

    def reward(completions, expected, **_):
        answers = [_text(c) for c in completions]
        return [float(v) for v in metrics.score(task.spec.metric, expected, answers, task.labels).correct]

    reward.__name__ = f"task_{task.spec.metric}"  # TRL logs rewards/<name>/mean per step
    return reward


def format_reward(task):
    """1 when the answer has the task's shape: names a label (classification), else is one non-empty line."""

    def reward(completions, **_):
        answers = [_text(c) for c in completions]
        if task.labels:
            return [float(metrics.parse_label(a, task.labels) != metrics.INVALID) for a in answers]
        return [float(bool(a.strip()) and len(a.strip().splitlines()) == 1) for a in answers]

    reward.__name__ = "format"
    return reward


def _text(completion) -> str:
    """A completion as text (TRL passes conversational completions as message lists)."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


def run_rl(spec: RlTechnique, ctx: RunContext) -> Outcome:
    peft_config = lora_config(spec.lora) if spec.adapter == "lora" else None
    return finetune(spec, ctx, peft_config=peft_config, fit=rl_fit(spec, ctx))


def rewards(spec: RlTechnique, ctx: RunContext) -> tuple[list, list[float], list]:
    """(reward functions or models, their weights, their tokenizers) as TRL takes them. A reward model is
    loaded from what its technique saved in this run (an error naming its failure when it has none)."""
    chosen: list[tuple] = []  # (reward, weight, tokenizer: a reward model's own, None for a function)
    if spec.reward.metric_weight:
        chosen.append((task_reward(ctx.task), spec.reward.metric_weight, None))
    if spec.reward.model is not None:
        from harness.evaluate import reward as reward_model

        folder = trained_source(ctx, spec.reward.model, "reward.model")
        model, tokenizer = reward_model.load_trained(ctx.recipe.model, folder, ctx.load_device)
        model.config.name_or_path = spec.reward.model  # TRL logs rewards/<its name>/mean
        chosen.append((model, spec.reward.model_weight, tokenizer))
    if spec.rl.format_reward:
        chosen.append((format_reward(ctx.task), spec.rl.format_reward, None))
    funcs, weights, tokenizers = (list(column) for column in zip(*chosen))
    return funcs, weights, tokenizers


def rl_fit(spec: RlTechnique, ctx: RunContext):
    """finetune's `fit` for GRPO and RLOO (no validation loss: RL has none to compare; search on
    validation_score). Adds the row's reward and KL figures from TRL's log."""

    def fit(model, tokenizer, augment, peft_config):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

        from harness import train

        config, trainer = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[spec.kind]
        examples = ctx.task.train[: spec.train.limit] if spec.train.limit else ctx.task.train
        records = [{"prompt": prompting.messages(ctx.task, e, augment=augment), "expected": e.output} for e in examples]
        funcs, weights, tokenizers = rewards(spec, ctx)

        def build(work_dir, callbacks):
            args = config(
                **train.training_args(spec.train, spec.kind, ctx.device, work_dir, ctx.recipe.seed),
                num_generations=spec.rl.generations,
                max_completion_length=spec.rl.max_completion_tokens,
                temperature=spec.rl.temperature,
                beta=spec.rl.beta,
                reward_weights=weights,
            )
            tokenizer.padding_side = "left"  # RL generates: prompts are padded on the left
            return trainer(
                model=model,
                reward_funcs=funcs,
                reward_processing_classes=tokenizers,
                args=args,
                processing_class=tokenizer,
                peft_config=peft_config,
                train_dataset=Dataset.from_list(records),
                callbacks=callbacks,
            )

        trained, stats, method = train.fit(
            build, tokenizer, spec.train, ctx.device, model=model, progress=ctx.progress, label=spec.name,
            callbacks=ctx.callbacks,
        )  # fmt: skip
        stats.extra.update(rl_figures(stats.history, spec.reward.model))
        return trained, stats, method

    return fit


def rl_figures(history: list[dict], reward_model: str | None) -> dict:
    """The row's RL figures from TRL's log: the total reward at the first and last logging step, the
    learned reward's own mean there, the last KL to the starting model (logged only when beta > 0)."""
    rewards = [h["reward"] for h in history if "reward" in h]
    learned = [h[f"rewards/{reward_model}/mean"] for h in history if f"rewards/{reward_model}/mean" in h]
    kls = [h["kl"] for h in history if "kl" in h]
    return {
        "rl_reward_first": rewards[0] if rewards else None,
        "rl_reward_last": rewards[-1] if rewards else None,
        "rl_model_reward_first": learned[0] if learned else None,
        "rl_model_reward_last": learned[-1] if learned else None,
        "rl_kl_last": kls[-1] if kls else None,
        "trained_against": reward_model,
    }


RL_FIGURES = (
    figures.Figure("rl_reward_first", "RL reward, first logging step", "number", "higher"),
    figures.Figure("rl_reward_last", "RL reward, last logging step", "number", "higher"),
    figures.Figure("rl_model_reward_first", "learned reward, first logging step", "number", "higher"),
    figures.Figure("rl_model_reward_last", "learned reward, last logging step", "number", "higher"),
    figures.Figure("rl_kl_last", "KL to the starting model, last logging step", "number", "lower"),
)
RL_FIELDS = {"trained_against": "the reward model (a kind reward technique) the RL was trained against"}

kinds.register(
    kinds.Kind(
        "grpo",
        GrpoTechnique,
        run_rl,
        "online RL (TRL GRPOTrainer) rewarded by the task's metric and/or a reward model",
        trained=True,
        default_learning_rate=1e-5,
        figures=RL_FIGURES,
        fields=RL_FIELDS,
    )
)
kinds.register(
    kinds.Kind(
        "rloo",
        RlooTechnique,
        run_rl,
        "online RL (TRL RLOOTrainer, REINFORCE leave-one-out) against a reward model and/or the task's metric",
        trained=True,
        default_learning_rate=1e-5,
        figures=RL_FIGURES,
        fields=RL_FIELDS,
    )
)
