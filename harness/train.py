"""The boundary to TRL: our TrainSettings -> SFTConfig + dataset -> SFTTrainer -> trained model + stats.

The train split becomes a conversational prompt-completion dataset (the same messages the
prompt-only technique shows, the answer as the assistant turn), so SFTTrainer applies the chat
template and masks the prompt tokens out of the loss (completion_only_loss). A multi-turn example
gives one record per assistant turn (the turns before it as the prompt), so every assistant turn is
learnt and nothing else: TRL's own `assistant_only_loss` would need `{% generation %}` markers in the
chat template, which the default model's (SmolLM2's ChatML) lacks and TRL 1.16's
get_training_chat_template cannot add (it patches a fixed list of known templates only).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback

from harness import distributed, kinds, models, prompting, tracking
from harness.config import TrainSettings
from harness.measure import measure
from harness.tasks import Task

# TRL 1.x still sets `gradient_checkpointing`, which transformers 5 renamed; the warning is not the user's to fix.
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)


@dataclass
class TrainStats:
    seconds: float
    peak_bytes: int
    tokens: int  # non-padding tokens the model was trained on (every epoch counted)
    steps: int
    precision: str
    losses: list[float] = field(default_factory=list)  # training loss at each logging step
    validation_loss: float | None = None
    examples: int | None = None  # train examples (records) the model was trained on
    history: list[dict] = field(default_factory=list)  # the trainer's log at each logging step (loss, reward, ...)
    truncated_examples: int = 0  # train examples longer than max_length, cut at the end
    extra: dict = field(default_factory=dict)  # a `fit`'s own row figures (e.g. cpt's document phase), added last
    gpu: dict = field(default_factory=dict)  # the phase's CUDA-only figures (measure.Phase.gpu_figures("train"))

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None


def precision(settings: TrainSettings, device: str) -> str:
    """Mixed precision where it trains faster: CUDA, and CPUs with AMX tiles. On a CPU with avx512_bf16
    alone, bf16 autocast made a step of the default model 1.35x (LoRA) and 1.57x (full) slower than fp32 (batch 8,
    2 cores, bench/bench_train_step.py): the casts around every op cost more than its bf16 matmuls save."""
    if settings.precision != "auto":
        return settings.precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if models.cpu_has_amx() else "fp32"


def sft_records(task: Task, settings: TrainSettings, augment=None) -> tuple[list[dict], list[dict]]:
    """(train, validation) records in TRL's conversational prompt-completion format; the prompts are
    exactly what the model is scored on (with `augment`, retrieved passages included). Train is the
    first `limit` train examples (nested subsets for learning curves); validation is the task's split.
    An example gives one record per assistant turn: a multi-turn example's earlier answers too."""

    def records(e) -> list[dict]:
        return turn_records(prompting.messages(task, e, augment=augment) + [{"role": "assistant", "content": e.output}])

    examples = train_examples(task, settings)
    return [r for e in examples for r in records(e)], [r for e in task.validation for r in records(e)]


def turn_records(turns: list[dict]) -> list[dict]:
    """A conversation's records: one per assistant turn, the turns before it as the prompt."""
    return [{"prompt": turns[:i], "completion": [t]} for i, t in enumerate(turns) if t["role"] == "assistant"]


def train_examples(task: Task, settings: TrainSettings):
    """The train examples a cell trains on: the first `limit` (nested subsets for learning curves), or all."""
    return task.train[: settings.limit] if settings.limit else task.train


def training_args(settings: TrainSettings, kind: str, device: str, output_dir: Path, seed: int) -> dict:
    """The TrainingArguments every TRL trainer here shares (SFT, DPO, GRPO configs all extend them)."""
    mode = precision(settings, device)
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate or kinds.get(kind).default_learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of the total steps
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        logging_steps=settings.logging_steps,
        eval_strategy="no",  # the validation loss is taken once, after training (see fit())
        save_strategy="no",
        disable_tqdm=True,  # progress goes to the harness's own bar
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        # the recipe's trackers (`tracking:`) for a tracked cell, and the cell's id as the run name; else none
        **tracking.trainer_arguments(),
        **distributed.arguments(settings.distributed, device),  # DDP / FSDP / ZeRO for a multi-process cell
    )


def sft_config(settings: TrainSettings, kind: str, device: str, output_dir: Path, seed: int):
    from trl import SFTConfig

    return SFTConfig(
        **training_args(settings, kind, device, output_dir, seed),
        max_length=settings.max_length,
        completion_only_loss=True,
    )


def make_trainer(
    model,
    tokenizer,
    task: Task | None,
    settings: TrainSettings,
    kind: str,
    *,
    device: str,
    seed: int,
    work_dir: Path,
    peft_config=None,
    callbacks=(),
    augment=None,
    records: tuple[list[dict], list[dict]] | None = None,
):
    """An SFTTrainer over the task's train split (peft-wrapping the model when peft_config is given), or
    over `records` (train, validation) given as they are: the fine-tuning server's uploaded files."""
    from datasets import Dataset, disable_progress_bars
    from trl import SFTTrainer

    disable_progress_bars()  # TRL's dataset preparation bars would break the rich display
    if records is None:
        assert task is not None, "train on a task or on given records"
        records = sft_records(task, settings, augment)
    train_records, validation_records = records
    truncated = count_too_long(tokenizer, train_records, settings.max_length)
    args = sft_config(settings, kind, device, work_dir, seed)
    tokenizer.padding_side = "right"  # TRL's collator pads right; generation switches back to left
    trainer = SFTTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=peft_config,
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(validation_records) if validation_records else None,
        callbacks=list(callbacks),
    )
    trainer.truncated_examples = truncated  # type: ignore[attr-defined]  # our own attribute, for fit()'s TrainStats
    # examples, not records (a multi-turn example gives several); given records count one each
    examples = len(train_examples(task, settings)) if task is not None else len(train_records)
    trainer.train_examples = examples  # type: ignore[attr-defined]
    return trainer


def count_too_long(tokenizer, records: list[dict], max_length: int) -> int:
    """How many records (prompt + answer, as TRL tokenizes them) are longer than max_length. TRL cuts them
    at the end and drops those left with no answer token; when that is all of them the Trainer would
    fail with an opaque 'num_samples=0', so that is a ConfigError, and some of them a warning."""
    from harness.yamlconfig import ConfigError, ConfigWarning

    def length(messages, **kwargs) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])

    lengths = [length(r["prompt"] + r["completion"]) for r in records]
    too_long = [r for r, n in zip(records, lengths) if n > max_length]
    if not too_long:
        return 0
    answerless = sum(length(r["prompt"], add_generation_prompt=True) >= max_length for r in too_long)
    longest = max(lengths)
    fix = f"raise `train.max_length` to at least {longest} to keep every example whole"
    if answerless == len(records):
        raise ConfigError(
            f"all {len(records)} training examples are longer than train.max_length ({max_length} "
            f"tokens; the longest has {longest}), so truncation would cut off every answer; fix: {fix}"
        )
    dropped = f"; {answerless} lose their whole answer and are left out" if answerless else ""
    warnings.warn(
        f"{len(too_long)} of {len(records)} training examples are longer than train.max_length "
        f"({max_length} tokens; the longest has {longest}) and are cut at the end{dropped}; {fix}",
        ConfigWarning,
        stacklevel=2,
    )
    return len(too_long)


def train(
    model,
    tokenizer,
    task: Task | None,
    settings: TrainSettings,
    kind: str,
    *,
    device: str,
    seed: int,
    progress=None,
    label: str = "training",
    peft_config=None,
    augment=None,
    callbacks=(),
    records: tuple[list[dict], list[dict]] | None = None,
):
    """Supervised fine-tuning in memory; return the trained model (peft-wrapped when peft_config is
    given), stats, and how memory was measured. `records` (train, validation) replace the task's."""

    def build(work_dir: Path, all_callbacks: list):
        return make_trainer(
            model,
            tokenizer,
            task,
            settings,
            kind,
            device=device,
            seed=seed,
            work_dir=work_dir,
            peft_config=peft_config,
            callbacks=all_callbacks,
            augment=augment,
            records=records,
        )

    return fit(build, tokenizer, settings, device, model=model, progress=progress, label=label, callbacks=callbacks)


def fit(
    build,
    tokenizer,
    settings: TrainSettings,
    device: str,
    *,
    model=None,
    progress=None,
    label: str = "training",
    callbacks=(),
):
    """Run the trainer that `build(work_dir, callbacks)` makes (any TRL trainer), measured; then the
    final model's validation loss. Returns (trained model, TrainStats, how memory was measured). A
    cell with `train.distributed` trains in its ranks instead (harness/distributed.py), which then
    load their weights into `model`, the model `build` trains."""
    callbacks = [*callbacks, *([_ProgressCallback(progress, label)] if progress is not None else [])]
    if settings.distributed is not None and settings.distributed.world_size > 1:
        return fit_in_ranks(build, model, tokenizer, settings, device, callbacks)
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as work_dir:  # nothing is checkpointed
        trainer = build(Path(work_dir), callbacks)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict; the progress bar shows the loss
        tracking.guard(trainer)  # a tracker that fails mid-training warns; the training goes on
        with measure(device) as phase:
            trainer.train()
        # the final model's loss on the validation split: the search objective `validation_loss`
        validation_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    tokenizer.padding_side = "left"
    history = trainer.state.log_history
    stats = TrainStats(
        seconds=phase.seconds,
        peak_bytes=phase.peak_bytes,
        tokens=int(trainer.state.num_input_tokens_seen),
        steps=trainer.state.global_step,
        precision=precision(settings, device),
        losses=[h["loss"] for h in history if "loss" in h],
        validation_loss=validation_loss,
        examples=distributed.examples_trained(trainer),
        history=[h for h in history if "loss" in h],
        truncated_examples=getattr(trainer, "truncated_examples", 0),
        gpu=phase.gpu_figures("train"),
    )
    return trainer.model, stats, phase.method


def fit_in_ranks(build, model, tokenizer, settings: TrainSettings, device: str, callbacks: list):
    """`fit` for a multi-process cell: the ranks train copies of the model `build` captured; this
    process loads rank 0's weights into it and reports every rank's figures."""
    import shutil

    spec = settings.distributed
    if model is None or spec is None:
        raise ValueError("train.distributed: this kind's training does not hand its model to train.fit")
    folder, ranks = distributed.fit(build, settings, device, callbacks)
    peaks = ranks["peaks"]
    try:
        model = distributed.load_trained(model, folder, ranks["adapter"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    tokenizer.padding_side = "left"
    stats = TrainStats(
        seconds=ranks["seconds"],
        peak_bytes=max(peaks),
        tokens=ranks["tokens"],
        steps=ranks["steps"],
        precision=precision(settings, device),
        losses=[h["loss"] for h in ranks["history"]],
        validation_loss=ranks["validation_loss"],
        examples=ranks["examples"],
        history=ranks["history"],
        truncated_examples=ranks["truncated_examples"],
        extra={
            "train_strategy": spec.strategy,
            "train_world_size": spec.world_size,
            "rank_peak_memory_bytes": peaks,
            "rank_state_bytes": ranks["state_bytes"],
        },
    )
    return model.to(device), stats, f"{ranks['method']}, the largest of {spec.world_size} ranks"


class _ProgressCallback(TrainerCallback):
    """Moves a rich progress bar with the optimizer steps and shows the latest loss."""

    rank_zero_only = True  # a multi-process cell shows one bar (harness/distributed.py)

    def __init__(self, progress, label: str):
        self.progress, self.label, self.job = progress, label, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.job = self.progress.add_task(f"{self.label}: training", total=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update(self.job, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.progress.update(self.job, description=f"{self.label}: training (loss {logs['loss']:.3f})")

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.remove_task(self.job)
