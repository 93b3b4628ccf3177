"""The memory and time plan: the arithmetic (analysis/memory_plan.py), its activation coefficients against
what autograd really saves, `harness plan` on an 8B architecture and on a bundled recipe (no weights
loaded), and the estimates against measured training peaks (the tiny model here, SmolLM2-135M from the
committed demo run)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from harness import planner, rows
from harness.analysis import memory_plan as mp
from harness.config import load_recipe
from harness.tasks import load_task

GiB = 2**30
BOUND = 0.25  # estimates within ±25% of the measured training peaks

# Llama-3.1-8B's architecture (its config.json, abridged): 8,030,261,248 parameters
LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
}
# SmolLM2-135M-Instruct's architecture (the default model's), to price the committed demo run's rows
SMOLLM2 = LLAMA_8B | {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
SMOLLM2_LONGEST = 104  # tokens of ticket-routing's longest train example (prompt + answer) in SmolLM2's tokenizer


def shape_8b() -> mp.ModelShape:
    linear = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    embeddings = 2 * 128256 * 4096
    return mp.ModelShape("8b", 4096, 32, 32, 8, 14336, 128256, linear + embeddings + 65 * 4096, linear, embeddings)


def full(**changes) -> mp.Setup:
    shape = shape_8b()
    return replace(mp.Setup("full", "full", shape.params, device="cuda", precision="bf16"), **changes)


# --- the arithmetic --------------------------------------------------------------------------------


def test_sharding_ddp_zero2_zero3_fsdp():
    shape, n = shape_8b(), 8
    single = mp.estimate(shape, full())
    assert single.weights == shape.params * 4 and single.grads == shape.params * 4  # fp32 weights under autocast
    assert single.optimizer == shape.params * 8  # AdamW's two fp32 moments
    ddp = mp.estimate(shape, full(strategy="ddp", world_size=n))
    assert (ddp.weights, ddp.grads, ddp.optimizer) == (single.weights, single.grads, single.optimizer)
    assert ddp.total == pytest.approx(single.total + single.grads)  # replicated, plus the reducer's buckets
    zero2 = mp.estimate(shape, full(strategy="zero2", world_size=n))
    assert zero2.weights == shape.params * 2  # DeepSpeed under bf16 keeps 16-bit weights ...
    assert zero2.optimizer == shape.params * 12 / n  # ... an fp32 master and two moments, sharded
    assert zero2.grads == shape.params * 2 / n
    zero3 = mp.estimate(shape, full(strategy="zero3", world_size=n))
    assert zero3.weights == pytest.approx(shape.params * 2 / n + 2 * shape.layer_params * 2)  # + 2 layers gathered
    fsdp = mp.estimate(shape, full(strategy="fsdp", world_size=n))  # fp32 shards, autocast
    assert fsdp.weights == pytest.approx(shape.params * 4 / n + 2 * shape.layer_params * 4)
    assert fsdp.grads == shape.params * 4 / n and fsdp.optimizer == shape.params * 8 / n
    assert zero2.total < single.total and fsdp.total < single.total and zero3.total < zero2.total
    assert ddp.activations == fsdp.activations == single.activations  # per micro-batch, whatever the strategy
    # 16-bit weights (DeepSpeed) need no autocast copies of them for backward
    assert zero3.activations == pytest.approx(single.activations - 32 * 2 * shape.layer_params)


def test_offload_moves_states_and_sharded_weights_to_the_host():
    shape, n = shape_8b(), 8
    zero2 = mp.estimate(shape, full(strategy="zero2", world_size=n, offload=True))
    assert zero2.optimizer == 0 and zero2.host == pytest.approx(shape.params * (12 + 4) / n)  # states + step temporary
    assert zero2.weights == shape.params * 2  # ZeRO-2 keeps its weights on the device
    zero3 = mp.estimate(shape, full(strategy="zero3", world_size=n, offload=True))
    assert zero3.weights == pytest.approx(2 * shape.layer_params * 2)  # only the gathered layers stay
    assert zero3.host == pytest.approx(shape.params * (12 + 4) / n + shape.params * 2 / n)
    assert zero3.total < zero2.total < mp.estimate(shape, full(strategy="zero2", world_size=n)).total


def test_gradient_checkpointing_keeps_layer_inputs_and_one_layer():
    shape = shape_8b()
    setup = full(batch_size=4, seq_len=512)
    plain, checkpointed = mp.estimate(shape, setup), mp.estimate(shape, replace(setup, gradient_checkpointing=True))
    tokens = 4 * 512
    per_layer = mp.activation_bytes_per_token_layer(shape, setup) * tokens
    casts = 2 * shape.layer_params  # autocast's bf16 copy of a layer's weights, kept for backward
    assert plain.activations == pytest.approx(32 * (per_layer + casts))
    assert checkpointed.activations == pytest.approx(32 * tokens * 4096 * 4 + per_layer + casts)
    assert checkpointed.activations < plain.activations / 10
    # the time side: one more forward
    assert mp.flops_per_token(shape, replace(setup, gradient_checkpointing=True)) == 8 * shape.params


def test_qlora_holds_a_4bit_base_and_16_or_32_bit_rest():
    shape = shape_8b()
    lora = mp.Setup("lora", "adapter", 41_943_040, device="cuda", precision="bf16", adapter_rank=16, adapted_modules=7)
    qlora = replace(lora, kind="qlora", quantized=True)
    rest = shape.params - shape.linear_params  # embeddings, output layer, norms: fp32
    assert mp.nf4_bytes_per_param(True) == pytest.approx(0.5 + 1 / 64 + 4 / 16384)
    assert mp.nf4_bytes_per_param(False) == 0.5625
    assert mp.weights_bytes(shape, qlora) == pytest.approx(
        shape.linear_params * mp.nf4_bytes_per_param(True) + rest * 4 + lora.trainable * 4
    )
    assert mp.weights_bytes(shape, lora) == shape.params * 4 + lora.trainable * 4
    assert mp.estimate(shape, qlora).total < mp.estimate(shape, lora).total - 20 * GiB
    # LoRA trains its adapters only: gradients and AdamW states of 42M parameters, not 8B
    assert mp.estimate(shape, lora).optimizer == lora.trainable * 8
    # frozen base: 4 x params + 6 x trainable per token
    assert mp.flops_per_token(shape, lora) == 4 * shape.params + 6 * lora.trainable


def test_a_suggestion_is_the_first_change_that_fits():
    shape = shape_8b()
    setup = full()
    assert not mp.fits(mp.estimate(shape, setup).total, 80 * GiB, "cuda")
    text, after = mp.suggest(shape, setup, 80 * GiB, gpus=8)
    assert mp.fits(after.total, 80 * GiB, "cuda") and "processes" in text
    lora = mp.Setup("lora", "adapter", 41_943_040, device="cuda", precision="bf16", adapter_rank=16, adapted_modules=7)
    text, _ = mp.suggest(shape, replace(lora, batch_size=32), 80 * GiB, gpus=1)
    assert text == "train.gradient_checkpointing: true"  # settings before hardware
    assert mp.suggest(shape, setup, None) is None  # the device's memory unknown: nothing to say


def test_the_row_figures_are_declared_and_gpus_parse():
    figures = mp.estimate_for_row(shape_8b(), full(), train_tokens=1e6, flops_per_second=1e14)
    assert set(figures) == {"planned_peak_memory_bytes", "planned_seconds"}
    assert figures["planned_seconds"] == pytest.approx(1e6 * 6 * shape_8b().params / 1e14)
    for kind in ("full", "lora", "qlora", "dpo"):
        assert not rows.undeclared({"kind": kind, **figures})
    assert mp.parse_gpus("8x80GB") == (8, 80 * GiB) and mp.parse_gpus("24GiB") == (1, 24 * GiB)
    with pytest.raises(ValueError, match="COUNTxSIZE"):
        mp.parse_gpus("eight GPUs")


@pytest.mark.parametrize("mode", ["full", "lora", "lora-no-dropout"])
def test_activation_coefficients_are_what_autograd_saves(mode):
    """The per-layer formula against the bytes autograd really saves (unique storages, weights excluded)
    on HF Llama layers of two shapes: the difference between 4 and 2 layers, per token."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.measure import saved_activation_bytes

    def saved(h, inter, layers, tokens=(2, 32)):
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=64,
            hidden_size=h,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        model = LlamaForCausalLM(config)
        if mode != "full":
            dropout = 0.0 if mode == "lora-no-dropout" else 0.05
            lora = LoraConfig(
                r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"
            )
            model = get_peft_model(model, lora)
        model.train()
        return saved_activation_bytes(model, torch.randint(0, 64, tokens))

    for h, inter in ((64, 160), (128, 160)):
        measured = (saved(h, inter, 4) - saved(h, inter, 2)) / 2 / 64
        shape = mp.ModelShape("t", h, 2, 4, 2, inter, 64, 0, 0, 0)
        adapter = mp.Setup(
            "lora",
            "adapter",
            0,
            adapter_rank=4,
            adapted_modules=7,
            adapted_inputs=6 * h + inter,
            adapter_dropout=mode == "lora",
        )
        setup = full(device="cpu", precision="fp32") if mode == "full" else adapter
        estimated = mp.activation_bytes_per_token_layer(shape, setup)
        assert estimated == pytest.approx(measured, rel=0.06 if mode == "lora" else 1e-9), (h, inter)


# --- harness plan ----------------------------------------------------------------------------------


def table_rows(output: str) -> dict[str, list[str]]:
    """technique -> its cells in a printed memory table (first line of each row)."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) >= 13 and cells[0] and cells[0] != "technique" and cells[0] not in found:
            found[cells[0]] = cells
    return found


@pytest.fixture(scope="module")
def llama_8b(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llama-8b") / "config.json"
    path.write_text(json.dumps(LLAMA_8B))
    return path


def test_plan_an_8b_model_on_one_and_eight_gpus(llama_8b):
    assert planner.read_model(str(llama_8b)).shape.params == 8_030_261_248  # counted on the meta device
    one = run_cli("plan", "--model", llama_8b, "--gpus", "1x80GB")
    assert one.exit_code == 0, one.output
    lines = table_rows(one.output)
    assert lines["full"][12] == "NO" and lines["qlora"][12] == "yes"
    assert "does not fit: full; smallest change that fits: train.distributed" in one.output
    # LoRA at the default micro-batch (8 x 512 tokens, fp32 weights, bf16 autocast) holds ~59 GiB of
    # activations: the plan says so, and gradient checkpointing is the smallest change that fits
    assert lines["lora"][12] == "NO" and "train.gradient_checkpointing: true" in lines["lora"][13]
    checkpointed = run_cli(
        "plan", "--model", llama_8b, "--gpus", "1x80GB", "--kind", "lora", "--gradient-checkpointing"
    )
    assert table_rows(checkpointed.output)["lora"][12] == "yes"
    small = run_cli("plan", "--model", llama_8b, "--gpus", "1x80GB", "--kind", "lora", "--batch-size", "2")
    assert table_rows(small.output)["lora"][12] == "yes"
    for flags in (["--strategy", "fsdp"], ["--strategy", "deepspeed", "--zero-stage", "3"]):
        eight = run_cli("plan", "--model", llama_8b, "--gpus", "8x80GB", "--kind", "full", "--processes", "8", *flags)
        assert eight.exit_code == 0, eight.output
        (line,) = table_rows(eight.output).values()
        assert line[2] in ("fsdp x8", "zero-3 x8") and line[12] == "yes", eight.output


def test_plan_flags_are_checked(llama_8b):
    wrong = run_cli("plan", "--model", llama_8b, "--kind", "prompt")
    assert wrong.exit_code == 2 and "not a trained kind" in wrong.output
    wrong = run_cli("plan", "--model", llama_8b, "--strategy", "ddp", "--offload", "cpu")
    assert wrong.exit_code == 2 and "offload needs a sharding strategy" in wrong.output
    assert run_cli("plan").exit_code == 2


def test_plan_a_bundled_recipe_loads_no_weights(monkeypatch):
    import transformers

    from harness import models

    def refuse(*args, **kwargs):
        raise AssertionError("the plan loaded weights")

    monkeypatch.setattr(models, "load", refuse)
    monkeypatch.setattr(models, "_convert_gguf", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(refuse))
    result = run_cli("plan", REPO / "recipes" / "finetune.yaml")
    assert result.exit_code == 0, result.output
    lines = table_rows(result.output)
    assert set(lines) == {"full", "lora", "qlora"}
    assert lines["full"][3] == "134.5M" and lines["lora"][4] == "4.9M"  # SmolLM2-135M, LoRA r=16 all-linear
    assert "time plan on ticket-routing: 5 cell(s)" in result.output
    on_gpu = run_cli("plan", REPO / "recipes" / "finetune.yaml", "--gpus", "1x24GB")
    assert on_gpu.exit_code == 0 and "1 x 24 GiB (--gpus)" in on_gpu.output
    assert all(line[12] == "yes" for line in table_rows(on_gpu.output).values())


def test_the_plan_counts_a_studys_cells_as_the_run_does():
    """recipes/study.yaml on ticket-routing: the committed example run of it has 32 cells (rag's search is
    skipped there: no corpus; few-shot's chosen shots make it seed-sensitive)."""
    stored = json.loads((REPO / "reports/study-example/results.json").read_text())
    plans = {plan.task: plan for plan in planner.plan_recipe(load_recipe(REPO / "recipes" / "study.yaml"))}
    assert plans["ticket-routing"].cells == len(stored["cells"]) == 32
    assert plans["product-catalogue"].cells == 35  # + rag's 3 trials
    lines = {line.technique: line for line in plans["ticket-routing"].techniques}
    assert lines["full"].cells == 3 * 3 + 3  # seeds x train sizes + search trials


# --- estimates against measured peaks --------------------------------------------------------------


def test_run_prints_the_plan_and_its_estimates_are_near_the_measured_peaks(trained_run):
    recipe_path, _, output, run_dir = trained_run  # conftest.TRAINED_KINDS: full, lora, qlora and a failing lora
    measured = {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    assert "memory plan: " in output and "time plan on ticket-routing: 4 cell(s)" in output
    assert output.index("memory plan") < output.index("tiny: 4 technique(s)")  # before any cell
    (plan,) = planner.plan_recipe(load_recipe(recipe_path))
    for line in plan.techniques:
        row = measured[line.technique]
        if row["status"] != "ok":  # the failing lora: nothing measured
            continue
        assert line.setup.trainable == row["trainable_params"]  # LoRA counted as peft counts it
        ratio = row["train_peak_memory_bytes"] / line.estimate.total
        assert 1 - BOUND <= ratio <= 1 + BOUND, (line.technique, ratio)
    # a later plan of the same model on this device takes its throughput from the stored run
    assert plan.throughput_source.startswith("measured: 3 trained cells")
    # what a worker records beside the measurement (planner.estimate_row -> memory_plan.estimate_for_row)
    recipe = load_recipe(recipe_path)
    task = load_task(recipe.tasks[0])
    for spec in recipe.techniques:
        figures = planner.estimate_row(recipe, spec, "cpu", task)
        line = next(line for line in plan.techniques if line.technique == spec.name)
        assert figures["planned_peak_memory_bytes"] == round(line.estimate.total)
        assert figures["planned_seconds"] > 0 and not rows.undeclared({"kind": spec.kind, **figures})


@pytest.mark.parametrize("technique", ["full", "lora", "qlora"])
def test_smollm2_estimates_are_near_the_committed_demo_peaks(technique, tmp_path):
    """The demo's SmolLM2-135M cells (fp32, batch 8, 2 CPU cores; reports/demo-example) against the plan."""
    data = json.loads((REPO / "reports/demo-example/ticket-routing/results.json").read_text())
    row = next(r for r in data["rows"] if r["technique"] == technique)
    spec = load_recipe(REPO / "recipes" / "demo.yaml").technique(technique)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"precision": row["train_precision"]})})
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMOLLM2))
    model = planner.read_model(str(config))
    setup = planner.setup_for(spec, model, "cpu", SMOLLM2_LONGEST)
    assert model.shape.params == 134_515_008 and setup.trainable == row["trainable_params"]
    assert row["total_params"] == model.shape.params + (setup.trainable if setup.trains == "adapter" else 0)
    ratio = row["train_peak_memory_bytes"] / mp.estimate(model.shape, setup).total
    assert 1 - BOUND <= ratio <= 1 + BOUND, ratio


def test_evaluation_time_comes_from_earlier_held_out_phases():
    shape = mp.ModelShape("m", 64, 2, 4, 2, 128, 400, params=100_000, linear_params=80_000, embedding_params=20_000)
    rows = [
        {"prompt_tokens_mean": 100.0, "output_tokens_mean": 5.0, "n_eval": 10, "eval_seconds": 1.0},
        {"prompt_tokens_mean": 100.0, "output_tokens_mean": 5.0, "n_eval": 10, "eval_seconds": 3.0},
        {"train_tokens_per_second": 50.0},  # a row without a measured held-out phase counts for nothing
    ]
    rate = planner.measured_eval_rate(rows, shape)
    flops = 2.0 * shape.params * 10 * 105  # 2 x params per token, 10 examples of 105 tokens
    assert rate == pytest.approx((flops / 1.0 + flops / 3.0) / 2)  # the median of the two measured rates
    assert planner.measured_eval_rate(rows[2:], shape) is None


def test_the_plan_leaves_out_a_technique_that_does_not_apply_and_says_why(write):
    """dpo on ticket-routing (no preference pairs) is a skipped row when run: the plan gives it no memory
    line (it had one, as if it would train), counts its cell and names the reason."""
    text = "name: x\nmodel: random:tiny-llama\ntask: ticket-routing\ntechniques:\n"
    recipe = load_recipe(write("r.yaml", text + "  - {name: lora, kind: lora}\n  - {name: dpo, kind: dpo}\n"))
    (plan,) = planner.plan_recipe(recipe, device="cpu")
    assert [line.technique for line in plan.techniques] == ["lora"]
    assert plan.untrained_cells == 1
    reason = "dpo: skipped on this task: task 'ticket-routing' has no preference pairs"
    assert any(note.startswith(reason) for note in plan.notes)
