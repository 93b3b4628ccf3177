"""A finished run's technique, loaded to answer chat messages exactly as it answered in the run.

    served = load(run_dir, "lora")                 # the model, its tokenizer, shots, retrieval
    served.request(example)                        # what a client sends for a held-out example
    served.answer([messages, ...])                 # heldout.Generation, batched as the run batched

What each kind needs is read from the run folder: the stored recipe (model, seed, the search's chosen
params, eval.heldout settings), the task, and for a trained kind the artifact it saved
(artifacts/<cell id>: a peft adapter, loaded on the base model and merged as the run merged it, or the
full checkpoint). Prompt and RAG techniques are the base model with the same shots (drawn by the same
seed) and the same retrieval settings over the same (cached) corpus index.

A client sends the conversation a user would: the system message and the question (prompting.messages
without shots or passages). The technique adds the rest server-side: its shots after the system message,
and for retrieval, passages for the last user turn. RAG retrieves with that turn's text; the run
retrieved with the example's input, the same text when the task's prompt template is `{input}`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import kinds, prompting
from harness.tasks import Example
from harness.yamlconfig import ConfigError

NOT_LOCAL = (
    "a hosted model (kind api or api_finetune): its endpoint serves it already; there is nothing of it in the "
    "run folder"
)


@dataclass
class Served:
    """A technique as the run scored it: its model and what it adds to every conversation."""

    name: str
    spec: Any  # the technique's settings, the search's chosen params applied
    ctx: Any  # techniques.RunContext: recipe (narrowed to the reported seed), task, device, run folder
    model: Any
    tokenizer: Any
    shots: list[Example] = field(default_factory=list)
    augment: Any = None  # techniques.rag.Augmenter, for a technique with retrieval
    artifact: Path | None = None  # the trained model's folder in the run (artifacts/<cell id>)

    @property
    def settings(self):
        """eval.heldout: batch size, max_new_tokens, prefix reuse, as the run generated."""
        return self.ctx.recipe.eval.heldout

    def request(self, example: Example) -> list[dict]:
        """The messages a client sends for `example`: its system message (if any) and question."""
        return prompting.messages(self.ctx.task, example)

    def conversation(self, messages: list[dict]) -> list[dict]:
        """What the model reads: the client's system message (else the task's), the technique's shots,
        then the client's turns, the last user turn with retrieved passages for a technique with retrieval."""
        messages = [dict(m) for m in messages]
        system = self.ctx.task.spec.prompt.system
        if messages and messages[0].get("role") == "system":
            head, rest = messages[:1], messages[1:]
        else:
            head, rest = ([{"role": "system", "content": system}] if system else []), messages
        if self.augment is not None:
            last = max((i for i, m in enumerate(rest) if m.get("role") == "user"), default=None)
            if last is not None:
                question = str(rest[last].get("content") or "")
                example = query_example(question)
                rest[last]["content"] = self.augment(example, question)
                self.augment.retrieved.pop(example.id)  # a server sees endless questions: keep none of them
                self.augment.passages_used.pop(example.id)
        return head + prompting.shot_turns(self.ctx.task, self.shots) + rest

    def prompt(self, messages: list[dict]) -> str:
        return prompting.render(self.tokenizer, self.conversation(messages))

    def answer(
        self,
        conversations: list[list[dict]],
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
        on_step=None,
    ):
        """Greedy answers (heldout.Generation) through the run's own batched generation; `on_step` sees each
        decoding step's tokens (heldout.generate_counted)."""
        from harness.evaluate.heldout import generate_counted

        settings = self.settings
        return generate_counted(
            self.model,
            self.tokenizer,
            [self.prompt(m) for m in conversations],
            batch_size or settings.batch_size,
            max_new_tokens or settings.max_new_tokens,
            reuse_prefix=settings.reuse_prefix,
            on_step=on_step,
        )


def query_example(question: str) -> Example:
    """A question as the Augmenter reads an example: retrieved for by its text, cached by its text."""
    return Example("query:" + hashlib.sha256(question.encode()).hexdigest(), question, "")


def reported_row(store, technique: str):
    """The technique's row in the run, which must have finished; its error names the techniques that did."""
    rows = {r["technique"]: r for r in store.rows}
    row = rows.get(technique)
    finished = sorted(n for n, r in rows.items() if r["status"] == "ok" and r["kind"] != "baseline")
    if row is None or row["kind"] == "baseline":
        raise ConfigError(
            f"{store.run_dir}: no technique {technique!r} in this run (finished: {', '.join(finished) or 'none'})"
        )
    if row["status"] != "ok":
        raise ConfigError(f"{store.run_dir}: technique {technique!r} {row['status']}: {row.get('error')}")
    return row


def open_run(run_dir: str | Path):
    """The RunStore of a one-task run folder (a multi-task run: one of its task sub-folders)."""
    from harness.results import open_runs

    stores = open_runs(run_dir)
    if len(stores) > 1:
        raise ConfigError(
            f"{run_dir} holds a run per task; give one task's folder: " + ", ".join(str(s.run_dir) for s in stores)
        )
    return stores[0]


def context(store, technique: str, device: str | None = None):
    """(the technique's spec as its row reports it, a RunContext for the run's reported seed)."""
    from harness.config import stored_recipe
    from harness.searchspace import apply_params
    from harness.tasks import load_task, with_validation
    from harness.techniques import RunContext
    from harness.worker import LineProgress

    row = reported_row(store, technique)
    if kinds.hosted(row["kind"]):
        raise ConfigError(f"technique {technique!r} is {NOT_LOCAL}")
    if not kinds.generates(row["kind"]):
        raise ConfigError(
            f"technique {technique!r} is a {row['kind']} model: it scores answers and writes none, so there is "
            "nothing to serve as a chat model"
        )
    if row.get("export_of"):
        raise ConfigError(
            f"{technique!r} is the scored export of {row['export_of']!r} ({row.get('export_folder')}); "
            f"give --technique {row['export_of']}"
        )
    recipe = stored_recipe(store.meta["recipe"]).for_task(store.meta["task_ref"])
    recipe = recipe.model_copy(update={"seed": recipe.run_seeds[0]})
    spec = apply_params(recipe.technique(technique), row.get("params") or {})
    task = with_validation(load_task(store.meta["task_ref"]), recipe.eval.validation)
    ctx = RunContext(
        recipe=recipe, task=task, device=device or run_device(store), run_dir=store.run_dir, progress=LineProgress()
    )
    return spec, ctx


def run_device(store) -> str:
    """The run's device where this machine has it, else the CPU."""
    import torch

    return "cuda" if str(store.meta.get("device", "")).startswith("cuda") and torch.cuda.is_available() else "cpu"


def load(run_dir: str | Path, technique: str, device: str | None = None) -> Served:
    """The technique of a finished run, ready to answer (see the module's docstring)."""
    store = open_run(run_dir)
    spec, ctx = context(store, technique, device)
    artifact = None
    if kinds.trained(spec.kind):
        artifact = trained_artifact(ctx, technique)
        model, tokenizer = load_trained(spec, ctx, artifact)
    else:
        model, tokenizer = ctx.base_model()
    augment = None
    retrieval = getattr(spec, "retrieval", None)
    if retrieval is not None:
        from harness.techniques.rag import Augmenter

        augment = Augmenter(retrieval, ctx.index(retrieval), tokenizer)
    shots = prompting.draw_shots(ctx.task, getattr(spec, "shots", 0), ctx.recipe.seed)
    return Served(technique, spec, ctx, model, tokenizer, shots, augment, artifact)


def trained_artifact(ctx, technique: str) -> Path:
    from harness.techniques.finetune import source_artifact

    folder = source_artifact(ctx, technique)
    if not folder.is_dir():
        raise ConfigError(f"technique {technique!r}: no saved model at {folder} (was the run folder moved or pruned?)")
    return folder


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def quantization(spec, ctx):
    """The bitsandbytes config a 4-bit technique (qlora, peft with quantization) trained and was scored on."""
    settings = getattr(spec, "quantization", None)
    if settings is None:
        return None
    from harness import train
    from harness.techniques.finetune import bnb_config

    return bnb_config(settings, train.precision(spec.train, ctx.device))


def load_trained(spec, ctx, folder: Path):
    """(model, tokenizer) as the run scored it: an adapter on the base model (loaded as the run loaded it,
    merged where the run merged it), or the saved checkpoint (saved in the evaluation dtype)."""
    from harness import models

    if not is_adapter(folder):
        return models.load(ctx.recipe.model.model_copy(update={"id": str(folder)}), ctx.device)
    import torch
    from peft import PeftModel

    from harness.techniques.finetune import scored_model

    quant = quantization(spec, ctx)
    dtype = torch.float32 if quant is not None else models.resolve_dtype(ctx.recipe.model, ctx.device)
    base, tokenizer = models.load(ctx.recipe.model, ctx.device, dtype, quant)
    # the adapter's weights in the dtype they were saved in, as the run's model held them when scored
    model = PeftModel.from_pretrained(base, folder, autocast_adapter_dtype=False).eval()
    model, _ = scored_model(model, ctx.recipe.eval.heldout.merge_adapters, quant is not None)
    return model.eval(), tokenizer


def stored_serving(run_dir: str | Path):
    """The run's recipe's `serving:` settings (config.ServingSpec; the defaults for a run stored without them)."""
    from harness.config import ServingSpec

    return ServingSpec.model_validate(open_run(run_dir).meta["recipe"].get("serving") or {})
