"""kind: dpo — preference tuning with TRL's DPOTrainer on a task's chosen/rejected pairs.

Trains LoRA adapters (or every weight) so the model raises the likelihood of the chosen answer over
the rejected one, relative to the model it started from. `init_from: <technique>` starts from what
another technique of the same run trained (the usual SFT, then DPO). Scored like every technique:
the task's metric on generated answers, plus preference accuracy and margin on the held-out pairs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness import kinds, prompting
from harness.config import TrainedTechnique
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import LoraSettings, finetune, lora_config
from harness.yamlconfig import ConfigError, Strict

# DPOConfig.loss_type values in TRL 1.x (sigmoid is the DPO paper's loss)
DpoLoss = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
]


class DpoSettings(Strict):
    beta: float = Field(0.1, gt=0)  # pull toward the starting model: lower lets the model move further from it
    loss: DpoLoss = "sigmoid"  # sigmoid: DPO; ipo, hinge, robust, apo_zero, ...: its relatives


class DpoTechnique(TrainedTechnique):
    """Direct preference optimisation on the task's (prompt, chosen, rejected) pairs."""

    kind: Literal["dpo"]
    dpo: DpoSettings = DpoSettings()
    adapter: Literal["lora", "full"] = "lora"  # lora: train adapters (the reference is the adapter-free model)
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None  # a trained technique of this recipe whose result DPO starts from


def preference_records(ctx: RunContext, settings, augment=None) -> tuple[list[dict], list[dict]]:
    """(train, validation) in TRL's conversational preference format; prompts as they are scored."""
    if not ctx.task.has_preferences:
        raise ConfigError(
            f"task {ctx.task.name!r} has no preference pairs, which kind dpo trains on: add "
            f"`fields: {{chosen: <column>, rejected: <column>}}` to {ctx.task.where}"
        )

    def record(e):
        return {
            "prompt": prompting.messages(ctx.task, e, augment=augment),
            "chosen": [{"role": "assistant", "content": e.chosen}],
            "rejected": [{"role": "assistant", "content": e.rejected}],
        }

    examples = ctx.task.train[: settings.limit] if settings.limit else ctx.task.train
    return [record(e) for e in examples], [record(e) for e in ctx.task.validation]


def run_dpo(spec: DpoTechnique, ctx: RunContext) -> Outcome:
    peft_config = lora_config(spec.lora) if spec.adapter == "lora" else None
    return finetune(spec, ctx, peft_config=peft_config, fit=dpo_fit(spec, ctx))


def dpo_fit(spec: DpoTechnique, ctx: RunContext):
    """finetune's `fit` for DPO: TRL's DPOTrainer on the preference pairs (the reference model is the
    starting model: a frozen copy, or the adapter-free model when training LoRA)."""

    def fit(model, tokenizer, augment, peft_config):
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from harness import train

        records, validation = preference_records(ctx, spec.train, augment)

        def build(work_dir, callbacks):
            args = DPOConfig(
                **train.training_args(spec.train, spec.kind, ctx.device, work_dir, ctx.recipe.seed),
                beta=spec.dpo.beta,
                loss_type=[spec.dpo.loss],
                max_length=spec.train.max_length,
            )
            tokenizer.padding_side = "right"
            return DPOTrainer(
                model=model,
                args=args,
                processing_class=tokenizer,
                peft_config=peft_config,
                train_dataset=Dataset.from_list(records),
                eval_dataset=Dataset.from_list(validation) if validation else None,
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
        "dpo",
        DpoTechnique,
        run_dpo,
        "preference tuning (TRL DPOTrainer) on chosen/rejected pairs",
        trained=True,
        default_learning_rate=5e-5,
        needs=lambda spec: (kinds.PREFERENCE_PAIRS,),
    )
)
