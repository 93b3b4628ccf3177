"""The cluster executors on the tiny model: the same study gives the same rows on the local executor,
on a real Ray cluster started here on loopback, and through submitit's local stand-in for Slurm; a Ray
worker killed mid-cell is retried without losing or redoing finished cells; clear errors; and an
executor added by a plugin file alone (one file + one registration, harness/executors/__init__.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe, tiny_study

from harness import executors
from harness.config import load_recipe, stored_recipe
from harness.results import RunStore
from harness.yamlconfig import ConfigError

BIN = Path(sys.executable).parent
STUDY = """\
  - {name: zero, kind: prompt}
  - {name: few, kind: prompt, shots: 2}
  - name: lora
    kind: lora
    train: {max_steps: 2, batch_size: 4, limit: 16}
    lora: {rank: 2, alpha: 4}
    search: {space: {train.learning_rate: [1.0e-3, 1.0e-2]}, objective: validation_loss}
  - {name: ddp, kind: full, train: {max_steps: 2, batch_size: 2, limit: 16, distributed: {processes: 2}}}
"""
EXTRA = """\
search_budget: 2
eval:
  validation: {size: 10}
  heldout: {limit: 8, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 100}
executor: {cpus_per_cell: 1}   # the same torch threads on every executor, so the same floating point
"""


def study_recipe(write, model, out):
    return write("study.yaml", tiny_study(model, out, STUDY, EXTRA))


def figures(run_dir: Path) -> dict:
    """What must not depend on the executor: rows, predictions, and every trial's values and objective."""
    store = RunStore.open(run_dir)
    rows = {r["technique"]: (r["status"], r["score"], r.get("chosen"), r.get("validation_loss")) for r in store.rows}
    answers = {t: [(p["seed"], p["id"], p["predicted"]) for p in store.predictions(t)] for t in rows}
    trials = sorted(
        (json.dumps(c["params"], sort_keys=True), c["objective"]) for c in store.cells if c["trial"] is not None
    )
    return {"rows": rows, "answers": answers, "trials": trials}


def same_figures(a: dict, b: dict) -> None:
    assert a["answers"] == b["answers"]
    assert a["rows"].keys() == b["rows"].keys()
    for name, (status, score, chosen, loss) in a["rows"].items():
        other = b["rows"][name]
        assert (status, score, chosen) == other[:3], name
        assert loss == (None if other[3] is None else pytest.approx(other[3], rel=1e-5)), name
    assert [t[0] for t in a["trials"]] == [t[0] for t in b["trials"]]
    assert [t[1] for t in a["trials"]] == pytest.approx([t[1] for t in b["trials"]], rel=1e-5)


@pytest.fixture(scope="module")
def local_study(tiny_model_dir, tmp_path_factory):
    """The reference: the study on the local executor."""
    folder = tmp_path_factory.mktemp("local")
    recipe = folder / "study.yaml"
    recipe.write_text(tiny_study(tiny_model_dir, folder / "out", STUDY, EXTRA))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    return figures(only_run_dir(folder / "out"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A real Ray cluster on loopback (head node only, 2 CPUs), started by `ray start` and stopped after."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # a short path: Ray's sockets live there
    # Ray's token auth: a token left in ~/.ray by an earlier `ray.init()` would make the drivers here send
    # one that this cluster does not expect; the cluster and its drivers (this process too) agree on none
    auth = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    before = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    subprocess.run(
        [
            BIN / "ray",
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
        ],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=120,
    )
    yield f"127.0.0.1:{port}"
    subprocess.run([BIN / "ray", "stop", "--force"], capture_output=True, env=os.environ.copy(), timeout=120)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ray_runs_the_study_with_the_same_rows_as_local_through_a_lost_worker(
    write, tiny_model_dir, tmp_path, local_study, ray_address
):
    # One Ray run carries both checks (each Ray job is a fresh process, so a second run would double the
    # cost): the study's rows equal the local executor's, and a worker killed mid-cell is retried without
    # redoing what it finished. zero and few share one job; its worker is held at few, after zero finished.
    recipe = study_recipe(write, tiny_model_dir, tmp_path / "out")
    env = os.environ | {"HARNESS_FAULT_HOLD_CELL": "few.seed-0"}
    command = [BIN / "harness", "run", recipe, "executor.kind=ray", f"executor.address={ray_address}"]
    driver = subprocess.Popen(
        [*command, "executor.max_retries=1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        pid = held_worker_pid(tmp_path / "out", "few.seed-0", driver)
        run_dir = only_run_dir(tmp_path / "out")
        zero_file = run_dir / "cells" / "zero.seed-0.json"
        finished_before = zero_file.stat().st_mtime_ns
        os.kill(pid, signal.SIGKILL)  # the Ray worker process running the job: a lost worker, as when a node dies
        time.sleep(1)
        (run_dir / "faults").mkdir(exist_ok=True)
        (run_dir / "faults" / "few.seed-0.release").touch()  # the retry may go on
        output = driver.communicate(timeout=300)[0].decode()
    finally:
        driver.kill()
    assert driver.returncode == 0, output
    same_figures(figures(run_dir), local_study)
    cells = RunStore.open(run_dir).cells
    assert {c["executor"] for c in cells} == {"ray"} and all(c["node"] for c in cells)
    assert "ray executor" in " ".join(output.split())
    assert zero_file.stat().st_mtime_ns == finished_before  # the retry did not redo the finished cell
    (log,) = (run_dir / "logs").glob("zero.seed-0*.log")
    text = log.read_text()
    assert text.count("[cell] few.seed-0") == 2 and text.count("[cell] zero.seed-0") == 1


def held_worker_pid(out: Path, cell: str, driver) -> int:
    """The pid of the process holding at `cell` (see worker.HOLD_ENV), from its job's log."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for log in out.glob("tiny/*/logs/*.log"):
            text = log.read_text(errors="replace")
            match = re.search(rf"\[cell\] {re.escape(cell)} \(pid (\d+)", text)
            if match and "[fault] holding" in text:
                return int(match.group(1))
        assert driver.poll() is None, driver.communicate()[0].decode()
        time.sleep(0.2)
    raise AssertionError(f"no process held at {cell}")


def test_slurm_through_submitit_runs_the_study_with_the_same_rows_as_local(
    write, tiny_model_dir, tmp_path, local_study
):
    recipe = study_recipe(write, tiny_model_dir, tmp_path / "out")
    result = run_cli("run", recipe, "executor.kind=slurm", "executor.cluster=local", "executor.timeout_min=10")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    same_figures(figures(run_dir), local_study)
    assert {c["executor"] for c in RunStore.open(run_dir).cells} == {"slurm"}
    assert list((run_dir / "slurm").iterdir())  # submitit's own files stay inside the run folder


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["executor.kind=ray", "executor.address=127.0.0.1:9"],
            "cannot reach a Ray cluster at executor.address='127.0.0.1:9'",
        ),
        (["executor.kind=slurm", "executor.slurm={qso: high}"], "unknown sbatch setting 'qso' (did you mean 'qos'?)"),
        (["executor.gpus_per_cell={lroa: 1}"], "'lroa' is neither a technique name nor a kind"),
    ],
)
def test_executor_mistakes_are_clear_errors_before_anything_runs(write, tiny_model_dir, tmp_path, overrides, message):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt}\n"))
    result = run_cli("run", recipe, *overrides)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()  # no run folder for a run that could not start


def test_a_cell_asking_for_more_gpus_than_any_ray_node_has_is_refused(write, tiny_model_dir, tmp_path, ray_address):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt}\n"))
    result = run_cli("run", recipe, "executor.kind=ray", f"executor.address={ray_address}", "executor.gpus_per_cell=2")
    assert result.exit_code == 2
    assert "technique 'zero' asks for 2 GPU(s) per cell" in " ".join(result.output.split())


@pytest.mark.parametrize("kind, library", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_cluster_library_names_the_extra_to_install(
    write, tiny_model_dir, tmp_path, monkeypatch, kind, library
):
    monkeypatch.setitem(sys.modules, library, None)  # as if it were not installed
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt}\n"))
    result = run_cli("run", recipe, f"executor.kind={kind}")
    assert result.exit_code == 2 and f"pip install 'adapt-harness[{kind}]'" in "".join(result.output.split("\n"))


# An executor written as a user would, in a file of its own: the local executor, noting each job it is
# given in a file of the recipe's choosing. Nothing else in the harness is edited to add it.
NOTING_EXECUTOR = """
from typing import Literal

from harness import executors
from harness.executors.base import ExecutorSettings
from harness.executors.local import LocalExecutor, local_device


class NotingSettings(ExecutorSettings):
    kind: Literal["noting"] = "noting"
    note: str  # the file each submitted job's id is appended to


class NotingExecutor(LocalExecutor):
    kind = "noting"

    def __init__(self, settings, device, techniques, jobs):
        super().__init__(jobs or 1, local_device(device), threads=settings.cpus_per_cell)
        self.note = settings.note

    def submit(self, job):
        with open(self.note, "a") as out:
            out.write(job.id + "\\n")
        return super().submit(job)


executors.register(executors.ExecutorKind("noting", NotingSettings, NotingExecutor, "local, noting each job"))
"""


@pytest.fixture
def noting_plugin(write):
    path = write("noting_executor.py", NOTING_EXECUTOR)
    yield path
    # the registry is process-wide: the next test loads the plugin afresh, and others never see it
    executors.EXECUTORS._items.pop("noting", None)
    sys.modules.pop("harness_plugin_noting_executor", None)


def test_an_executor_added_by_a_plugin_file_alone_runs_a_recipe(noting_plugin, write, tiny_model_dir, tmp_path):
    note = tmp_path / "jobs.txt"
    extra = f"plugins: [{noting_plugin}]\nexecutor: {{kind: noting, note: {note}, cpus_per_cell: 1}}\n"
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt}\n", extra))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    assert "noting executor" in " ".join(result.output.split())
    run_dir = only_run_dir(tmp_path / "out")
    assert {c["executor"] for c in RunStore.open(run_dir).cells} == {"noting"}
    assert {p.stem for p in (run_dir / "logs").glob("*.log")} == set(note.read_text().split())


@pytest.mark.parametrize(
    "block, line, message",
    [
        ("  kind: ray\n  partition: gpu\n", 8, "unknown key 'executor.partition'; known keys: address, "),
        ("  kind: slurm\n  adress: auto\n", 8, "unknown key 'executor.adress'; known keys: account, "),
        ("  timeout_min: 5\n", 7, "unknown key 'executor.timeout_min'; known keys: cpus_per_cell, "),  # local
        ("  kind: rya\n", 7, "executor.kind: unknown value 'rya' (did you mean 'ray'?); known: local, ray, slurm"),
        ("  kind: noting\n  noet: x\n", 8, "unknown key 'executor.noet' (did you mean 'executor.note'?)"),
        ("  kind: noting\n", 6, "missing required key 'executor.note'"),
    ],
)
def test_each_executor_takes_its_own_keys(noting_plugin, write, block, line, message):
    text = f"name: x\ntask: ticket-routing\nplugins: [{noting_plugin}]\ntechniques:\n  - {{name: t, kind: prompt}}\n"
    path = write("r.yaml", text + "executor:\n" + block)
    assert f"{path}:{line}: {message}" in str(pytest.raises(ConfigError, load_recipe, path).value)


def test_a_run_stored_before_executors_had_settings_of_their_own_still_resumes():
    # how every run stored its executor then: each executor's keys, whatever the kind
    old = {"kind": "local", "address": "auto", "gpus_per_cell": None, "cpus_per_cell": 1, "max_retries": 2}
    old |= {"storage": None, "partition": None, "account": None, "timeout_min": 240, "mem_gb": None, "slurm": {}}
    data = {"name": "x", "task": "ticket-routing", "techniques": [{"name": "t", "kind": "prompt"}]}
    recipe = stored_recipe(data | {"executor": old | {"cluster": "slurm"}})
    assert recipe.executor == executors.get("local").settings(cpus_per_cell=1)


def test_the_descriptor_is_checked_when_an_executor_registers():
    from harness.executors.ray_cluster import RaySettings

    with pytest.raises(TypeError, match="`kind: Literal\\['raylet'\\]`"):
        executors.ExecutorKind("raylet", RaySettings, lambda *args: None)
    with pytest.raises(ValueError, match="registered twice"):
        executors.register(executors.get("ray"))
