"""Fine-tuning kinds on the tiny model: real TRL training, real peft adapters, real 4-bit layers."""

import pytest
import torch

from harness import models, results, train
from harness.config import ModelSpec, TrainSettings, ValidationSplit
from harness.tasks import load_task, with_validation
from harness.techniques.finetune import LoraSettings, QuantSettings, bnb_config, lora_config, parameter_counts
from harness.yamlconfig import ConfigError, ConfigWarning

FAST = TrainSettings(max_steps=8, batch_size=4, learning_rate=3e-3, logging_steps=1, warmup_ratio=0.0, precision="fp32")


@pytest.fixture(scope="module")
def task():
    return load_task("ticket-routing")


def load_tiny(tiny_model_dir, quantization_config=None):
    return models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32, quantization_config)


def test_prompt_tokens_are_masked_out_of_the_loss(tiny_model_dir, task, tmp_path):
    model, tokenizer = load_tiny(tiny_model_dir)
    trainer = train.make_trainer(model, tokenizer, task, FAST, "full", device="cpu", seed=0, work_dir=tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, labels in enumerate(batch["labels"]):
        kept = labels[labels != -100]
        assert tokenizer.decode(kept).strip() == task.train[row].output + "<|im_end|>"
        assert len(kept) < batch["attention_mask"][row].sum() / 4  # the long prompt is not trained on


def test_full_fine_tuning_lowers_the_loss_and_counts_real_tokens(tiny_model_dir, task):
    model, tokenizer = load_tiny(tiny_model_dir)
    before = model.model.layers[0].mlp.down_proj.weight.detach().clone()
    trained, stats, _ = train.train(model, tokenizer, task, FAST, "full", device="cpu", seed=0)
    assert stats.steps == 8 and len(stats.losses) == 8
    assert stats.losses[-1] < stats.losses[0]
    assert not torch.equal(before, trained.model.layers[0].mlp.down_proj.weight)
    # non-padding tokens of the 32 examples seen (chat-formatted prompt + answer), nothing else
    assert 32 * 50 < stats.tokens < 32 * 400 and stats.tokens_per_second > 0
    assert tokenizer.padding_side == "left"  # restored for generation


def test_lora_trains_adapters_only(tiny_model_dir, task):
    model, tokenizer = load_tiny(tiny_model_dir)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_config = lora_config(LoraSettings(rank=2, alpha=4, dropout=0.0))
    trained, stats, _ = train.train(model, tokenizer, task, FAST, "lora", device="cpu", seed=0, peft_config=peft_config)
    assert stats.losses[-1] < stats.losses[0]
    trainable, total = parameter_counts(trained)
    assert 0 < trainable < 0.05 * total
    unchanged = {n: p for n, p in trained.named_parameters() if "lora_" not in n}
    assert len(unchanged) == len(base)
    for name, param in unchanged.items():
        original = base[name.replace("base_model.model.", "").replace(".base_layer", "")]
        assert torch.equal(param, original), name
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero; training moved it


def test_qlora_uses_real_4bit_layers_and_trains(tiny_model_dir, task):
    import bitsandbytes as bnb
    from peft import prepare_model_for_kbit_training

    quant = bnb_config(QuantSettings(quant_type="nf4"), "fp32")
    model, tokenizer = load_tiny(tiny_model_dir, quant)
    linear = model.model.layers[0].self_attn.q_proj
    assert isinstance(linear, bnb.nn.Linear4bit) and linear.weight.quant_type == "nf4"
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    trained, stats, _ = train.train(
        model,
        tokenizer,
        task,
        FAST,
        "qlora",
        device="cpu",
        seed=0,
        peft_config=lora_config(LoraSettings(rank=2, alpha=4, dropout=0.0)),
    )
    assert stats.losses[-1] < stats.losses[0]
    assert isinstance(trained.base_model.model.model.layers[0].self_attn.q_proj.base_layer, bnb.nn.Linear4bit)


def test_validation_loss_is_taken_on_the_validation_split_only(tiny_model_dir, task):
    split = with_validation(task, ValidationSplit(size=12))
    assert len(split.validation) == 12 and len(split.train) == len(task.train) - 12
    assert not {e.id for e in split.validation} & {e.id for e in split.train}
    assert [e.id for e in split.train] == [
        e.id for e in task.train if e.id in {x.id for x in split.train}
    ]  # order kept
    model, tokenizer = load_tiny(tiny_model_dir)
    settings = FAST.model_copy(update={"max_steps": None, "limit": 40, "epochs": 1.0})
    _, stats, _ = train.train(model, tokenizer, split, settings, "full", device="cpu", seed=0)
    assert stats.steps == 10 and stats.examples == 40  # 40 train examples / batch 4
    assert stats.validation_loss is not None and stats.validation_loss > 0
    _, no_split, _ = train.train(*load_tiny(tiny_model_dir), task, settings, "full", device="cpu", seed=0)
    assert no_split.validation_loss is None


def test_examples_longer_than_max_length_are_counted_or_a_clear_error(tiny_model_dir, task):
    model, tokenizer = load_tiny(tiny_model_dir)
    settings = FAST.model_copy(update={"max_steps": 1, "limit": 16, "max_length": 16})
    with pytest.raises(
        ConfigError,
        match=r"all 16 training examples are longer than train.max_length \(16 tokens; "
        r"the longest has (\d+)\).*raise `train.max_length` to at least \1 ",
    ):
        train.train(model, tokenizer, task, settings, "full", device="cpu", seed=0)  # not TRL's "num_samples=0"
    records, _ = train.sft_records(task, settings)
    lengths = sorted(
        len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"])
        for r in records
    )
    some = settings.model_copy(update={"max_length": lengths[8]})  # about half no longer fit
    longer = sum(n > lengths[8] for n in lengths)
    with pytest.warns(
        ConfigWarning,
        match=rf"{longer} of 16 training examples are longer than train.max_length "
        rf"\({lengths[8]} tokens; the longest has {lengths[-1]}\)",
    ):
        _, stats, _ = train.train(model, tokenizer, task, some, "full", device="cpu", seed=0)
    assert stats.truncated_examples == longer and 16 - longer <= stats.examples <= 16  # TRL drops the answerless


# broken: a module the model has but peft cannot adapt, so it fails in its cell (a name the model lacks
# stops the whole run before any cell: preflight.check_lora_targets)
MEASURED = (
    "score",
    "ci_low",
    "ci_high",
    "wall_seconds",
    "train_seconds",
    "eval_seconds",
    "peak_memory_bytes",
    "trainable_params",
    "total_params",
    "train_tokens",
    "train_tokens_per_second",
    "cost_usd",
    "artifact_bytes",
    "dtype",
    "device",
    "peak_memory_method",
)


def test_recipe_with_every_trained_kind_fills_every_measured_field(trained_run):
    _, exit_code, output, run_dir = trained_run  # conftest.TRAINED_KINDS
    assert exit_code == 1, output  # one technique failed...
    rows = {r["technique"]: r for r in results.RunStore.open(run_dir).rows}
    assert rows["broken"]["status"] == "failed" and "LlamaRMSNorm" in rows["broken"]["error"]
    for name in ("full", "lora", "qlora"):  # ...and the others still ran
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert all(row[field] is not None for field in MEASURED), [f for f in MEASURED if row[f] is None]
        assert row["wall_seconds"] >= row["train_seconds"] + row["eval_seconds"]
        assert row["train_steps"] == 3
    assert rows["full"]["trainable_params"] == rows["full"]["total_params"]
    assert rows["lora"]["trainable_params"] < 0.05 * rows["lora"]["total_params"]
    assert rows["qlora"]["dtype"] == "4bit-nf4"
    # LoRA is scored merged (as served), QLoRA on its 4-bit base; the saved artifact stays the adapter
    assert rows["lora"]["adapters_merged"] is True and rows["qlora"]["adapters_merged"] is False
    assert rows["full"]["adapters_merged"] is False
    assert (run_dir / "artifacts" / "lora.seed-0" / "adapter_config.json").is_file()
    assert (run_dir / "artifacts" / "full.seed-0" / "model.safetensors").is_file()
    assert rows["lora"]["artifact_bytes"] < rows["full"]["artifact_bytes"]
    assert "train tok/s" in (run_dir / "REPORT.md").read_text()
