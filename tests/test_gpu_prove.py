"""bench/gpu/prove.py, the one-call GPU proof (docs/gpu.md), on the CPU: its step runner (budgets, a step
that runs out of time or fails is recorded with its reason while the others still run), its results file,
and (slow) the whole dry run: the same steps on the CPU with a tiny model."""

import importlib.util
import json
import os
import sys

import pytest
from conftest import REPO


def load_prove():
    spec = importlib.util.spec_from_file_location("prove", REPO / "bench/gpu/prove.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("prove", module)
    spec.loader.exec_module(module)
    return module


def keep_environment(monkeypatch):
    """prove.main sets these for its children: restored after the test."""
    for key in ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONUNBUFFERED"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)


def test_a_step_over_its_budget_is_killed_and_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    """Both steps are given 0.3 s, far less than a Python start with torch: each is killed, recorded as
    timed out with its budget, and the results file (JSON and markdown) holds both."""
    keep_environment(monkeypatch)
    prove = load_prove()
    out = tmp_path / "out"
    argv = ["--dry-run", "--steps", "tests", "plan", "--budget", "tests=0.3", "--budget", "plan=0.3"]
    results = prove.main([*argv, "--out", str(out), "--work", str(tmp_path / "work")])
    steps = results["steps"]
    assert [steps[s]["status"] for s in ("tests", "plan")] == ["timed out", "timed out"]
    assert steps["plan"]["reason"] == "over its budget of 0s" and steps["plan"]["seconds"] < 5
    stored = json.loads((out / "gpu-cpu-dry-run.json").read_text())
    assert stored["steps"].keys() == {"tests", "plan"} and stored["dry_run"]
    text = (out / "gpu-cpu-dry-run.md").read_text()
    assert "| tests | timed out |" in text and "| plan | timed out |" in text and "dry run" in text


def test_the_results_file_shows_mfu_memory_ratios_and_the_plan_against_each_peak():
    """render() on a result of the shape the steps write (figures made up): the lines a reader looks for."""
    prove = load_prove()
    gib = 2**30
    full = {"tokens_per_second": 40000.0, "mfu": 0.41, "peak_bytes": 60 * gib, "train_reserved_peak_bytes": 64 * gib}
    full |= {"train_device_peak_bytes": 66 * gib, "train_energy_wh": 3.2, "batch_size": 8}
    lora = {"tokens_per_second": 50000.0, "peak_bytes": 20 * gib, "batch_size": 8}
    results = {
        "command": "python bench/gpu/prove.py",
        "dry_run": False,
        "started": "2026-12-06 10:00:00 UTC",
        "profile": {"notes": []},
        "environment": {
            "device_name": "NVIDIA H100 80GB HBM3",
            "torch": "2.11.0+cu130",
            "cuda": "13.0",
            "versions": {"trl": "1.16.0"},
            "bitsandbytes_libraries": ["libbitsandbytes_cuda130.so"],
            "bitsandbytes_wanted": "libbitsandbytes_cuda130.so",
            "bitsandbytes_library_matches": True,
        },
        "steps": {
            "tests": {
                "status": "ok",
                "seconds": 90.0,
                "passed": 12,
                "failed": 1,
                "skipped": 2,
                "skip_reasons": [],
                "failures": [{"test": "test_qlora_on_cuda", "message": "AssertionError: x"}],
            },
            "memory": {"status": "failed", "seconds": 3.0, "reason": "exit code 1", "log_tail": "Traceback ..."},
            "bench": {
                "status": "ok",
                "seconds": 200.0,
                "matmul": {"n": 8192, "dtype": "bfloat16", "flops_per_second": 7.9e14},
                "seq_len": 2048,
                "precision": "bf16",
                "batch_size": 8,
                "runs": {
                    "full": full,
                    "lora-1": lora,
                    "plain-1": {"tokens_per_second": 50500.0, "batch_size": 8},
                    "qlora": {"error": "OutOfMemoryError: CUDA out of memory", "batch_size": 8},
                },
                "mfu": 0.41,
                "peak_flops_used": 989e12,
                "share_of_measured_matmul": 0.51,
                "lora_over_full": {"peak_bytes": 0.33},
                "harness_over_plain": 0.99,
            },
            "plan": {
                "status": "ok",
                "seconds": 5.0,
                "big_shape_plan": {"full": 100 * gib},
                "big_shape_batch": 1,
                "big_shape_command": "harness plan ...",
                "lines": [prove.plan_line("bench: full", 57 * gib, full, "train_", allocator_key="peak_bytes")],
            },
        },
    }
    text = prove.render(results)
    assert text.startswith("# GPU proof: NVIDIA H100 80GB HBM3") and "libbitsandbytes_cuda130.so: present" in text
    assert "12 passed, 1 failed, 2 skipped" in text and "`test_qlora_on_cuda`: AssertionError: x" in text
    assert "| memory | failed | 3 | exit code 1 |" in text and "Traceback ..." in text  # a failed step's log tail
    assert "| full | 8 | 40000 | 41.0% | 60.00 GiB | 64.00 GiB | 66.00 GiB | 3.2 Wh |" in text
    assert "41.0% of the dense bf16 peak 989 TFLOP/s" in text and "51.0% of the measured matmul" in text
    assert "lora peak / full peak: peak_bytes 0.33x (torchtune, Llama-3.2-3B: 0.33x)" in text
    assert "harness / plain TRL LoRA tokens/s (medians, A B A B): 0.990" in text
    assert "| qlora | 8 | failed: OutOfMemoryError: CUDA out of memory |" in text
    assert "| bench: full | 57.00 GiB | 60.00 GiB | 64.00 GiB | 66.00 GiB | 0.95 | 0.89 | 0.86 |" in text
    assert prove.card_slug(results["environment"], dry_run=False) == "h100-80gb-hbm3"


def test_the_dry_run_of_the_cheap_steps_writes_the_results_file(tmp_path, monkeypatch):
    """The one call's plumbing in the default suite (the whole dry run is slow, below): the GPU tests step
    (all skipped on a CPU) and the plan step run as the device would run them, into one results file."""
    keep_environment(monkeypatch)
    prove = load_prove()
    results = prove.main(["--dry-run", "--steps", "tests", "plan", "--out", str(tmp_path / "out")])
    steps = results["steps"]
    assert {name: step["status"] for name, step in steps.items()} == {"tests": "ok", "plan": "ok"}, steps
    assert steps["tests"]["failed"] == 0 and steps["tests"]["skipped"] > 0
    assert set(steps["plan"]["big_shape_plan"]) == {"full", "lora", "qlora"}  # no measured peaks without them
    text = (tmp_path / "out" / "gpu-cpu-dry-run.md").read_text()
    assert "| plan | ok |" in text and "Llama-3.1-8B shape, planned at batch" in text


@pytest.mark.slow
def test_the_whole_dry_run_runs_every_step_on_the_cpu(tmp_path, monkeypatch):
    """Every step end to end on the CPU (a few minutes): the GPU tests all skipped, the memory step's rows
    ok without GPU figures, the bench's runs measured (no MFU off CUDA), the plan beside each peak."""
    keep_environment(monkeypatch)
    prove = load_prove()
    results = prove.main(["--dry-run", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    steps = results["steps"]
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys(prove.STEPS, "ok"), steps
    assert steps["tests"]["passed"] == steps["tests"]["failed"] == 0 and steps["tests"]["skipped"] > 0
    assert {r["technique"]: r["status"] for r in steps["memory"]["rows"]} == dict.fromkeys(
        ("zero", "full", "lora", "qlora"), "ok"
    )
    assert all(r.get("train_device_peak_bytes") is None for r in steps["memory"]["rows"])
    runs = steps["bench"]["runs"]
    assert all("error" not in run for run in runs.values()), runs
    assert runs["full"]["tokens_per_second"] > 0 and runs["full"]["mfu"] is None
    assert steps["bench"]["harness_over_plain"] > 0 and steps["bench"]["lora_over_full"]["peak_bytes"] > 0
    labels = [line["label"] for line in steps["plan"]["lines"]]
    assert "memory step: full" in labels and "bench: full" in labels and "bench: lora-8b" in labels
    assert (tmp_path / "out" / "gpu-cpu-dry-run.md").is_file()


def test_what_the_carried_wheels_need_of_the_image_is_checked_against_the_installed_versions(tmp_path):
    manifest = tmp_path / "image-requirements.txt"
    manifest.write_text("packaging>=1.0  # trl\npackaging<1  # old-thing\nno-such-package-here>=1  # datasets\n")
    assert load_prove().unmet_requirements(manifest) == [
        f"old-thing needs packaging<1, the machine has {__import__('packaging').__version__}",
        "datasets needs no-such-package-here>=1, the machine has none",
    ]
    assert load_prove().unmet_requirements(tmp_path / "absent.txt") == []
