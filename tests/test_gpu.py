"""On CUDA: `harness run` with full fine-tuning and QLoRA on the tiny model, end to end (run with -m gpu).

Without torch or a CUDA device every test here is skipped; the default selection (`-m 'not slow and not
gpu'` in pyproject.toml) deselects them anyway."""

import pytest

torch = pytest.importorskip("torch")

from conftest import only_run_dir, run_cli, tiny_recipe  # noqa: E402

from harness import results  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TRAINED = """\
  - {name: full, kind: full, train: {max_steps: 3, batch_size: 4}}
  - {name: qlora, kind: qlora, train: {max_steps: 3, batch_size: 4}, lora: {rank: 2, alpha: 4}}
"""


@pytest.fixture(scope="module")
def cuda_rows(tiny_model_dir, tmp_path_factory):
    """One run of both techniques on the GPU; its rows by technique."""
    folder = tmp_path_factory.mktemp("gpu")
    recipe = folder / "r.yaml"
    recipe.write_text(tiny_recipe(tiny_model_dir, folder / "out", TRAINED).replace("device: cpu", "device: cuda"))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(folder / "out")
    return run_dir, {r["technique"]: r for r in results.RunStore.open(run_dir).rows}


def bf16() -> bool:
    return torch.cuda.is_bf16_supported()


def check_cuda_row(row: dict) -> None:
    assert row["status"] == "ok", row["error"]
    assert row["device"].startswith("cuda"), row["device"]
    assert "cuda allocator" in row["peak_memory_method"], row["peak_memory_method"]
    assert row["peak_memory_bytes"] > 0 and row["n_eval"] == 12
    assert row["train_steps"] == 3 and row["train_precision"] == ("bf16" if bf16() else "fp16")


def test_full_fine_tuning_on_cuda(cuda_rows):
    run_dir, rows = cuda_rows
    row = rows["full"]
    check_cuda_row(row)
    assert row["dtype"] == ("bfloat16" if bf16() else "float16")  # evaluated as the base model is (dtype auto)
    assert row["trainable_params"] == row["total_params"]
    assert (run_dir / "artifacts" / "full.seed-0" / "model.safetensors").is_file()


def test_qlora_on_cuda(cuda_rows):
    run_dir, rows = cuda_rows
    row = rows["qlora"]
    check_cuda_row(row)
    assert row["dtype"] == "4bit-nf4"
    assert 0 < row["trainable_params"] < 0.2 * row["total_params"]
    assert (run_dir / "artifacts" / "qlora.seed-0" / "adapter_config.json").is_file()


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
