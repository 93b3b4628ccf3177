"""kind: dpo | kto | orpo — preference tuning on a task's chosen/rejected pairs, one mechanism for three
TRL trainers (`preference_fit`).

Each trains LoRA adapters (or every weight) so the model raises the likelihood of the chosen answer over
the rejected one. dpo (DPOTrainer) does so relative to the model it started from; kto (KTOTrainer, stable
in TRL 1.x) reads each pair as one desirable and one undesirable example (TRL unpairs them), so it also
suits data that has only thumbs up/down; orpo (trl.experimental.orpo's ORPOTrainer) adds an odds-ratio
penalty to the SFT loss on the chosen answer, with no reference model, so it needs no SFT before it.
`init_from: <technique>` starts from what another technique of the same run trained (the usual SFT,
then DPO). Scored like every technique: the task's metric on generated answers, plus preference
accuracy and margin on the held-out pairs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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


# Preference losses users name under `dpo: {loss: ...}` that another kind (or TRL trainer) offers instead
LOSSES_ELSEWHERE = {
    "kto": "kind: kto (TRL KTOTrainer)",
    "orpo": "kind: orpo (trl.experimental.orpo's ORPOTrainer)",
    "simpo": "TRL's trl.experimental.cpo CPOTrainer (loss_type simpo), which this harness does not wrap",
    "cpo": "TRL's trl.experimental.cpo CPOTrainer, which this harness does not wrap",
}


class DpoSettings(Strict):
    beta: float = Field(0.1, gt=0)  # pull toward the starting model: lower lets the model move further from it
    loss: DpoLoss = "sigmoid"  # sigmoid: DPO; ipo, hinge, robust, apo_zero, ...: its relatives

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_lives_elsewhere(cls, loss):
        if loss in LOSSES_ELSEWHERE:
            raise ValueError(f"{loss!r} is not a DPOTrainer loss: it is {LOSSES_ELSEWHERE[loss]}")
        return loss


class KtoSettings(Strict):
    beta: float = Field(0.1, gt=0)  # pull toward the starting model, as in DPO
    loss: Literal["kto", "apo_zero_unpaired"] = "kto"  # KTOConfig.loss_type values in TRL 1.x
    desirable_weight: float = Field(1.0, gt=0)  # weight of the chosen (desirable) answers' loss ...
    undesirable_weight: float = Field(1.0, gt=0)  # ... and of the rejected ones'


class OrpoSettings(Strict):
    beta: float = Field(0.1, gt=0)  # weight of the odds-ratio term beside the SFT loss (the paper's lambda)


class DpoTechnique(TrainedTechnique):
    """Direct preference optimisation on the task's (prompt, chosen, rejected) pairs."""

    kind: Literal["dpo"]
    dpo: DpoSettings = DpoSettings()
    adapter: Literal["lora", "full"] = "lora"  # lora: train adapters (the reference is the adapter-free model)
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None  # a trained technique of this recipe whose result DPO starts from


class KtoTechnique(TrainedTechnique):
    """KTO on the task's pairs, each read as a desirable and an undesirable answer."""

    kind: Literal["kto"]
    kto: KtoSettings = KtoSettings()
    adapter: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None


class OrpoTechnique(TrainedTechnique):
    """ORPO: SFT on the chosen answers plus an odds-ratio preference penalty; no reference model."""

    kind: Literal["orpo"]
    orpo: OrpoSettings = OrpoSettings()
    adapter: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None


def preference_records(ctx: RunContext, settings, augment=None) -> tuple[list[dict], list[dict]]:
    """(train, validation) in TRL's conversational preference format; prompts as they are scored."""
    if not ctx.task.has_preferences:
        raise ConfigError(
            f"task {ctx.task.name!r} has no preference pairs, which kinds dpo, kto, orpo and reward train on: add "
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


def run_preference(spec, ctx: RunContext) -> Outcome:
    peft_config = lora_config(spec.lora) if spec.adapter == "lora" else None
    return finetune(spec, ctx, peft_config=peft_config, fit=preference_fit(spec, ctx))


run_dpo = run_preference


def trainer_for(spec):
    """(TRL config class, trainer class, the kind's own config arguments)."""
    if spec.kind == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer, {"beta": spec.dpo.beta, "loss_type": [spec.dpo.loss]}
    if spec.kind == "kto":
        from trl import KTOConfig, KTOTrainer

        settings = spec.kto
        return KTOConfig, KTOTrainer, {
            "beta": settings.beta,
            "loss_type": settings.loss,
            "desirable_weight": settings.desirable_weight,
            "undesirable_weight": settings.undesirable_weight,
        }  # fmt: skip
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer, {"beta": spec.orpo.beta}


def preference_fit(spec, ctx: RunContext):
    """finetune's `fit` for dpo, kto and orpo: the kind's TRL trainer on the preference pairs (DPO's and
    KTO's reference model is the starting model: a frozen copy, or the adapter-free model under LoRA)."""

    def fit(model, tokenizer, augment, peft_config):
        records, validation = preference_records(ctx, spec.train, augment)
        return fit_pairs(spec, ctx, trainer_for(spec), model, tokenizer, peft_config, records, validation)

    return fit


def fit_pairs(spec, ctx: RunContext, trainer_kind: tuple, model, tokenizer, peft_config, records, validation):
    """Train with TRL's trainer on preference records: `trainer_kind` is (its config class, the trainer
    class, the config's kind-specific settings); dpo, kto, orpo and the reward model (kind reward) share it."""
    import warnings

    from datasets import Dataset

    from harness import train

    config, trainer, own = trainer_kind

    def build(work_dir, callbacks):
        args = config(
            **train.training_args(spec.train, spec.kind, ctx.device, work_dir, ctx.recipe.seed),
            **own,
            max_length=spec.train.max_length,
        )
        tokenizer.padding_side = "right"
        with warnings.catch_warnings():  # ORPO: "experimental, may change": chosen knowingly
            warnings.simplefilter("ignore", UserWarning)
            return trainer(
                model=model,
                args=args,
                processing_class=tokenizer,
                peft_config=peft_config,
                train_dataset=Dataset.from_list(records),
                eval_dataset=Dataset.from_list(validation) if validation else None,
                callbacks=callbacks,
            )

    return train.fit(
        build, tokenizer, spec.train, ctx.device, model=model, progress=ctx.progress, label=spec.name,
        callbacks=ctx.callbacks,
    )  # fmt: skip


dpo_fit = preference_fit


# Three kinds, one runner: they differ in their TRL trainer (trainer_for) and their settings model.
for name, settings, description in (
    ("dpo", DpoTechnique, "preference tuning (TRL DPOTrainer) on chosen/rejected pairs"),
    ("kto", KtoTechnique, "preference tuning (TRL KTOTrainer): each pair as a desirable and an undesirable answer"),
    ("orpo", OrpoTechnique, "SFT plus an odds-ratio preference penalty (trl.experimental.orpo), no reference model"),
):
    kinds.register(
        kinds.Kind(
            name,
            settings,
            run_preference,
            description,
            trained=True,
            default_learning_rate=5e-5,
            needs=lambda spec: (kinds.PREFERENCE_PAIRS,),
        )
    )
