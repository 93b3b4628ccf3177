"""A LoRA model is scored with its adapters merged into the base weights; the answers are the adapters'."""

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from harness import models, prompting
from harness.config import ModelSpec
from harness.evaluate import heldout
from harness.tasks import load_task
from harness.techniques.finetune import save_artifact, save_merged_copy, scored_model


def lora_model(tiny_model_dir):
    """The tiny model (larger random weights, so answers vary by prompt) with random, nonzero adapters."""
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.normal_(0, 0.2)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, config).eval(), tokenizer


def test_merged_lora_gives_the_unmerged_answers_without_lora_layers(tiny_model_dir):
    model, tokenizer = lora_model(tiny_model_dir)
    task = load_task("ticket-routing")
    prompts = [prompting.render(tokenizer, prompting.messages(task, e)) for e in task.test[:8]]
    with model.disable_adapter():
        base = heldout.generate_counted(model, tokenizer, prompts, 4, 8).answers
    unmerged = heldout.generate_counted(model, tokenizer, prompts, 4, 8).answers
    assert unmerged != base  # the adapters change answers: agreeing with them means something

    scored, merged = scored_model(model, merge_adapters=True, quantized=False)
    assert merged and not any(isinstance(m, LoraLayer) for m in scored.modules())
    assert heldout.generate_counted(scored, tokenizer, prompts, 4, 8).answers == unmerged


def test_adapters_stay_unmerged_when_the_recipe_says_so_or_the_base_is_4bit(tiny_model_dir):
    model, _ = lora_model(tiny_model_dir)
    assert scored_model(model, merge_adapters=False, quantized=False) == (model, False)
    assert scored_model(model, merge_adapters=True, quantized=True) == (model, False)
    assert any(isinstance(m, LoraLayer) for m in model.modules())


def test_the_adapter_is_saved_before_merging_and_save_merged_saves_the_scored_model(tiny_model_dir, tmp_path):
    model, tokenizer = lora_model(tiny_model_dir)
    save_artifact(model, tokenizer, tmp_path / "lora")
    scored, _ = scored_model(model, merge_adapters=True, quantized=False)
    save_merged_copy(scored, tokenizer, tmp_path / "lora-merged")
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert (tmp_path / "lora-merged" / "model.safetensors").is_file()
    assert not (tmp_path / "lora-merged" / "adapter_config.json").exists()


def test_a_frozen_model_projects_generations_last_position_without_copying_the_output_matrix(tiny_model_dir):
    # torch.matmul broadcasts a strided 3-D input against a frozen weight as a batched product, copying the
    # whole output matrix per sequence; a merged LoRA (all frozen) generated at 0.70x of full fine-tuning's
    # speed (bench/bench_merged_lora.py), 0.98x once the output layer gets a contiguous input
    from torch.profiler import ProfilerActivity, profile

    model, tokenizer = lora_model(tiny_model_dir)
    merged, _ = scored_model(model, merge_adapters=True, quantized=False)
    assert not any(p.requires_grad for p in merged.parameters())  # what the merge leaves
    vocab = merged.get_output_embeddings().weight.shape[0]
    task = load_task("ticket-routing")
    prompts = [prompting.render(tokenizer, prompting.messages(task, e)) for e in task.test[:4]]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trace:
        heldout.generate_counted(merged, tokenizer, prompts, 4, 2)
    batched = [e for e in trace.events() if e.name == "aten::bmm" and any(vocab in s for s in e.input_shapes if s)]
    assert not batched, [e.input_shapes for e in batched]
