"""One training cell as several processes (train.distributed; harness/distributed.py), on the CPU with
torch.distributed's gloo backend and 2 ranks of the tiny model. DeepSpeed is not installed here (its
CPU path needs its compiled ops): its settings are checked, its training is GPU-only (tests/test_gpu.py)."""

import json
import os
import time

import psutil
import pytest
import torch
from conftest import only_run_dir, run_cli, tiny_recipe
from safetensors.torch import load_file

from harness import distributed

TRAIN = "max_steps: 4, learning_rate: 1.0e-3, logging_steps: 1"
RANKS = "batch_size: 2, distributed: {{strategy: {}, processes: 2}}"
# the same global batch: one process x 4 examples, or 2 ranks x 2
ONE_AND_TWO_RANKS = (
    f"  - {{name: one, kind: full, train: {{{TRAIN}, batch_size: 4}}}}\n"
    f"  - {{name: ddp, kind: full, train: {{{TRAIN}, {RANKS.format('ddp')}}}}}\n"
    f"  - {{name: fsdp, kind: full, train: {{{TRAIN}, {RANKS.format('fsdp')}}}}}\n"
)


@pytest.fixture(scope="module")
def one_and_two_ranks(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    recipe = out / "r.yaml"
    recipe.write_text(tiny_recipe(tiny_model_dir, out / "runs", ONE_AND_TWO_RANKS))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out / "runs")
    rows = {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    return run_dir, rows


def weights(run_dir, technique):
    return load_file(run_dir / "artifacts" / f"{technique}.seed-0" / "model.safetensors")


def test_ddp_and_fsdp_train_the_same_model_as_one_process(one_and_two_ranks):
    run_dir, rows = one_and_two_ranks
    one = rows["one"]
    for name in ("ddp", "fsdp"):
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert row["train_world_size"] == 2 and row["train_strategy"] == name
        # the same loss at every step (gloo all-reduce sums in a different order: float noise only)
        curve, reference = [h["loss"] for h in row["train_curve"]], [h["loss"] for h in one["train_curve"]]
        assert len(curve) == len(reference) == 4
        assert max(abs(a - b) for a, b in zip(curve, reference)) < 1e-4, (curve, reference)
        assert row["train_tokens"] == one["train_tokens"]  # tokens over all ranks
        # one artifact: the gathered full state dict, equal to one process's weights
        trained, single = weights(run_dir, name), weights(run_dir, "one")
        assert trained.keys() == single.keys()
        assert max((trained[k] - single[k]).abs().max().item() for k in single) < 1e-4
        # one evaluation, by the cell's process: the same answers as one process gave
        answers = [json.loads(line)["predicted"] for line in (run_dir / "predictions" / f"{name}.jsonl").open()]
        reference_answers = [json.loads(line)["predicted"] for line in (run_dir / "predictions" / "one.jsonl").open()]
        assert answers == reference_answers and row["n_eval"] == one["n_eval"] == 12
        assert len(row["rank_peak_memory_bytes"]) == 2
        assert row["train_peak_memory_bytes"] == max(row["rank_peak_memory_bytes"])
        assert "the largest of 2 ranks" in row["peak_memory_method"]
    cells = json.loads((run_dir / "results.json").read_text())["cells"]
    assert sorted(c["technique"] for c in cells) == ["ddp", "fsdp", "one"]  # each still one cell


def test_fsdp_holds_about_half_of_the_parameters_and_optimizer_state_on_each_rank(one_and_two_ranks):
    _, rows = one_and_two_ranks
    ddp, fsdp = rows["ddp"]["rank_state_bytes"], rows["fsdp"]["rank_state_bytes"]
    assert ddp[0] == ddp[1]  # DDP replicates
    ratio = max(fsdp) / ddp[0]
    assert 0.4 < ratio < 0.6, (fsdp, ddp)  # full shard over 2 ranks: half, up to uneven shards


@pytest.mark.parametrize(
    "fault, ranks, executor, reason",
    [
        # rank 1 runs on the second of 2 nodes (one Slurm task each, submitit's local stand-in): node 0's
        # rank sees a lost peer, and the row says what node 1 saw
        (distributed.FAULT_ENV, "{processes: 1, nodes: 2}", ["executor.kind=slurm", "executor.cluster=local"],
         "node 1: rank 1 was killed by SIGKILL"),
        # rank 1 sleeps through the next all-reduce: no rank moves for timeout_seconds, and both end
        (distributed.HANG_ENV, "{processes: 2, timeout_seconds: 10}", [], "rank 1 stopped outside any collective"),
    ],
)  # fmt: skip
def test_a_rank_killed_or_hung_mid_training_fails_its_cell_alone_and_leaves_no_process(
    tiny_model_dir, tmp_path, monkeypatch, fault, ranks, executor, reason
):
    pids = tmp_path / "rank-pids"
    monkeypatch.setenv(fault, "1")
    monkeypatch.setenv(distributed.PIDS_ENV, str(pids))
    techniques = (
        "  - {name: zero, kind: prompt}\n"
        f"  - {{name: ddp, kind: full, train: {{max_steps: 20, batch_size: 2, distributed: {ranks}}}}}\n"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe(tiny_model_dir, tmp_path / "runs", techniques))
    start = time.monotonic()
    result = run_cli("run", recipe, *executor)
    assert time.monotonic() - start < 120
    assert result.exit_code == 1 and "some techniques failed" in result.output
    rows = {
        r["technique"]: r for r in json.loads((only_run_dir(tmp_path / "runs") / "results.json").read_text())["rows"]
    }
    assert rows["zero"]["status"] == "ok"
    assert rows["ddp"]["status"] == "failed"
    assert reason in rows["ddp"]["error"], rows["ddp"]["error"]
    ranks = [int(line) for line in pids.read_text().split()]
    assert len(ranks) == 2
    assert not [pid for pid in ranks if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_settings_a_cell_cannot_run_are_refused_before_it_starts(tiny_model_dir, tmp_path):
    def validate(technique: str):
        path = tmp_path / "r.yaml"
        path.write_text(tiny_recipe(tiny_model_dir, tmp_path / "runs", technique))
        return run_cli("validate", path)

    qlora = validate("  - {name: q, kind: qlora, train: {distributed: {strategy: fsdp}}}\n")
    assert qlora.exit_code != 0 and "r.yaml:9:" in qlora.output and "use strategy: ddp" in qlora.output
    zero = validate("  - {name: f, kind: full, train: {distributed: {strategy: ddp, zero_stage: 3}}}\n")
    assert "zero_stage is a deepspeed setting" in zero.output
    nodes = validate("  - {name: f, kind: full, train: {distributed: {strategy: fsdp, processes: 8, nodes: 2}}}\n")
    assert "a cell across machines needs a cluster executor" in nodes.output
    if not torch.cuda.is_available():
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            speed = validate("  - {name: f, kind: full, train: {distributed: {strategy: deepspeed}}}\n")
            assert "pip install deepspeed" in speed.output
    assert os.environ.get(distributed.FAULT_ENV) is None


def test_gpus_per_cell_and_processes_cannot_disagree(tiny_model_dir, tmp_path):
    path = tmp_path / "r.yaml"
    technique = "  - {name: f, kind: full, train: {distributed: {strategy: ddp, processes: 4}}}\n"
    path.write_text(tiny_recipe(tiny_model_dir, tmp_path / "runs", technique, "executor: {gpus_per_cell: {f: 2}}"))
    result = run_cli("validate", path)
    assert result.exit_code != 0 and "gives technique 'f' 2 GPU(s) per cell, but its" in result.output


def test_the_local_executor_gives_a_multi_process_cell_a_gpu_per_rank(monkeypatch):
    from harness.executors.base import ExecutorSettings, technique_gpus
    from harness.executors.local import LocalExecutor

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    executor = LocalExecutor(jobs=2, device="cuda", gpus=lambda job: 2)
    first = executor._take(2)
    assert first == ["0", "1"] and executor._env(first)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert executor._take(4) == []  # more than the machine has: the job fails at once instead of waiting
    executor._give(first)
    assert sorted(executor._take(3)) == ["0", "1", "2"]

    class Spec:
        kind, name = "full", "f"
        train = type("Train", (), {"distributed": type("D", (), {"world_size": 4})()})()

    settings = ExecutorSettings(kind="local")
    assert technique_gpus(settings, Spec(), "cuda") == 4 and technique_gpus(settings, Spec(), "cpu") == 0
