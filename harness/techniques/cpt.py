"""kind: cpt — domain-adaptive continued pre-training on the task's corpus, then (optionally)
instruction training on its train split.

The document phase is plain causal-LM training on the corpus (harness.retrieval.load_corpus): no
chat template, each document tokenized as it is and ended with EOS, the documents joined in order
and cut into blocks of `corpus.chunk_tokens` tokens (`pack_documents`). The blocks go to TRL's
SFTTrainer already tokenized, so the loss covers every document token and nothing else: full blocks
have no padding, and the last, shorter block is padded by the collator with labels -100.

With `then:`, the document phase's model (its LoRA adapter merged in) is trained on the train split
exactly as `kind: lora` / `kind: full` would train the base model, so a report puts "train on my
documents" beside RAG and beside question-answer fine-tuning. Without it, the model is scored right
after the document phase (through the chat template, like every technique). `init_from:` starts the
document phase from another technique's result.

The row's train_* figures cover both phases (seconds, tokens and steps summed; losses, curve and
validation loss are the last phase's); `cpt_*` figures are the document phase's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness import kinds
from harness.config import TrainedTechnique, TrainSettings
from harness.figures import Figure
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import CURVE_KEYS, LoraSettings, finetune, lora_config, parameter_counts
from harness.yamlconfig import ConfigError, Strict

# The document phase's learning rate when train.learning_rate is unset: as kind lora / kind full.
DEFAULT_LEARNING_RATE = {"lora": 2e-4, "full": 5e-5}


class CorpusTraining(Strict):
    """How the corpus becomes training blocks."""

    chunk_tokens: int = Field(512, ge=8)  # tokens per packed block: longer gives more context per step, more memory


class ThenSettings(Strict):
    """The instruction phase: supervised training on the task's train split, as `kind: lora` or `kind: full`."""

    kind: Literal["lora", "full"]  # lora: an adapter on the document-trained model; full: every weight
    train: TrainSettings = TrainSettings()
    lora: LoraSettings = LoraSettings()  # when kind: lora


class CptTechnique(TrainedTechnique):
    """Continued pre-training on the task's corpus documents, optionally followed by instruction training."""

    kind: Literal["cpt"]
    adapter: Literal["lora", "full"] = "lora"  # what the document phase updates
    lora: LoraSettings = LoraSettings()  # when adapter: lora
    corpus: CorpusTraining = CorpusTraining()
    # `train:` (inherited) is the document phase's; train.limit (set by train_sizes) caps `then`'s examples
    then: ThenSettings | None = None  # instruction training on the train split after the document phase
    init_from: str | None = None  # a trained technique of this recipe whose result the document phase starts from

    @model_validator(mode="after")
    def _check(self):
        if self.then is None and self.search is not None and self.search.objective == "validation_loss":
            raise ValueError(
                f"technique {self.name!r}: the document phase has no validation loss; use objective "
                "validation_score, or add `then:` (its validation loss is the objective)"
            )
        return self


def run_cpt(spec: CptTechnique, ctx: RunContext) -> Outcome:
    peft_config = lora_config(spec.lora) if spec.adapter == "lora" else None
    return finetune(spec, ctx, peft_config=peft_config, fit=cpt_fit(spec, ctx))


def pack_documents(tokenizer, texts, block: int) -> list[list[int]]:
    """Token blocks for causal-LM training: each text tokenized as plain text (no chat template, no
    special tokens added) and ended with EOS, all joined in order and cut every `block` tokens. The
    last block keeps the remainder (shorter; padding it is the collator's, outside the loss); a
    remainder of one token predicts nothing and is dropped."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("kind cpt needs a tokenizer with an EOS token to separate documents")
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]:
        stream += [*ids, eos]
    blocks = [stream[start : start + block] for start in range(0, len(stream), block)]
    if blocks and len(blocks[-1]) < 2:
        blocks.pop()
    return blocks


def document_blocks(ctx: RunContext, tokenizer, block: int) -> tuple[list[list[int]], int]:
    """(blocks, number of documents) of the task's corpus."""
    from harness import retrieval

    if ctx.task.corpus_path is None:
        raise ConfigError(
            f"task {ctx.task.name!r} has no corpus, so kind cpt has no documents to train on; "
            f"add `corpus: {{path: ...}}` to {ctx.task.where}"
        )
    texts = [text for _, text in retrieval.load_corpus(ctx.task.corpus_path)]
    return pack_documents(tokenizer, texts, block), len(texts)


def document_settings(spec: CptTechnique) -> TrainSettings:
    """The document phase's TrainSettings: the learning rate defaults by `adapter`, like kind lora / full."""
    if spec.train.learning_rate is not None:
        return spec.train
    return spec.train.model_copy(update={"learning_rate": DEFAULT_LEARNING_RATE[spec.adapter]})


def document_trainer(
    model,
    tokenizer,
    blocks: list[list[int]],
    settings: TrainSettings,
    block: int,
    *,
    device: str,
    seed: int,
    work_dir,
    peft_config=None,
    callbacks=(),
):
    """An SFTTrainer over pre-tokenized blocks: no chat template, no packing of its own, every token a label."""
    from datasets import Dataset, disable_progress_bars
    from trl import SFTConfig, SFTTrainer

    from harness import train

    disable_progress_bars()
    args = SFTConfig(
        **train.training_args(settings, "cpt", device, work_dir, seed),
        max_length=block,
        packing=False,
        completion_only_loss=False,
    )
    tokenizer.padding_side = "right"
    return SFTTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=peft_config,
        train_dataset=Dataset.from_dict({"input_ids": blocks}),
        callbacks=list(callbacks),
    )


def cpt_fit(spec: CptTechnique, ctx: RunContext):
    """finetune's `fit` for cpt: the document phase, then with `then:` the instruction phase."""

    def fit(model, tokenizer, augment, peft_config):
        from harness import train

        block = spec.corpus.chunk_tokens
        job = ctx.progress.add_task(f"{spec.name}: packing the corpus", total=None)
        blocks, documents = document_blocks(ctx, tokenizer, block)
        ctx.progress.remove_task(job)
        if not blocks:
            raise ConfigError(f"task {ctx.task.name!r}: the corpus has no tokens to train on")
        settings = document_settings(spec)

        def build(work_dir, callbacks):
            return document_trainer(
                model,
                tokenizer,
                blocks,
                settings,
                block,
                device=ctx.device,
                seed=ctx.recipe.seed,
                work_dir=work_dir,
                peft_config=peft_config,
                callbacks=callbacks,
            )

        # a search trial's pruning callback evaluates the validation loss: the instruction phase's alone
        model, docs, method = train.fit(
            build,
            tokenizer,
            settings,
            ctx.device,
            model=model,
            progress=ctx.progress,
            label=f"{spec.name} documents",
            callbacks=ctx.callbacks if spec.then is None else (),
        )
        docs.examples = None  # blocks, not train examples: learning curves count the train split's
        docs_trainable, _ = parameter_counts(model)
        extra = dict(
            cpt_seconds=docs.seconds,
            cpt_tokens=docs.tokens,
            cpt_steps=docs.steps,
            cpt_loss_first=docs.losses[0] if docs.losses else None,
            cpt_loss_last=docs.losses[-1] if docs.losses else None,
            cpt_blocks=len(blocks),
            cpt_documents=documents,
            cpt_corpus_tokens=sum(map(len, blocks)),
            cpt_chunk_tokens=block,
            cpt_adapter=spec.adapter,
            cpt_trainable_params=docs_trainable,
            cpt_curve=[{k: h[k] for k in CURVE_KEYS if k in h} for h in docs.history],
            then_kind=spec.then.kind if spec.then else None,
        )
        if spec.then is None:
            docs.extra = extra
            return model, docs, method

        then = spec.then
        model = merged(model)
        model.requires_grad_(True)  # merging leaves the base frozen; `then: full` trains every weight
        settings = then.train
        if spec.train.limit:  # a learning-curve size (or the technique's own limit) caps the train examples
            settings = settings.model_copy(update={"limit": min(spec.train.limit, settings.limit or spec.train.limit)})
        model, instructions, method = train.train(
            model,
            tokenizer,
            ctx.task,
            settings,
            then.kind,
            device=ctx.device,
            seed=ctx.recipe.seed,
            progress=ctx.progress,
            label=f"{spec.name} then {then.kind}",
            peft_config=lora_config(then.lora) if then.kind == "lora" else None,
            augment=augment,
            callbacks=ctx.callbacks,
        )
        trainable, total = parameter_counts(model)  # as kind lora / full count them (an adapter included)
        # The document phase changed the base weights, so an adapter alone would not rebuild the scored
        # model: the result (and the saved artifact, which init_from can start from) is the whole model.
        model = merged(model)
        return model, both(docs, instructions, extra | {"trainable_params": trainable, "total_params": total}), method

    return fit


def merged(model):
    """The model with its peft adapter merged into the weights (a plain model stays as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def both(docs, instructions, extra: dict):
    """TrainStats of the two phases: time, tokens and steps summed, the higher memory peaks (energy summed); the losses,
    curve, validation loss and examples of the instruction phase; the document phase's in `extra`."""
    from dataclasses import replace

    from harness.measure import in_sequence

    precision = (
        docs.precision if docs.precision == instructions.precision else f"{docs.precision}+{instructions.precision}"
    )
    return replace(
        instructions,
        seconds=docs.seconds + instructions.seconds,
        peak_bytes=max(docs.peak_bytes or 0, instructions.peak_bytes or 0) or None,
        tokens=docs.tokens + instructions.tokens,
        steps=docs.steps + instructions.steps,
        precision=precision,
        extra=extra,
        gpu=in_sequence(docs.gpu, instructions.gpu),
    )


kinds.register(
    kinds.Kind(
        "cpt",
        CptTechnique,
        run_cpt,
        "continued pre-training on the task's corpus documents (packed, no chat template), "
        "optionally then instruction training",
        trained=True,
        default_learning_rate=DEFAULT_LEARNING_RATE["lora"],
        needs=lambda spec: (kinds.CORPUS,),
        figures=(
            Figure("cpt_seconds", "document-phase time (cpt)", "seconds", "lower"),
            Figure("cpt_tokens", "document tokens trained (cpt)", "count"),
            Figure("cpt_steps", "document-phase steps (cpt)", "count"),
            Figure("cpt_loss_first", "first document loss (cpt)", "number", "lower"),
            Figure("cpt_loss_last", "last document loss (cpt)", "number", "lower"),
            Figure("cpt_blocks", "packed document blocks (cpt)", "count"),
            Figure("cpt_documents", "corpus documents (cpt)", "count"),
            Figure("cpt_corpus_tokens", "corpus tokens (cpt)", "count"),
            Figure("cpt_chunk_tokens", "block length (cpt)", "count"),
            Figure("cpt_trainable_params", "document-phase trainable parameters (cpt)", "count"),
        ),
        fields={
            "cpt_adapter": "whether the document phase trained an adapter (lora) or every weight (full)",
            "cpt_curve": "the document phase's logged history: loss and learning rate per logging step",
            "then_kind": "the instruction phase's kind, when the recipe has `then:`",
        },
    )
)
