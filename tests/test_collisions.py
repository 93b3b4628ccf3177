"""Ids are unique by construction, and a collision is an error before anything runs: two tasks never share
a run sub-folder, two training-set sizes never train on the same examples, two runs started in the same
second never share a run folder. (Each of these once passed silently: one task's finished cells were
reported as another's, the n=0 cell trained on all the data in place of the `all` cell, every cell ran twice.)"""

import json
import shutil
import threading
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, only_run_dir, run_cli, tiny_recipe

from harness import pipeline, planning
from harness.config import load_recipe

PROMPT = "  - {name: zero, kind: prompt}\n"
LORA = "  - {name: lora, kind: lora, train: {max_steps: 1, batch_size: 4, limit: 8}, lora: {rank: 2, alpha: 4}}\n"


def task_copy(folder: Path, name: str | None = None) -> Path:
    """The bundled ticket-routing task copied to `folder`, renamed (its task.yaml `name:`) when asked."""
    shutil.copytree(REPO / "tasks" / "ticket-routing", folder)
    if name is not None:
        spec = folder / "task.yaml"
        spec.write_text(spec.read_text().replace("name: ticket-routing", f"name: {name}", 1))
    return folder


def recipe_with_tasks(write, tmp_path, tasks: str, techniques: str = PROMPT, extra: str = "") -> Path:
    text = tiny_recipe(tmp_path / "model-unused", tmp_path / "out", techniques, extra).replace(
        "task: ticket-routing", f"task: {tasks}"
    )
    return write("r.yaml", text.replace(f"model: {tmp_path / 'model-unused'}", "model: tiny-unused"))


def validate_error(recipe: Path) -> str:
    result = run_cli("validate", recipe)
    assert result.exit_code != 0, result.output
    return " ".join(result.output.split())  # one line: the error wraps in a narrow terminal


@pytest.fixture
def no_model_check(monkeypatch):
    """validate without resolving the recipe's model (these recipes are about tasks and sizes)."""
    from harness import preflight

    monkeypatch.setattr(preflight, "check_resolvable", lambda model_id: None)


def test_two_tasks_of_one_name_are_an_error_naming_the_recipe_and_the_fix(write, tmp_path, no_model_check):
    task_copy(tmp_path / "a" / "mini"), task_copy(tmp_path / "b" / "mini")
    recipe = recipe_with_tasks(write, tmp_path, "[a/mini, b/mini]")
    error = validate_error(recipe)
    assert str(recipe) in error and "'a/mini' and 'b/mini' are both named 'ticket-routing'" in error.replace(
        str(tmp_path) + "/", ""
    )
    assert "rename one of them in its task.yaml" in error


@pytest.mark.parametrize(
    "tasks",
    ["[a/mini, a/mini/task.yaml]", "[a/mini, link-to-mini]", f"[ticket-routing, {REPO / 'tasks/ticket-routing'}]"],
)
def test_one_task_written_two_ways_is_an_error(write, tmp_path, no_model_check, tasks):
    """Its task file, a link to its folder, a bundled task's path beside its name: one task, one sub-folder."""
    task_copy(tmp_path / "a" / "mini")
    (tmp_path / "link-to-mini").symlink_to(tmp_path / "a" / "mini")
    error = validate_error(recipe_with_tasks(write, tmp_path, tasks))
    assert "are the same task folder" in error and "list it once" in error


def test_tasks_in_folders_of_one_name_run_apart(write, tmp_path, tiny_model_dir):
    """Different tasks whose folders share a name each get their own sub-folder, named after the task,
    and each sub-run holds that task's results (before: one folder, the second task's cells 'kept')."""
    task_copy(tmp_path / "a" / "mini", "alpha"), task_copy(tmp_path / "b" / "mini", "beta")
    out = tmp_path / "out"
    text = tiny_recipe(tiny_model_dir, out, PROMPT).replace("task: ticket-routing", "task: [a/mini, b/mini]")
    result = run_cli("run", write("r.yaml", text))
    assert result.exit_code == 0, result.output
    assert "kept" not in result.output
    run_dir = only_run_dir(out)
    for name, ref in (("alpha", "a/mini"), ("beta", "b/mini")):
        meta = json.loads((run_dir / name / "results.json").read_text())["meta"]
        assert meta["task"]["name"] == name and meta["task_ref"] == str(tmp_path / ref)


def test_a_run_folder_of_another_task_is_not_resumed_as_this_one(write, tmp_path, tiny_model_dir):
    task_copy(tmp_path / "alpha", "alpha"), task_copy(tmp_path / "beta", "beta")
    out = tmp_path / "out"
    first = tiny_recipe(tiny_model_dir, out, PROMPT).replace("task: ticket-routing", "task: alpha")
    assert run_cli("run", write("a.yaml", first)).exit_code == 0
    run_dir = only_run_dir(out)
    recipe = load_recipe(write("b.yaml", first.replace("task: alpha", "task: beta")))
    with pytest.raises(Exception, match="holds the results of task 'alpha', not of 'beta'"):
        pipeline.run(recipe, run_dir)


def test_a_training_set_size_of_zero_is_an_error(write, tmp_path, no_model_check):
    error = validate_error(recipe_with_tasks(write, tmp_path, "ticket-routing", LORA, "train_sizes: [0, all]"))
    assert "train_sizes" in error and "greater than or equal to 1" in error


@pytest.mark.parametrize(
    ("sizes", "repeated"),
    [("[4, 8, all]", "8 and all"), ("[4, 100000, all]", "100000 and all"), ("[9, 10]", "9 and 10")],
)
def test_sizes_that_train_on_the_same_examples_are_an_error(write, tmp_path, no_model_check, sizes, repeated):
    """lora's train.limit is 8: 8, 9, 10 and `all` all train it on the same 8 examples."""
    recipe = recipe_with_tasks(write, tmp_path, "ticket-routing", LORA, f"train_sizes: {sizes}")
    error = validate_error(recipe)
    assert str(recipe) in error and f"train_sizes: {repeated} both train technique 'lora' on the same 8" in error


def test_cell_ids_tell_every_training_set_size_apart():
    ids = {planning.Cell("lora", 0, train_size=size).id for size in (None, 0, 1, 8)}
    assert len(ids) == 4


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch, write):
    """Eight threads ask for a run folder at once, all in one second: eight folders, each created."""

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(pipeline, "datetime", FrozenClock)
    text = f"name: r\ntask: ticket-routing\noutput_dir: {tmp_path}\ntechniques:\n{PROMPT}"
    recipe = load_recipe(write("r.yaml", text))
    start, folders = threading.Barrier(8), []

    def ask() -> None:
        start.wait()
        folders.append(pipeline.new_run_dir(recipe))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 8 and all(folder.is_dir() for folder in folders)
    assert sorted(f.name for f in folders)[:2] == ["20260102-030405", "20260102-030405-1"]


def test_a_multi_task_run_from_before_keeps_its_folders_named_after_the_task_path(tmp_path):
    """Before tasks were keyed by name, a task's sub-folder was its folder's name: a resumed run keeps it."""
    from harness.results import RunStore

    legacy = tmp_path / "run" / "mini"
    RunStore(legacy, {"task_ref": "a/mini", "task": {"name": "alpha"}}).save()
    assert pipeline.task_run_dir(tmp_path / "run", "a/mini", "alpha") == legacy
    assert pipeline.task_run_dir(tmp_path / "run", "b/mini", "beta") == tmp_path / "run" / "beta"
