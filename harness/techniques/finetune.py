"""kind: full | lora | qlora — train on the task's train split, then score the trained model in memory.

The three kinds share one flow (load -> train -> evaluate -> save artifact); they differ only in
how the base model is loaded (4-bit for qlora) and whether peft adapters wrap it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness import models, prompting, train
from harness.config import FullTechnique, LoraSettings, LoraTechnique, QLoraTechnique, QuantSettings
from harness.techniques.base import TECHNIQUES, Outcome, RunContext, evaluate_heldout, evaluate_lm_eval
from harness.techniques.rag import augmenter


@TECHNIQUES.register("full")
def run_full(spec: FullTechnique, ctx: RunContext) -> Outcome:
    return finetune(spec, ctx)


@TECHNIQUES.register("lora")
def run_lora(spec: LoraTechnique, ctx: RunContext) -> Outcome:
    return finetune(spec, ctx, peft_config=lora_config(spec.lora))


@TECHNIQUES.register("qlora")
def run_qlora(spec: QLoraTechnique, ctx: RunContext) -> Outcome:
    quant = bnb_config(spec.quantization, train.precision(spec.train, ctx.device))
    return finetune(spec, ctx, peft_config=lora_config(spec.lora), quantization_config=quant)


def lora_config(settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules, use_dora=settings.use_dora, use_rslora=settings.use_rslora,
        bias="none", task_type="CAUSAL_LM",
    )


def bnb_config(settings: QuantSettings, train_precision: str):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("qlora needs bitsandbytes: pip install 'bitsandbytes>=0.48'") from exc
    from transformers import BitsAndBytesConfig

    compute = settings.compute_dtype
    if compute == "auto":  # compute in the dtype the training autocasts to
        compute = {"bf16": "bfloat16", "fp16": "float16"}.get(train_precision, "float32")
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant, bnb_4bit_compute_dtype=getattr(torch, compute),
    )


def finetune(spec, ctx: RunContext, peft_config=None, quantization_config=None) -> Outcome:
    job = ctx.progress.add_task(f"{spec.name}: loading model", total=None)
    # Weights train in fp32 (mixed precision comes from autocast); 4-bit layers keep their own storage.
    model, tokenizer = models.load(ctx.recipe.model, ctx.device, torch.float32, quantization_config)
    ctx.progress.remove_task(job)
    if quantization_config is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.train.gradient_checkpointing)
    augment = None
    if spec.retrieval is not None:  # train on the passage-augmented prompts it will be scored on
        augment = augmenter(ctx, spec.retrieval, tokenizer,
                            [*ctx.task.train, *ctx.task.validation, *ctx.heldout_examples()])
    model, stats, method = train.train(
        model, tokenizer, ctx.task, spec.train, spec.kind, device=ctx.device, seed=ctx.recipe.seed,
        progress=ctx.progress, label=spec.name, peft_config=peft_config, augment=augment, callbacks=ctx.callbacks,
    )
    trainable, total = parameter_counts(model)
    if quantization_config is None:
        model = model.to(models.resolve_dtype(ctx.recipe.model, ctx.device))  # evaluate as the base is evaluated
    model.eval()
    dtype = ("4bit-" + quantization_config.bnb_4bit_quant_type if quantization_config is not None
             else str(model.dtype).removeprefix("torch."))
    outcome = Outcome({})
    if ctx.cell.scores_split:  # a validation-loss trial is judged on its loss alone: no generation
        outcome = evaluate_heldout(
            ctx, spec.name, model, tokenizer,
            lambda example: prompting.render(tokenizer, prompting.messages(ctx.task, example, augment=augment)),
        )
        if augment is not None:
            augment.annotate(outcome, ctx.heldout_examples())
    outcome.values.update(evaluate_lm_eval(ctx, spec.name, model, tokenizer))
    # Saved after scoring (merging an adapter changes the model in place), and only for the configuration
    # the row reports: search trials and smaller learning-curve sizes leave nothing on disk.
    artifact = (save_artifact(model, tokenizer, ctx.run_dir / "artifacts" / ctx.cell.id, getattr(spec, "save_merged", False))
                if ctx.final else None)
    outcome.values.update(
        train_seconds=stats.seconds, train_peak_memory_bytes=stats.peak_bytes, train_tokens=stats.tokens,
        train_tokens_per_second=stats.tokens_per_second, train_steps=stats.steps, train_examples=stats.examples,
        train_truncated_examples=stats.truncated_examples,
        train_precision=stats.precision, train_loss_first=stats.losses[0] if stats.losses else None,
        train_loss_last=stats.losses[-1] if stats.losses else None, validation_loss=stats.validation_loss,
        trainable_params=trainable, total_params=total, artifact_bytes=artifact, dtype=dtype,
        peak_memory_method=method,
    )
    return outcome


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total); for peft models peft's own count, which counts 4-bit weights unpacked."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    return models.count_parameters(model)


def save_artifact(model, tokenizer, folder: Path, merged: bool) -> int:
    """Save the adapter (peft) or the full model; with `merged`, also the merged model. Returns bytes on disk."""
    folders = [folder]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if merged:
        folders.append(folder.with_name(folder.name + "-merged"))
        model.merge_and_unload(safe_merge=True).save_pretrained(folders[-1])
        tokenizer.save_pretrained(folders[-1])
    return sum(p.stat().st_size for f in folders for p in f.rglob("*") if p.is_file())
