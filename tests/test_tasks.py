import json
from collections import Counter

import pandas as pd
import pytest

from harness.tasks import load_task
from harness.yamlconfig import ConfigError

TASK_YAML = """\
name: mini
data: {{train: {train}, test_fraction: 0.25, format: {format}}}
fields: {{input: q, output: a, id: key}}
metric: exact_match
prompt: {{template: "Q: {{input}}"}}
"""


def rows(n=8):
    return [{"key": f"k{i}", "q": f"question {i}", "a": f"answer {i}"} for i in range(n)]


def make_task(write, data_name, data_text, format="fields"):
    write(f"mini/{data_name}", data_text)
    return write("mini/task.yaml", TASK_YAML.format(train=data_name, format=format)).parent


def test_bundled_task_split_is_stratified_and_stable():
    task = load_task("ticket-routing")
    assert (len(task.train), len(task.test)) == (480, 120)
    assert set(Counter(e.output for e in task.test).values()) == {20}
    assert [e.id for e in load_task("ticket-routing").test] == [e.id for e in task.test]
    assert not {e.id for e in task.train} & {e.id for e in task.test}


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv", "parquet"])
def test_every_file_type_loads(write, tmp_path, suffix):
    data = rows()
    if suffix == "jsonl":
        folder = make_task(write, "d.jsonl", "".join(json.dumps(r) + "\n" for r in data))
    elif suffix == "json":
        folder = make_task(write, "d.json", json.dumps(data))
    else:
        (tmp_path / "mini").mkdir()
        frame = pd.DataFrame(data)
        frame.to_csv(tmp_path / "mini/d.csv", index=False) if suffix == "csv" else frame.to_parquet(
            tmp_path / "mini/d.parquet"
        )
        folder = write("mini/task.yaml", TASK_YAML.format(train=f"d.{suffix}", format="fields")).parent
    task = load_task(str(folder))
    assert (len(task.train), len(task.test)) == (6, 2)
    example = next(e for e in task.train + task.test if e.id == "k3")
    assert (example.input, example.output) == ("question 3", "answer 3")


def test_malformed_jsonl_line_is_named(write):
    folder = make_task(write, "d.jsonl", json.dumps(rows()[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"d\.jsonl:2: invalid JSON"):
        load_task(str(folder))


def test_missing_field_names_line_and_fix(write):
    bad = rows(3)
    del bad[2]["a"]
    folder = make_task(write, "d.jsonl", "".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ConfigError, match=r"d\.jsonl:3: missing field 'a'.*fix the row or `fields:`"):
        load_task(str(folder))


def test_csv_error_cites_the_file_line(write):
    folder = make_task(write, "d.csv", "key,q,a\nk0,question,answer\nk1,question,\n")
    with pytest.raises(ConfigError, match=r"d\.csv:3: empty output"):
        load_task(str(folder))


def test_label_outside_the_label_set(write):
    write("mini/d.jsonl", "".join(json.dumps({"q": "x", "a": lab}) + "\n" for lab in ["yes", "no", "maybe"]))
    path = write(
        "mini/task.yaml",
        "name: mini\ndata: {train: d.jsonl}\nfields: {input: q, output: a}\nlabels: [yes, no]\nmetric: accuracy\n",
    )
    with pytest.raises(ConfigError, match=r"task\.yaml:4: labels: .*YAML reads yes/no/on/off as booleans"):
        load_task(str(path.parent))
    write("mini/task.yaml", path.read_text().replace("[yes, no]", "['yes', 'no']"))
    with pytest.raises(ConfigError, match=r"d\.jsonl:3: output 'maybe' is not one of"):
        load_task(str(path.parent))


def test_alpaca_and_chat_formats(write):
    alpaca = [{"instruction": "Add", "input": f"{i}+1", "output": str(i + 1)} for i in range(4)]
    task = load_task(str(make_task(write, "d.jsonl", "".join(json.dumps(r) + "\n" for r in alpaca), "alpaca")))
    assert {e.instruction for e in task.train} == {"Add"}
    chat = [
        {
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": f"hi {i}"},
                {"role": "assistant", "content": f"yo {i}"},
            ]
        }
        for i in range(4)
    ]
    task = load_task(str(make_task(write, "c.jsonl", "".join(json.dumps(r) + "\n" for r in chat), "chat")))
    example = task.test[0]
    assert example.instruction == "Be brief" and example.output == "yo " + example.input.split()[-1]


def test_separate_test_file_and_unknown_placeholder(write):
    write("mini/train.jsonl", "".join(json.dumps(r) + "\n" for r in rows(5)))
    write("mini/test.jsonl", "".join(json.dumps(r) + "\n" for r in rows(2)))
    path = write(
        "mini/task.yaml", "name: mini\ndata: {train: train.jsonl, test: test.jsonl}\nfields: {input: q, output: a}\n"
    )
    task = load_task(str(path.parent))
    assert (len(task.train), len(task.test)) == (5, 2)
    write(
        "mini/task.yaml",
        "name: mini\ndata: {train: train.jsonl}\nfields: {input: q, output: a}\nprompt: {template: '{question}'}\n",
    )
    with pytest.raises(ConfigError, match=r"task\.yaml:4: prompt: .*unknown placeholder"):
        load_task(str(path.parent))


def test_unknown_task_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match="bundled: .*ticket-routing"):
        load_task("no-such-task")
