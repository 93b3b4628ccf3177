"""Tasks read with the `datasets` library (harness/datasources.py), offline, on datasets built here: a folder
of parquet files shaped like a hub repo (a configuration, two splits), the same repo in the datasets cache
under a hub id, and save_to_disk's output."""

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli

from harness.tasks import load_task
from harness.yamlconfig import ConfigError

LABELS = ["billing", "shipping"]
README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*.parquet
  - split: test
    path: main/test-*.parquet
---
"""


def hub_repo(folder: Path) -> Path:
    """A dataset repository as the hub lays one out: config `main`, splits train (10 rows) and test (6)."""
    import pandas as pd

    (folder / "main").mkdir(parents=True)
    for split, n in (("train", 10), ("test", 6)):
        pd.DataFrame(
            {"message": [f"{split} message {i} about my {LABELS[i % 2]}" for i in range(n)], "team": LABELS * (n // 2)}
        ).to_parquet(folder / "main" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(README)
    return folder


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """A datasets cache holding hub_repo's data under the id acme/tickets at commit 0123abcd4567, as a load
    while online would leave it (<cache>/acme___tickets/main/0.0.0/<commit>/)."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

    root = tmp_path_factory.mktemp("hub")
    repo, cache = hub_repo(root / "repo"), root / "cache"
    files = DataFilesDict.from_patterns(
        {split: [f"main/{split}-*.parquet"] for split in ("train", "test")}, base_path=str(repo)
    )

    class Tickets(Parquet):  # a builder whose `main` config has no kwargs, so its cache folder is named `main`
        BUILDER_CONFIGS = [ParquetConfig(name="main", data_files=files)]

    Tickets(
        dataset_name="tickets", cache_dir=str(cache), hash="0123abcd4567", config_name="main"
    ).download_and_prepare()
    (cache / "tickets").rename(cache / "acme___tickets")  # the folder a hub id's load writes (namespace___name)
    return cache


@pytest.fixture
def use_cache(datasets_cache, monkeypatch):
    """This process and the cells' processes read that cache (offline: conftest sets HF_HUB_OFFLINE)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", datasets_cache)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(datasets_cache))
    return datasets_cache


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A datasets cache of the test's own: a local folder read with load_dataset is prepared into the cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


INLINE_TASK = """
task:
  name: tickets
  data: {hub: acme/tickets, name: main, test: test}
  fields: {input: message, output: team}
  labels: [billing, shipping]
  metric: accuracy
  prompt: {template: "Message: {input}\\nTeam:"}
"""


def inline_recipe(model_dir: Path, out: Path, task: str = INLINE_TASK) -> str:
    return f"""
name: tiny
model: {model_dir}
{task}
device: cpu
output_dir: {out}
techniques:
  - {{name: zero, kind: prompt}}
eval:
  heldout: {{limit: 4, batch_size: 4, max_new_tokens: 2, bootstrap_samples: 100}}
"""


def test_inline_hub_task_validates_runs_resumes_and_reports(use_cache, write, tiny_model_dir, tmp_path, monkeypatch):
    recipe = write("r.yaml", inline_recipe(tiny_model_dir, tmp_path / "out"))
    validated = run_cli("validate", recipe)
    assert validated.exit_code == 0 and "on tickets;" in validated.output, validated.output
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    meta = json.loads((run_dir / "results.json").read_text())["meta"]
    assert meta["task"]["n_train"] == 10 and meta["task"]["n_test"] == 6 and meta["task"]["path"] is None
    train = meta["task"]["data"]["train"]
    assert train["hub"] == "acme/tickets" and train["config"] == "main" and train["commit"] == "0123abcd4567"
    assert train["splits"]["train"]["rows"] == 10 and len(train["splits"]["train"]["fingerprint"]) == 16
    assert meta["task_ref"]["data"]["hub"] == "acme/tickets"  # an inline task is stored whole
    report = (run_dir / "REPORT.md").read_text()
    assert "Data: train from hub dataset `acme/tickets` (config `main`, commit `0123abcd4567`; split `train`" in report
    resumed = run_cli("run", "--resume", run_dir)  # the stored recipe, inline task included, validates again
    assert resumed.exit_code == 0, resumed.output
    assert run_cli("report", run_dir).exit_code == 0

    # a new commit of the dataset in the cache: resuming would mix scores on two versions of the data
    import datasets

    moved = shutil.copytree(use_cache, tmp_path / "cache")
    (moved / "acme___tickets/main/0.0.0/0123abcd4567").rename(moved / "acme___tickets/main/0.0.0/89abcdef0123")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", moved)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(moved))
    changed = run_cli("run", "--resume", run_dir)
    assert changed.exit_code != 0 and "hub dataset 'acme/tickets' changed since this run started" in changed.output


def test_hub_task_in_a_list_and_a_pinned_commit_the_cache_lacks(use_cache, write, tmp_path):
    first, *rest = INLINE_TASK.split("task:\n")[1].strip("\n").split("\n")  # the mapping as a list's item
    both = "task:\n  - ticket-routing\n  - " + first.strip() + "\n" + "\n".join("  " + line for line in rest)
    recipe = write("r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out", both))
    validated = run_cli("validate", recipe)
    assert validated.exit_code == 0 and "on ticket-routing, tickets;" in validated.output, validated.output
    pinned = INLINE_TASK.replace("test: test}", "test: test, revision: 89abcdef}")
    result = run_cli("validate", write("r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out", pinned)))
    assert result.exit_code != 0 and "the datasets cache holds commit 0123abcd4567" in " ".join(result.output.split())


def test_uncached_hub_id_offline_fails_fast_naming_id_and_cache(write, tmp_path, monkeypatch):
    import datasets

    empty = tmp_path / "empty-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", empty)
    recipe = write(
        "r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out", INLINE_TASK.replace("acme/", "nobody/"))
    )
    started = time.monotonic()
    result = run_cli("validate", recipe)
    assert result.exit_code != 0 and time.monotonic() - started < 10
    text = " ".join(result.output.split())
    assert "'nobody/tickets' is not in the datasets cache" in text and str(empty) in text.replace(" ", "")
    assert not (tmp_path / "out").exists()


def test_task_folder_reads_a_hub_shaped_folder_and_save_to_disk(private_cache, write, tmp_path):
    import datasets

    hub_repo(tmp_path / "t" / "repo")
    write(
        "t/task.yaml",
        "name: t\ndata: {dataset: repo, name: main, test: 'test[:4]', limit: 6}\n"
        "fields: {input: message, output: team}\n",
    )
    task = load_task(str(tmp_path / "t"))
    assert (len(task.train), len(task.test)) == (6, 4)  # a sample of 6 of the 10 train rows; test's first 4
    test_split = task.sources["test"]["splits"]["test"]
    assert (test_split["rows"], test_split["read"]) == (6, 4) and test_split["fingerprint"]
    assert task.test[0].id == "test-0" and task.test[0].input == "test message 0 about my billing"

    labels = datasets.ClassLabel(names=LABELS)  # stored as 0/1, read as the names
    features = datasets.Features({"message": datasets.Value("string"), "team": labels})
    rows = {"message": [f"m{i}" for i in range(5)], "team": [0, 1, 0, 1, 1]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "t" / "saved"))
    write(
        "t/task.yaml",
        "name: t\ndata: {dataset: saved, test_fraction: 0.4}\nfields: {input: message, output: team}\n"
        "labels: [billing, shipping]\n",
    )
    task = load_task(str(tmp_path / "t"))
    assert (len(task.train), len(task.test)) == (3, 2) and {e.output for e in task.train + task.test} == set(LABELS)


@pytest.mark.parametrize(
    "data, message",
    [
        ("{dataset: repo, test: nope}", "has no split 'nope'; fix: name one of its splits: train, test"),
        ("{dataset: repo, name: other}", "BuilderConfig 'other' not found"),
        ("{dataset: repo, train: train+test}", "'train+test' joins splits; name one split for each of train and test"),
        ("{dataset: ../elsewhere}", "data.dataset '../elsewhere' leads outside the task folder"),
        (
            "{dataset: repo, hub: a/b}",
            "give `hub:` (a hub dataset id) or `dataset:` (a folder in the task folder), not both",
        ),
        ("{dataset: repo, revision: v1}", "`revision:` picks a version of a hub dataset: it goes with `hub:`"),
        ("{hub: ../elsewhere}", "not a hub dataset id"),  # the datasets library would read it as a folder
    ],
)
def test_dataset_mistakes_are_named(private_cache, write, tmp_path, data, message):
    hub_repo(tmp_path / "t" / "repo")
    write("t/task.yaml", f"name: t\ndata: {data}\nfields: {{input: message, output: team}}\n")
    with pytest.raises(ConfigError, match="t/task.yaml") as error:
        load_task(str(tmp_path / "t"))
    assert message in str(error.value)


def test_inline_task_must_name_a_hub_dataset(write, tmp_path):
    task = INLINE_TASK.replace("{hub: acme/tickets, name: main, test: test}", "{train: data.jsonl}")
    recipe = write("r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out", task))
    result = run_cli("validate", recipe)
    assert result.exit_code != 0 and "is given inline in the recipe, so it has no folder" in " ".join(
        result.output.split()
    )


def test_an_unreachable_hub_fails_at_once_and_names_the_offline_switch(write, tmp_path, monkeypatch):
    """Online, one request checks the id: the datasets client's own retries would take about 23 s per load."""
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    recipe = write("r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out"))
    started = time.monotonic()
    result = run_cli("validate", recipe)
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and time.monotonic() - started < 10
    assert "dataset 'acme/tickets': the hub cannot be reached" in text and "set HF_HUB_OFFLINE=1" in text


def test_an_inline_task_mistake_is_named_at_its_line_in_the_recipe(write, tmp_path):
    task = INLINE_TASK.replace("metric: accuracy", "metrik: accuracy")
    result = run_cli("validate", write("r.yaml", inline_recipe(Path("random:tiny-llama"), tmp_path / "out", task)))
    # one error, the task's own key path (a union's errors would list "task.str: ..." and "task.TaskSpec.metrik")
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: {tmp_path / 'r.yaml'}:10: unknown key 'task.metrik' (did you mean 'task.metric'?)"
    ), result.output


def test_a_task_folder_names_a_hub_dataset_at_a_pinned_commit(use_cache, write, tmp_path):
    write(
        "t/task.yaml",
        "name: t\ndata: {hub: acme/tickets, name: main, revision: 0123abcd, train: 'train[:4]', test: test}\n"
        "fields: {input: message, output: team}\nlabels: [billing, shipping]\nmetric: accuracy\n",
    )
    task = load_task(str(tmp_path / "t"))
    assert (len(task.train), len(task.test)) == (4, 6) and task.train[3].id == "train-3"
    assert task.sources["train"]["revision"] == "0123abcd" and task.sources["train"]["commit"] == "0123abcd4567"


def test_a_hub_id_that_is_also_a_folder_here_is_refused(use_cache, tmp_path, monkeypatch):
    """The datasets library reads a local folder of the id's name instead of the hub's dataset: a task could
    then read whatever that folder holds (docs/trust.md)."""
    from harness.tasks import TaskSpec

    (tmp_path / "acme" / "tickets").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = TaskSpec.model_validate({"name": "t", "data": {"hub": "acme/tickets", "name": "main"}})
    with pytest.raises(ConfigError, match="data.hub 'acme/tickets' is also a path here"):
        load_task(spec)


def test_task_init_on_a_dataset_folder_and_a_cached_hub_id_writes_tasks_that_load(use_cache, tmp_path):
    hub_repo(tmp_path / "repo")
    result = run_cli("task", "init", tmp_path / "repo", "--name", "folder", "--config", "main", "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    task = load_task(str(tmp_path / "f"))  # the folder copied in, its test split used
    assert (len(task.train), len(task.test), task.labels) == (10, 6, LABELS)
    assert "dataset: repo" in (tmp_path / "f" / "task.yaml").read_text()

    result = run_cli("task", "init", "acme/tickets", "--name", "hub", "--config", "main", "--out", tmp_path / "h")
    assert result.exit_code == 0, result.output
    assert load_task(str(tmp_path / "h")).spec.data.hub == "acme/tickets"
    result = run_cli("task", "init", "acme/nothing-here", "--name", "x", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "acme/nothing-here" in result.output and not (tmp_path / "x").exists()
