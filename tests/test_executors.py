"""The executors on the tiny model: the same study gives the same rows through submitit's local
stand-in for Slurm as on the local executor (Ray: tests/test_executors_ray.py); clear errors; and an
executor added by a plugin file alone (one file + one registration, harness/executors/__init__.py)."""

import sys

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe
from executor_study import across_nodes, figures, same_figures, study_recipe

from harness import executors
from harness.config import load_recipe, stored_recipe
from harness.results import RunStore
from harness.yamlconfig import ConfigError


@pytest.mark.parametrize("only", [("zero", "few", "ddp"), pytest.param((), marks=pytest.mark.slow, id="whole-study")])
def test_slurm_through_submitit_runs_the_study_with_the_same_rows_as_local(
    write, tiny_model_dir, tmp_path, local_study, only
):
    # its 2-rank cell runs as one Slurm job of 2 tasks, one per "node" (submitit's local stand-in runs
    # them on this machine), each forking one rank: the same 2 ranks as the local executor's 2 processes.
    # In the default suite the prompt techniques and the 2-node cell only (each cluster job is a fresh
    # process that imports torch); the whole study, search trials included, with -m slow
    recipe = study_recipe(write, tiny_model_dir, tmp_path / "out", across_nodes=True, only=only)
    result = run_cli("run", recipe, "executor.kind=slurm", "executor.cluster=local", "executor.timeout_min=10")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    same_figures(figures(run_dir), local_study)
    assert {c["executor"] for c in RunStore.open(run_dir).cells} == {"slurm"}
    assert list((run_dir / "slurm").iterdir())  # submitit's own files stay inside the run folder
    across_nodes(run_dir)


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
