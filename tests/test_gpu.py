"""On CUDA: every technique kind through `harness run` on the tiny model, end to end (run with -m gpu).

prompt, full, lora, qlora, peft (prompt tuning), grpo and lm-eval on ticket-routing; dpo on support-replies;
rag (BM25) and cpt on product-catalogue; then the 4-bit layers QLoRA trains through, and `dtype: auto`.
bench/gpu/run.sh runs this file first on a GPU machine. Without torch or a CUDA device every test here is
skipped; the default selection (`-m 'not slow and not gpu'` in pyproject.toml) deselects them anyway."""

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from conftest import only_run_dir, run_cli, tiny_recipe  # noqa: E402

from harness import results  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAST = "max_steps: 3, batch_size: 4, logging_steps: 1"
ROUTING = f"""\
  - {{name: zero, kind: prompt}}
  - {{name: full, kind: full, train: {{{FAST}}}}}
  - {{name: lora, kind: lora, train: {{{FAST}}}, lora: {{rank: 2, alpha: 4}}}}
  - {{name: qlora, kind: qlora, train: {{{FAST}}}, lora: {{rank: 2, alpha: 4}}}}
  - {{name: prompt-tuning, kind: peft, method: prompt_tuning, settings: {{num_virtual_tokens: 4}}, train: {{{FAST}}}}}
  - {{name: rl, kind: grpo, grpo: {{generations: 4, max_completion_tokens: 4}},
     train: {{max_steps: 2, batch_size: 8, limit: 16}}}}
"""
LM_EVAL = "  lm_eval: {tasks: [general_ability], limit: 4, batch_size: 4}\n"
PREFERENCE = f"  - {{name: dpo, kind: dpo, train: {{{FAST}, limit: 16, max_length: 256}}}}\n"
CATALOGUE = f"""\
  - {{name: rag, kind: rag, retrieval: {{retriever: bm25, k: 2, context_tokens: 64}}}}
  - {{name: cpt, kind: cpt, corpus: {{chunk_tokens: 64}}, train: {{{FAST}, max_length: 256}}}}
"""


def cuda_run(folder, model_dir, techniques: str, task: str = "ticket-routing", lm_eval: str = ""):
    """`harness run` of a tiny recipe on cuda; (run folder, rows by technique)."""
    text = tiny_recipe(model_dir, folder / "out", techniques).replace("device: cpu", "device: cuda")
    text = text.replace("task: ticket-routing", f"task: {task}")
    text = text.replace("bootstrap_samples: 200}\n", "bootstrap_samples: 200}\n" + lm_eval)
    recipe = folder / "r.yaml"
    recipe.write_text(text)
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(folder / "out")
    return run_dir, {r["technique"]: r for r in results.RunStore.open(run_dir).rows}


@pytest.fixture(scope="module")
def cuda_rows(tiny_model_dir, tmp_path_factory):
    """Every kind on the GPU, over the three tasks their data needs; rows by technique."""
    routing_dir, rows = cuda_run(tmp_path_factory.mktemp("routing"), tiny_model_dir, ROUTING, lm_eval=LM_EVAL)
    _, preference = cuda_run(tmp_path_factory.mktemp("pref"), tiny_model_dir, PREFERENCE, "support-replies")
    _, catalogue = cuda_run(tmp_path_factory.mktemp("catalogue"), tiny_model_dir, CATALOGUE, "product-catalogue")
    return routing_dir, rows | {"dpo": preference["dpo"], "rag": catalogue["rag"], "cpt": catalogue["cpt"]}


def bf16() -> bool:
    return torch.cuda.is_bf16_supported()


def nvml() -> bool:
    return importlib.util.find_spec("pynvml") is not None


def check_cuda_row(row: dict, trained: bool = True) -> None:
    assert row["status"] == "ok", row["error"]
    assert row["device"].startswith("cuda"), row["device"]
    assert "cuda allocator" in row["peak_memory_method"], row["peak_memory_method"]
    assert row["peak_memory_bytes"] > 0 and row["n_eval"] == 12
    assert row["eval_reserved_peak_bytes"] >= row["eval_peak_memory_bytes"]
    if nvml():  # the device-level peak holds the CUDA context besides the tensors; the energy counter was read
        # (>= 0: a phase of the tiny model may be shorter than the counter's update interval)
        assert row["eval_device_peak_bytes"] >= row["eval_peak_memory_bytes"] and row["eval_energy_wh"] >= 0
        assert row["energy_wh"] >= row["eval_energy_wh"]
    if trained:
        assert row["train_precision"] == ("bf16" if bf16() else "fp16")
        assert row["train_reserved_peak_bytes"] >= row["train_peak_memory_bytes"] > 0
        if nvml():
            assert row["train_device_peak_bytes"] >= row["train_peak_memory_bytes"] and row["train_energy_wh"] >= 0


def test_full_fine_tuning_on_cuda_evaluates_in_bf16_under_dtype_auto(cuda_rows):
    run_dir, rows = cuda_rows
    row = rows["full"]
    check_cuda_row(row)
    assert row["train_steps"] == 3
    assert row["dtype"] == ("bfloat16" if bf16() else "float16")  # evaluated as the base model is (dtype auto)
    assert row["trainable_params"] == row["total_params"]
    assert (run_dir / "artifacts" / "full.seed-0" / "model.safetensors").is_file()


def test_qlora_on_cuda(cuda_rows):
    run_dir, rows = cuda_rows
    row = rows["qlora"]
    check_cuda_row(row)
    assert row["dtype"] == "4bit-nf4" and row["train_steps"] == 3
    assert 0 < row["trainable_params"] < 0.2 * row["total_params"]
    assert (run_dir / "artifacts" / "qlora.seed-0" / "adapter_config.json").is_file()


@pytest.mark.parametrize("name", ["lora", "prompt-tuning", "rl", "dpo", "cpt"])
def test_every_trained_kind_runs_on_cuda(cuda_rows, name):
    _, rows = cuda_rows
    row = rows[name]
    check_cuda_row(row)
    assert row["train_steps"] >= 2 and 0 < row["trainable_params"] < row["total_params"]
    assert row["train_loss_first"] is not None or row["train_curve"], row["train_curve"]


@pytest.mark.parametrize("name", ["zero", "rag"])
def test_prompt_only_kinds_run_on_cuda(cuda_rows, name):
    _, rows = cuda_rows
    check_cuda_row(rows[name], trained=False)
    assert rows[name]["dtype"] == ("bfloat16" if bf16() else "float16")
    if name == "rag":
        assert rows[name]["retriever"] == "bm25" and rows[name]["recall_at_k"] is not None


def test_lm_eval_scores_the_trained_models_on_cuda(cuda_rows):
    _, rows = cuda_rows
    for name in ("zero", "full", "lora", "qlora"):
        row = rows[name]
        assert row.get("lm_eval_errors") is None, row["lm_eval_errors"]
        assert 0 <= row["lm_eval:general_ability:acc"] <= 1, name
    trained = rows["full"]
    assert trained["lm_eval_seconds"] > 0 and trained["lm_eval_peak_memory_bytes"] > 0
    assert trained["lm_eval_reserved_peak_bytes"] >= trained["lm_eval_peak_memory_bytes"]


def test_qlora_trains_through_bitsandbytes_4bit_layers_computing_in_bf16(tiny_model_dir):
    """The model kind qlora trains: the decoder's linear layers are bitsandbytes' Linear4bit (NF4), computing
    in the dtype the training autocasts to (bf16 on a GPU that has it); the output layer stays as it is."""
    import bitsandbytes

    from harness import models
    from harness.config import ModelSpec
    from harness.techniques.finetune import QuantSettings, bnb_config

    if not bf16():
        pytest.skip("this GPU has no bf16")
    model, _ = models.load(
        ModelSpec(id=str(tiny_model_dir)), "cuda", torch.float32, bnb_config(QuantSettings(), "bf16")
    )
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in name}
    assert linears and all(isinstance(m, bitsandbytes.nn.Linear4bit) for m in linears.values()), linears
    assert {m.compute_dtype for m in linears.values()} == {torch.bfloat16}
    assert {m.weight.quant_type for m in linears.values()} == {"nf4"}
    assert models.resolve_dtype(ModelSpec(id=str(tiny_model_dir)), "cuda") == torch.bfloat16  # dtype: auto


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_two_gpu_cell_trains_like_one_gpu(tiny_model_dir, tmp_path, strategy):
    """train.distributed on 2 GPUs (nccl): the same loss per step as one GPU at the same global batch,
    one row, and a GPU per rank (the CPU version: tests/test_distributed.py)."""
    train = "max_steps: 4, learning_rate: 1.0e-3, logging_steps: 1, precision: fp32"
    techniques = (
        f"  - {{name: one, kind: full, train: {{{train}, batch_size: 4}}}}\n"
        f"  - {{name: two, kind: full, train: {{{train}, batch_size: 2, distributed: {{strategy: {strategy}}}}}}}\n"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe(tiny_model_dir, tmp_path / "out", techniques).replace("device: cpu", "device: cuda"))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    rows = {r["technique"]: r for r in results.RunStore.open(only_run_dir(tmp_path / "out")).rows}
    assert rows["two"]["status"] == "ok", rows["two"]["error"]
    assert rows["two"]["train_world_size"] == 2 and len(rows["two"]["rank_peak_memory_bytes"]) == 2
    curve = [h["loss"] for h in rows["two"]["train_curve"]]
    reference = [h["loss"] for h in rows["one"]["train_curve"]]
    assert max(abs(a - b) for a, b in zip(curve, reference)) < 1e-3, (curve, reference)
