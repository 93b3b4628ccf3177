"""kind: full | lora | qlora — train on the task's train split, then score the trained model in memory.

The three kinds share one flow (load -> train -> evaluate -> save artifact); they differ only in
how the base model is loaded (4-bit for qlora) and whether peft adapters wrap it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from harness import kinds, measure, prompting
from harness.config import TrainedTechnique
from harness.evaluate.lmeval import evaluate_lm_eval
from harness.evaluate.phase import evaluate_heldout
from harness.techniques.base import Outcome, RunContext
from harness.techniques.rag import augmenter
from harness.yamlconfig import Strict


class LoraSettings(Strict):
    rank: int = Field(16, ge=1)  # higher: more capacity, more trainable parameters and memory
    alpha: float = Field(32, gt=0)  # scale of the update (alpha / rank); 2 x rank is a common choice
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"  # or e.g. [q_proj, v_proj]
    use_dora: bool = False  # weight-decomposed LoRA (peft): often better, slower
    use_rslora: bool = False  # rank-stabilised scaling alpha / sqrt(rank)

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, targets):
        if isinstance(targets, list) and not targets:  # peft would adapt nothing, and train nothing
            raise ValueError("give at least one module name, e.g. [q_proj, v_proj], or all-linear")
        return targets


class QuantSettings(Strict):
    quant_type: Literal["nf4", "fp4"] = "nf4"  # NF4 suits normally distributed weights (the QLoRA paper)
    double_quant: bool = True  # quantize the quantization constants too: ~0.4 bit/param less
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 where supported


class FullTechnique(TrainedTechnique):
    """Full fine-tuning: every weight is trained."""

    kind: Literal["full"]


class LoraTechnique(TrainedTechnique):
    """LoRA (peft): the base weights stay frozen; small low-rank adapters are trained."""

    kind: Literal["lora"]
    lora: LoraSettings = LoraSettings()
    save_merged: bool = False  # also save the base model with the adapter merged in


class QLoraTechnique(TrainedTechnique):
    """QLoRA: base weights loaded in 4-bit (bitsandbytes), then LoRA adapters trained on top."""

    kind: Literal["qlora"]
    lora: LoraSettings = LoraSettings()
    quantization: QuantSettings = QuantSettings()

    @model_validator(mode="after")
    def _unshardable_base(self):
        strategy = self.train.distributed.strategy if self.train.distributed else None
        if strategy in ("fsdp", "deepspeed"):
            raise ValueError(
                f"train.distributed.strategy {strategy!r}: the 4-bit base of qlora is not sharded here "
                "(bitsandbytes' packed weights need a quant storage dtype FSDP/ZeRO-3 can split); use "
                "strategy: ddp (each rank holds the 4-bit base, ~0.5 byte per parameter)"
            )
        return self


def run_full(spec: FullTechnique, ctx: RunContext) -> Outcome:
    return finetune(spec, ctx)


def run_lora(spec: LoraTechnique, ctx: RunContext) -> Outcome:
    return finetune(spec, ctx, peft_config=lora_config(spec.lora))


def run_qlora(spec: QLoraTechnique, ctx: RunContext) -> Outcome:
    from harness import train

    quant = bnb_config(spec.quantization, train.precision(spec.train, ctx.device))
    return finetune(spec, ctx, peft_config=lora_config(spec.lora), quantization_config=quant)


def lora_config(settings: LoraSettings, task_type: str = "CAUSAL_LM"):
    """peft's LoraConfig for `settings`; task_type SEQ_CLS for a classification head (kind reward), which
    peft then trains whole."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,  # type: ignore[arg-type]  # peft says int; a float scales as well
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        use_dora=settings.use_dora,
        use_rslora=settings.use_rslora,
        bias="none",
        task_type=task_type,
    )


def bnb_config(settings: QuantSettings, train_precision: str):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("qlora needs bitsandbytes: pip install 'bitsandbytes>=0.48'") from exc
    import torch
    from transformers import BitsAndBytesConfig

    compute: str = settings.compute_dtype
    if compute == "auto":  # compute in the dtype the training autocasts to
        compute = {"bf16": "bfloat16", "fp16": "float16"}.get(train_precision, "float32")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )


def finetune(spec, ctx: RunContext, peft_config=None, quantization_config=None, fit=None) -> Outcome:
    """Load (or start from `init_from`'s result), train, score in memory, save the artifact. `fit`
    trains: (model, tokenizer, augment, peft_config) -> (model, TrainStats, memory method), and may put
    row figures of its own in TrainStats.extra; the default is supervised fine-tuning on the train
    split (train.train)."""
    from harness import models

    job = ctx.progress.add_task(f"{spec.name}: loading model", total=None)
    model, tokenizer = starting_model(spec, ctx, quantization_config)
    ctx.progress.remove_task(job)
    if quantization_config is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.train.gradient_checkpointing)
    augment = None
    if spec.retrieval is not None:  # train on the passage-augmented prompts it will be scored on
        augment = augmenter(
            ctx, spec.retrieval, tokenizer, [*ctx.task.train, *ctx.task.validation, *ctx.heldout_examples()]
        )
    model, stats, method = (fit or supervised(spec, ctx))(model, tokenizer, augment, peft_config)
    measure.release_memory()  # the trainer's leftovers: not in the serving phase's peak
    trainable, total = parameter_counts(model)
    if quantization_config is None:
        model = model.to(models.resolve_dtype(ctx.recipe.model, ctx.device))  # evaluate as the base is evaluated
    model.eval()
    dtype = (
        "4bit-" + quantization_config.bnb_4bit_quant_type
        if quantization_config is not None
        else str(model.dtype).removeprefix("torch.")
    )
    # The artifact is the model as trained (an adapter stays an adapter), saved before merging for scoring;
    # only the configuration the row reports saves one: search trials and smaller learning-curve sizes
    # leave nothing on disk.
    folder = ctx.run_dir / "artifacts" / ctx.cell.id
    artifact = save_artifact(model, tokenizer, folder) if ctx.final else None
    model, merged = scored_model(model, ctx.recipe.eval.heldout.merge_adapters, quantization_config is not None)
    outcome = Outcome({})
    if ctx.cell.scores_split:  # a validation-loss trial is judged on its loss alone: no generation
        outcome = evaluate_heldout(
            ctx,
            spec.name,
            model,
            tokenizer,
            lambda example: prompting.render(tokenizer, prompting.messages(ctx.task, example, augment=augment)),
        )
        if augment is not None:
            augment.annotate(outcome, ctx.heldout_examples())
    outcome.values.update(evaluate_lm_eval(ctx, spec.name, model, tokenizer))
    if artifact is not None and getattr(spec, "save_merged", False):  # after scoring: merging changes a model in place
        artifact += save_merged_copy(model, tokenizer, folder.with_name(folder.name + "-merged"))
    outcome.values.update(
        adapters_merged=merged,
        **training_figures(stats),
        trainable_params=trainable,
        total_params=total,
        artifact_bytes=artifact,
        dtype=dtype,
        peak_memory_method=method,
        train_curve=[curve_point(h) for h in stats.history],
        init_from=getattr(spec, "init_from", None),
    )
    outcome.values.update(stats.extra)  # a custom `fit`'s own figures (and corrections, e.g. trainable_params)
    return outcome


def training_figures(stats) -> dict:
    """The row's figures of a training (train.TrainStats), its CUDA-only ones included: every trained kind's."""
    return {
        "train_seconds": stats.seconds,
        "train_peak_memory_bytes": stats.peak_bytes,
        "train_tokens": stats.tokens,
        "train_tokens_per_second": stats.tokens_per_second,
        "train_steps": stats.steps,
        "train_examples": stats.examples,
        "train_truncated_examples": stats.truncated_examples,
        "train_precision": stats.precision,
        "train_loss_first": stats.losses[0] if stats.losses else None,
        "train_loss_last": stats.losses[-1] if stats.losses else None,
        "validation_loss": stats.validation_loss,
    } | stats.gpu


# What a row keeps of the trainer's log at each logging step (loss curves; DPO's and GRPO's own figures).
CURVE_KEYS = (
    "step",
    "epoch",
    "loss",
    "reward",
    "reward_std",
    "rewards/accuracies",
    "rewards/margins",
    "learning_rate",
    "completions/mean_length",
    "kl",  # RL's KL to the reference model, where TRL measures it (beta > 0)
)


def curve_point(logged: dict) -> dict:
    """What a row keeps of one logging step: CURVE_KEYS, and each RL reward's own mean (rewards/<name>/mean)."""
    own = {k: v for k, v in logged.items() if k.startswith("rewards/") and k.endswith("/mean")}
    return {k: logged[k] for k in CURVE_KEYS if k in logged} | own


def supervised(spec, ctx: RunContext):
    """The default `fit`: SFT on the train split's prompt-completion pairs."""
    from harness import train

    def fit(model, tokenizer, augment, peft_config):
        return train.train(
            model,
            tokenizer,
            ctx.task,
            spec.train,
            spec.kind,
            device=ctx.device,
            seed=ctx.recipe.seed,
            progress=ctx.progress,
            label=spec.name,
            peft_config=peft_config,
            augment=augment,
            callbacks=ctx.callbacks,
        )

    return fit


def starting_model(spec, ctx: RunContext, quantization_config=None):
    """(model, tokenizer) to train: the base model, or with `init_from` the result that technique
    saved in this run for the same seed (an adapter is merged into the base first). Weights train in
    fp32 (mixed precision comes from autocast); 4-bit layers keep their own storage."""
    import torch

    from harness import models

    source = getattr(spec, "init_from", None)
    if source is None:
        return models.load(ctx.recipe.model, ctx.load_device, torch.float32, quantization_config)
    folder = trained_source(ctx, source, "init_from")
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tokenizer = models.load(ctx.recipe.model, ctx.load_device, torch.float32)
        model = PeftModel.from_pretrained(base, folder).merge_and_unload()
        model.requires_grad_(True)  # peft froze the base weights: full training needs them back (LoRA refreezes)
        return model, tokenizer
    return models.load(ctx.recipe.model.model_copy(update={"id": str(folder)}), ctx.load_device, torch.float32)


def trained_source(ctx: RunContext, source: str, role: str) -> Path:
    """The folder of the model technique `source` trained in this run (this cell's seed), which this cell
    needs as its `role` (init_from, reward.model); when there is none, an error naming why: the source's
    failure as its cell recorded it, else that it never ran."""
    from harness import planning

    folder = source_artifact(ctx, source)
    if folder.is_dir():
        return folder
    result = planning.read_result(ctx.run_dir, source_cell(ctx, source))
    row = (result or {}).get("row", {})
    if row.get("status") in ("failed", "skipped"):
        raise RuntimeError(f"{role} {source!r} {row['status']}, so this technique cannot run: {row.get('error')}")
    raise RuntimeError(f"{role} {source!r}: no trained model at {folder}; did that technique run?")


def source_artifact(ctx: RunContext, source: str) -> Path:
    """Where technique `source` saved its reported model for this cell's seed."""
    return ctx.run_dir / "artifacts" / source_cell(ctx, source).id


def source_cell(ctx: RunContext, source: str):
    """The cell of technique `source` that trained the model it reports, for this cell's seed."""
    from harness.planning import Cell, train_sizes

    return Cell(source, ctx.recipe.seed, train_size=train_sizes(ctx.recipe)[1])


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total); for peft models peft's own count, which counts 4-bit weights unpacked."""
    from harness import models

    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    return models.count_parameters(model)


def scored_model(model, merge_adapters: bool, quantized: bool):
    """(model to score, whether its LoRA adapters were merged into the base weights).

    Merged, as a LoRA model is served: unmerged, every adapted layer runs its base and adapter matmuls
    separately (0.76-0.84x the examples/s of the merged model: the default model, 2 CPU cores).
    A 4-bit (QLoRA) base stays unmerged: merging would dequantize, add and re-quantize every weight (the
    scored model would not be the trained one), and merging into a dequantized copy would score a
    16-bit model while the row's memory figures claim the 4-bit one QLoRA exists to serve.
    Other peft methods stay as trained (peft merges some, not all; only LoRA's speed-up was measured)."""
    if not merge_adapters or quantized or not is_lora(model):
        return model, False
    return model.merge_and_unload(safe_merge=True), True


def is_lora(model) -> bool:
    from peft import PeftModel, PeftType

    return isinstance(model, PeftModel) and model.peft_config[model.active_adapter].peft_type == PeftType.LORA


def save_artifact(model, tokenizer, folder: Path) -> int:
    """Save the adapter (peft) or the full model. Returns bytes on disk."""
    with folder_written_whole(folder) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return folder_bytes(folder)


def save_merged_copy(model, tokenizer, folder: Path) -> int:
    """Save the base model with the adapter merged in (`save_merged`); a model merged for scoring as it is."""
    from peft import PeftModel

    merged = model.merge_and_unload(safe_merge=True) if isinstance(model, PeftModel) else model
    with folder_written_whole(folder) as partial:
        merged.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return folder_bytes(folder)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@contextlib.contextmanager
def folder_written_whole(folder: Path):
    """Yield `<folder>.partial` to write into, then put it in folder's place: a process killed while
    saving leaves a .partial folder (cleared by the next attempt), never a torn file under `folder`."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    yield partial
    shutil.rmtree(folder, ignore_errors=True)  # a failed earlier attempt's; os.replace needs the name free
    os.replace(partial, folder)


kinds.register(
    kinds.Kind(
        "full",
        FullTechnique,
        run_full,
        "every weight trained on the train split",
        trained=True,
        default_learning_rate=5e-5,
    )
)
kinds.register(
    kinds.Kind(
        "lora",
        LoraTechnique,
        run_lora,
        "low-rank adapters trained, base weights frozen (peft)",
        trained=True,
        default_learning_rate=2e-4,
    )
)
kinds.register(
    kinds.Kind(
        "qlora",
        QLoraTechnique,
        run_qlora,
        "LoRA on a 4-bit base model (bitsandbytes)",
        trained=True,
        default_learning_rate=2e-4,
    )
)
