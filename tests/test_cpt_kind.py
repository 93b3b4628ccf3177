"""kind: cpt on the tiny model: continued pre-training on the task's corpus (alone, or then instruction
training), a loss over document tokens only, and clear errors."""

import json
import math
import shutil

import pytest
from conftest import REPO, only_run_dir, run_cli, run_rows, tiny_recipe

from harness.config import ModelSpec, load_recipe
from harness.yamlconfig import ConfigError

DOCS = [
    "The Brevika C61 grinder weighs 1.4 kg and ships from Portugal.",
    "Warranty: three years on every billing account, returns within 30 days.",
]
PHASE = "{max_steps: 3, batch_size: 4, logging_steps: 1, max_length: 256}"


def catalogue_recipe(model_dir, out, techniques):
    recipe = tiny_recipe(model_dir, out, techniques).replace("task: ticket-routing", "task: product-catalogue")
    return recipe.replace("max_new_tokens: 4", "max_new_tokens: 6").replace(
        "eval:\n", "eval:\n  validation: {size: 16}\n"
    )


def test_cpt_alone_and_then_lora_run_end_to_end(write, tiny_model_dir, tmp_path):
    techniques = (
        f"  - {{name: cpt, kind: cpt, corpus: {{chunk_tokens: 64}}, train: {PHASE}}}\n"
        f"  - {{name: cpt-sft, kind: cpt, adapter: full, init_from: cpt, corpus: {{chunk_tokens: 64}},\n"
        f"     train: {PHASE},\n"
        f"     then: {{kind: lora, train: {PHASE}}}}}\n"
    )
    run_dir, rows = run_rows(write, catalogue_recipe(tiny_model_dir, tmp_path / "out", techniques), tmp_path / "out")
    assert rows.pop("echo-input")["kind"] == "baseline"  # the open-ended task's floor
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        assert row["kind"] == "cpt" and row["n_eval"] == 12 and row["score"] is not None
        assert row["cpt_steps"] == 3 and row["cpt_tokens"] == 3 * 4 * 64  # full blocks: no padding to count
        assert row["cpt_documents"] == 64 and row["cpt_blocks"] == math.ceil(row["cpt_corpus_tokens"] / 64)
        assert row["cpt_loss_first"] > 0 and row["cpt_loss_last"] > 0 and len(row["cpt_curve"]) == 3
        assert row["train_loss_first"] > 0 and row["train_loss_last"] > 0
        predictions = [json.loads(line) for line in (run_dir / "predictions" / f"{name}.jsonl").open()]
        assert len(predictions) == 12
    alone, both = rows["cpt"], rows["cpt-sft"]
    # alone: the train_* figures are the document phase's; the LoRA adapter is the artifact
    assert alone["train_steps"] == 3 and alone["train_tokens"] == alone["cpt_tokens"]
    assert alone["train_loss_first"] == alone["cpt_loss_first"] and alone["then_kind"] is None
    assert alone["trainable_params"] == alone["cpt_trainable_params"] < alone["total_params"]
    assert (run_dir / "artifacts" / "cpt.seed-0" / "adapter_config.json").is_file()
    # with then: time, tokens and steps summed; losses and validation are the instruction phase's
    assert both["train_steps"] == 6 and both["train_tokens"] > both["cpt_tokens"]
    assert both["train_seconds"] > both["cpt_seconds"] and both["then_kind"] == "lora"
    assert both["train_loss_first"] != both["cpt_loss_first"] and both["train_examples"] == 320 - 16
    assert both["validation_loss"] > 0 and alone["validation_loss"] is None  # the document phase has none
    assert both["cpt_trainable_params"] > both["trainable_params"]  # full, then lora
    assert both["total_params"] == alone["total_params"]  # counted as kind lora counts: the adapter included
    assert both["init_from"] == "cpt" and alone["init_from"] is None  # starts from cpt's merged adapter
    # the scored model's base weights changed, so the artifact is the whole merged model, not an adapter
    artifact = run_dir / "artifacts" / "cpt-sft.seed-0"
    assert (artifact / "config.json").is_file() and not (artifact / "adapter_config.json").exists()


def test_packed_blocks_hold_document_tokens_only(tiny_model_dir, tmp_path):
    """Every label the trainer sees is a document token or the EOS that ends a document: no padding, no
    chat-template tokens; one epoch trains on exactly the documents' tokens plus one EOS each."""
    import torch

    from harness import models, train
    from harness.config import TrainSettings
    from harness.techniques.cpt import document_trainer, pack_documents

    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in DOCS]
    stream = ids[0] + [tokenizer.eos_token_id] + ids[1] + [tokenizer.eos_token_id]
    block = 16
    blocks = pack_documents(tokenizer, DOCS, block)
    assert [t for b in blocks for t in b] == stream and all(len(b) == block for b in blocks[:-1])
    assert len(blocks) == math.ceil(len(stream) / block) and len(blocks[-1]) < block  # the last one is short
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert start not in stream and stream.count(tokenizer.eos_token_id) == len(DOCS)

    settings = TrainSettings(epochs=1, batch_size=2, learning_rate=1e-3, logging_steps=1, precision="fp32")
    trainer = document_trainer(model, tokenizer, blocks, settings, block, device="cpu", seed=0, work_dir=tmp_path)
    seen = []
    for batch in trainer.get_train_dataloader():
        labels, mask = batch["labels"], batch["attention_mask"]
        assert torch.equal(labels[mask == 0], torch.full_like(labels[mask == 0], -100))  # padding: no loss
        assert torch.equal(labels[mask == 1], batch["input_ids"][mask == 1])  # every real token: a label
        seen += [row[row != -100].tolist() for row in labels]
    assert sorted(seen) == sorted(blocks)

    _, stats, _ = train.fit(
        lambda work_dir, callbacks: document_trainer(
            model, tokenizer, blocks, settings, block, device="cpu", seed=0, work_dir=work_dir, callbacks=callbacks
        ),
        tokenizer,
        settings,
        "cpu",
    )
    assert stats.tokens == len(stream) and stats.steps == math.ceil(len(blocks) / 2)


def corpus_task(tmp_path, documents):
    """product-catalogue's questions with a corpus of `documents` (None: no corpus at all)."""
    folder = tmp_path / "task"
    folder.mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(REPO / "tasks/product-catalogue" / name, folder / name)
    text = (REPO / "tasks/product-catalogue/task.yaml").read_text()
    if documents is None:
        text = text.replace("corpus:\n  path: corpus ", "# no corpus ").replace("  doc_id: doc", "")
    else:
        (folder / "corpus").mkdir()
        for i, document in enumerate(documents):
            (folder / "corpus" / f"doc-{i}.md").write_text(document)
    (folder / "task.yaml").write_text(text)
    return folder


def test_the_document_loss_falls(tiny_model_dir, tmp_path):
    import torch
    from rich.progress import Progress

    from harness import models
    from harness.config import Recipe
    from harness.tasks import load_task
    from harness.techniques.base import RunContext
    from harness.techniques.cpt import CptTechnique, cpt_fit

    task = load_task(str(corpus_task(tmp_path, DOCS)))
    spec = CptTechnique.model_validate(
        {
            "name": "c",
            "kind": "cpt",
            "adapter": "full",
            "corpus": {"chunk_tokens": 16},
            "train": {
                "max_steps": 10,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "lr_scheduler": "constant",
                "logging_steps": 1,
                "warmup_ratio": 0,
                "precision": "fp32",
            },
        }
    )
    recipe = Recipe.model_validate(
        {"name": "t", "model": str(tiny_model_dir), "task": str(task.path), "techniques": [spec.model_dump()]}
    )
    ctx = RunContext(recipe=recipe, task=task, device="cpu", run_dir=tmp_path, progress=Progress(disable=True))
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    _, stats, _ = cpt_fit(spec, ctx)(model, tokenizer, None, None)
    losses = stats.losses
    # from about ln(400) = 6 (a random model over the tiny vocabulary) down by well over a nat
    assert len(losses) == 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0, losses
    assert stats.extra["cpt_documents"] == 2 and stats.extra["cpt_loss_last"] == losses[-1]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{name: c, kind: cpt, then: {kind: qlora}}", "techniques.0.then.kind"),
        ("{name: c, kind: cpt, then: {train: {max_steps: 2}}}", "techniques.0.then.kind"),
        ("{name: c, kind: cpt, adapter: dora}", "techniques.0.adapter"),
        ("{name: c, kind: cpt, corpus: {chunk_tokenz: 64}}", "did you mean 'techniques.0.corpus.chunk_tokens'"),
        (
            "{name: c, kind: cpt, search: {trials: 2, space: {train.learning_rate: [1.0e-4, 1.0e-3]}, "
            "objective: validation_loss}}",
            "the document phase has no validation loss",
        ),
    ],
)
def test_cpt_recipe_errors(write, entry, message):
    path = write("r.yaml", f"name: x\ntask: product-catalogue\ntechniques:\n  - {entry}\n")
    assert message in str(pytest.raises(ConfigError, load_recipe, path).value)


def test_cpt_on_a_task_without_corpus_is_skipped_with_the_reason(write, tiny_model_dir, tmp_path):
    techniques = f"  - {{name: cpt, kind: cpt, corpus: {{chunk_tokens: 64}}, train: {PHASE}}}\n"
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "out", techniques)  # ticket-routing: no corpus
    result = run_cli("run", write("r.yaml", recipe))
    assert result.exit_code == 0, result.output
    rows = {
        r["technique"]: r for r in json.loads((only_run_dir(tmp_path / "out") / "results.json").read_text())["rows"]
    }
    assert rows["cpt"]["status"] == "skipped"
    assert (
        "task 'ticket-routing' has no corpus, which 'cpt' needs (kind cpt); fix: add `corpus:" in rows["cpt"]["error"]
    )


def test_a_direct_call_without_corpus_names_the_fix(tiny_model_dir, tmp_path):
    from rich.progress import Progress

    from harness.config import Recipe
    from harness.tasks import load_task
    from harness.techniques.base import RunContext
    from harness.techniques.cpt import document_blocks

    task = load_task(str(corpus_task(tmp_path, None)))
    recipe = Recipe.model_validate(
        {
            "name": "t",
            "model": str(tiny_model_dir),
            "task": str(task.path),
            "techniques": [{"name": "c", "kind": "cpt"}],
        }
    )
    ctx = RunContext(recipe=recipe, task=task, device="cpu", run_dir=tmp_path, progress=Progress(disable=True))
    message = str(pytest.raises(ConfigError, document_blocks, ctx, None, 16).value)
    assert "has no corpus, so kind cpt has no documents to train on" in message and "add `corpus:" in message


def test_lora_documents_then_full_instructions_train_every_weight(tiny_model_dir, tmp_path):
    """The document adapter is merged, and `then: full` trains every weight of the merged model."""
    import torch
    from rich.progress import Progress

    from harness import models
    from harness.config import Recipe
    from harness.tasks import load_task
    from harness.techniques.base import RunContext
    from harness.techniques.cpt import CptTechnique, cpt_fit
    from harness.techniques.finetune import lora_config

    task = load_task(str(corpus_task(tmp_path, DOCS)))
    phase = {"max_steps": 2, "batch_size": 2, "logging_steps": 1, "max_length": 256}
    spec = CptTechnique.model_validate(
        {
            "name": "c",
            "kind": "cpt",
            "corpus": {"chunk_tokens": 16},
            "train": phase,
            "then": {"kind": "full", "train": phase},
        }
    )
    recipe = Recipe.model_validate(
        {"name": "t", "model": str(tiny_model_dir), "task": str(task.path), "techniques": [spec.model_dump()]}
    )
    ctx = RunContext(recipe=recipe, task=task, device="cpu", run_dir=tmp_path, progress=Progress(disable=True))
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    trained, stats, _ = cpt_fit(spec, ctx)(model, tokenizer, None, lora_config(spec.lora))
    assert not hasattr(trained, "merge_and_unload")  # a plain model: nothing left to merge
    assert stats.steps == 4 and stats.extra["cpt_steps"] == 2 and stats.extra["then_kind"] == "full"
    assert stats.extra["trainable_params"] == stats.extra["total_params"] == models.count_parameters(trained)[1]
    assert stats.extra["cpt_trainable_params"] < stats.extra["total_params"]  # the document phase: an adapter
