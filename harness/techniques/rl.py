"""kind: grpo — online RL with TRL's GRPOTrainer, rewarded by the task's own metric.

For each training prompt the model samples a group of answers; each answer is rewarded with the
per-example value of the metric the harness scores the task on (label correctness, exact match,
contains, ROUGE-L, ...), optionally plus a format reward; GRPO raises the likelihood of the answers
that beat their group's mean. So the RL optimises exactly what the report measures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness import kinds, metrics, prompting
from harness.config import TrainedTechnique
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import LoraSettings, finetune, lora_config
from harness.yamlconfig import Strict


class GrpoSettings(Strict):
    generations: int = Field(4, ge=2)  # answers sampled per prompt; each is judged against its group's mean
    max_completion_tokens: int = Field(16, ge=1)  # the longest sampled answer; longer ones are cut
    temperature: float = Field(1.0, gt=0)  # sampling temperature: higher explores more
    beta: float = Field(0.0, ge=0)  # KL penalty toward the starting model (0: none, TRL's default)
    format_reward: float = Field(0.0, ge=0)  # weight of a reward for the task's answer format (a label; one line)


class GrpoTechnique(TrainedTechnique):
    """GRPO on the task's train prompts, the task's metric as the reward."""

    kind: Literal["grpo"]
    grpo: GrpoSettings = GrpoSettings()
    adapter: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None  # a trained technique of this recipe whose result RL starts from

    @model_validator(mode="after")
    def _whole_groups(self):
        if self.train.batch_size % self.grpo.generations:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of grpo.generations "
                f"({self.grpo.generations}): each batch holds whole groups of answers to one prompt"
            )
        return self


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


def run_grpo(spec: GrpoTechnique, ctx: RunContext) -> Outcome:
    peft_config = lora_config(spec.lora) if spec.adapter == "lora" else None
    return finetune(spec, ctx, peft_config=peft_config, fit=grpo_fit(spec, ctx))


def grpo_fit(spec: GrpoTechnique, ctx: RunContext):
    """finetune's `fit` for GRPO (no validation loss: RL has none to compare; search on validation_score)."""

    def fit(model, tokenizer, augment, peft_config):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        from harness import train

        examples = ctx.task.train[: spec.train.limit] if spec.train.limit else ctx.task.train
        records = [{"prompt": prompting.messages(ctx.task, e, augment=augment), "expected": e.output} for e in examples]
        rewards, weights = [task_reward(ctx.task)], [1.0]
        if spec.grpo.format_reward:
            rewards, weights = rewards + [format_reward(ctx.task)], weights + [spec.grpo.format_reward]

        def build(work_dir, callbacks):
            args = GRPOConfig(
                **train.training_args(spec.train, spec.kind, ctx.device, work_dir, ctx.recipe.seed),
                num_generations=spec.grpo.generations,
                max_completion_length=spec.grpo.max_completion_tokens,
                temperature=spec.grpo.temperature,
                beta=spec.grpo.beta,
                reward_weights=weights,
            )
            tokenizer.padding_side = "left"  # GRPO generates: prompts are padded on the left
            return GRPOTrainer(
                model=model,
                reward_funcs=rewards,
                args=args,
                processing_class=tokenizer,
                peft_config=peft_config,
                train_dataset=Dataset.from_list(records),
                callbacks=callbacks,
            )

        return train.fit(
            build,
            tokenizer,
            spec.train,
            ctx.device,
            model=model,
            progress=ctx.progress,
            label=spec.name,
            callbacks=ctx.callbacks,
        )

    return fit


kinds.register(
    kinds.Kind(
        "grpo",
        GrpoTechnique,
        run_grpo,
        "online RL (TRL GRPOTrainer) with the task's metric as reward",
        trained=True,
        default_learning_rate=1e-5,
    )
)
