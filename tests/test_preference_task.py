"""The bundled preference task (support-replies) and the loader's chosen/rejected columns."""

import json
import re
import runpy
import shutil

import pytest
from conftest import REPO, run_cli

from harness.tasks import load_task
from harness.yamlconfig import ConfigError

FOLDER = REPO / "tasks" / "support-replies"
TEAMS = {"billing", "shipping", "technical", "account", "returns", "feedback"}

PAIR_YAML = """\
name: pairs
data: {{train: d.jsonl, test_fraction: 0.25}}
fields: {{input: q, output: good, {pair}}}
"""


def data_rows():
    return [json.loads(line) for line in (FOLDER / "data.jsonl").open()]


def test_bundled_task_loads_with_a_preference_pair_per_example():
    task = load_task("support-replies")
    assert task.has_preferences and task.spec.metric == "rouge_l" and not task.is_classification
    assert (len(task.train), len(task.test)) == (288, 72)
    team = {r["id"]: r["team"] for r in data_rows()}
    for example in task.train + task.test:
        assert example.chosen.strip() and example.rejected.strip() and example.chosen != example.rejected
        assert example.output == example.chosen  # the task's generation target is the chosen reply
        assert f"{team[example.id]} team" in example.chosen
        assert not any(name in example.rejected.lower() for name in TEAMS)  # the bad reply names no team
        for slot in re.findall(r"#\d+|\$[\d.]+\d", example.input):  # order numbers and amounts carry over
            assert slot in example.chosen
    assert [e.id for e in load_task("support-replies").test] == [e.id for e in task.test]


def test_bundled_data_sizes_and_reply_lengths():
    rows = data_rows()
    assert len(rows) == 360 and len({r["message"] for r in rows}) == 360
    assert {t: sum(r["team"] == t for r in rows) for t in TEAMS} == dict.fromkeys(TEAMS, 60)
    assert len({r["rejected"] for r in rows}) == 10
    assert max(len(r["chosen"].split()) for r in rows) <= 30  # one or two short sentences


def test_generator_reproduces_the_committed_file(tmp_path):
    shutil.copy(FOLDER / "generate.py", tmp_path / "generate.py")
    runpy.run_path(str(tmp_path / "generate.py"), run_name="__main__")
    assert (tmp_path / "data.jsonl").read_bytes() == (FOLDER / "data.jsonl").read_bytes()


def test_tasks_without_a_pair_have_none():
    task = load_task("ticket-routing")
    assert not task.has_preferences
    assert all(e.chosen is None and e.rejected is None for e in task.train)


def test_chosen_without_rejected_is_an_error(write):
    write("pairs/d.jsonl", json.dumps({"q": "x", "good": "y", "bad": "z"}) + "\n")
    path = write("pairs/task.yaml", PAIR_YAML.format(pair="chosen: good"))
    with pytest.raises(ConfigError, match=r"task\.yaml:3: fields: .*`chosen` is set but `rejected` is not"):
        load_task(str(path.parent))


@pytest.mark.parametrize("bad, message", [(None, r"missing field 'bad'"), ("  ", r"empty field 'bad'")])
def test_a_row_without_its_rejected_reply_names_the_line(write, bad, message):
    records = [{"q": f"q{i}", "good": f"good {i}", "bad": f"bad {i}"} for i in range(4)]
    if bad is None:
        del records[2]["bad"]
    else:
        records[2]["bad"] = bad
    write("pairs/d.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    path = write("pairs/task.yaml", PAIR_YAML.format(pair="chosen: good, rejected: bad"))
    with pytest.raises(ConfigError, match=rf"d\.jsonl:3: {message}"):
        load_task(str(path.parent))


def test_cli_lists_and_validates_the_task(write):
    listed = run_cli("tasks")
    assert listed.exit_code == 0, listed.output
    assert "support-replies" in listed.output
    recipe = write(
        "r.yaml",
        "name: x\nmodel: random:tiny-llama\ntask: support-replies\ntechniques:\n"
        "  - {name: few, kind: prompt, shots: 2}\n",
    )
    result = run_cli("validate", recipe)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "support-replies" in result.output
