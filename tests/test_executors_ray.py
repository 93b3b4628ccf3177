"""The Ray executor on a real cluster started here on loopback: the study gives the same rows as on the
local executor, a worker killed mid-cell is retried without losing or redoing finished cells, and a cell
that asks for more than any node has is refused (tests/executor_study.py holds the study)."""

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe
from executor_study import BIN, across_nodes, figures, free_port, same_figures, study_recipe

from harness.results import RunStore


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


@pytest.mark.parametrize(
    "only",
    [
        # the default suite: the prompt techniques and the 2-node cell (each Ray job is a fresh process that
        # imports torch: the search's three training jobs would add a third to the suite's longest test)
        ("zero", "few", "ddp"),
        pytest.param((), marks=pytest.mark.slow, id="whole-study"),  # the search's trials through Ray too
    ],
)
def test_ray_runs_the_study_with_the_same_rows_as_local_through_a_lost_worker(
    write, tiny_model_dir, tmp_path, local_study, ray_address, only
):
    # One Ray run carries both checks (each Ray job is a fresh process, so a second run would double the
    # cost): the study's rows equal the local executor's, and a worker killed mid-cell is retried without
    # redoing what it finished. zero and few share one job; its worker is held at few, after zero finished.
    recipe = study_recipe(write, tiny_model_dir, tmp_path / "out", across_nodes=True, only=only)  # ddp on 2 nodes
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
    across_nodes(run_dir)


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


def test_a_cell_asking_for_more_than_the_ray_cluster_has_is_refused(write, tiny_model_dir, tmp_path, ray_address):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", "  - {name: zero, kind: prompt}\n"))
    result = run_cli("run", recipe, "executor.kind=ray", f"executor.address={ray_address}", "executor.gpus_per_cell=2")
    assert result.exit_code == 2
    assert "technique 'zero' asks for 2 GPU(s) per node" in " ".join(result.output.split())
    # three nodes of one CPU each, on a cluster of 2 CPUs: its placement group would wait forever
    across = "  - {name: f, kind: full, train: {distributed: {processes: 1, nodes: 3}}}\n"
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", across))
    result = run_cli("run", recipe, "executor.kind=ray", f"executor.address={ray_address}", "executor.cpus_per_cell=1")
    assert result.exit_code == 2
    assert "trains across 3 nodes of 0 GPU(s) and 1 CPU(s) each, but the Ray cluster" in " ".join(result.output.split())
