"""Bad task data: `harness validate` answers with a one-line error naming the file (exit code 2), never a
traceback (run_cli lets any other exception through, which fails the test)."""

import io
import json
import os

import pandas as pd
import pytest
from conftest import run_cli

from harness.tasks import load_task
from harness.yamlconfig import ConfigError, ConfigWarning

TASK_YAML = "name: {name}\ndata: {{train: {train}{data}}}\nfields: {{input: q, output: a, id: key}}\n{more}"
RECIPE = """\
name: r
model: random:tiny-llama
task: {task}
techniques:
  - {{name: few, kind: prompt, shots: 1}}
  - {{name: rag, kind: rag}}
eval: {{validation: {{fraction: 0.2}}}}
"""


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def rows(n=10, labels=None):
    return [
        {"key": f"k{i}", "q": f"question {i}", "a": labels[i % len(labels)] if labels else f"answer {i}"}
        for i in range(n)
    ]


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows()).to_parquet(buffer)
    return buffer.getvalue()


def numeric_parquet(last_answer: float) -> bytes:
    """Ten examples whose answers are numbers (a float column), the last one `last_answer`."""
    buffer = io.BytesIO()
    pd.DataFrame(
        [{"key": f"k{i}", "q": f"q{i}", "a": float(i) if i < 9 else last_answer} for i in range(10)]
    ).to_parquet(buffer)
    return buffer.getvalue()


def list_parquet() -> bytes:
    """Ten examples whose answers are lists (a Parquet list column, read as numpy arrays)."""
    buffer = io.BytesIO()
    pd.DataFrame([{"key": f"k{i}", "q": f"q{i}", "a": ["x", "y"]} for i in range(10)]).to_parquet(buffer)
    return buffer.getvalue()


def chat(question, answer) -> str:
    """Ten chat records whose first has this question and answer."""
    pairs = [(question, answer)] + [(f"q{i}", "a") for i in range(9)]
    return jsonl({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs)


GOOD = jsonl(rows())
CLASSES = "labels: [x, y]\nmetric: accuracy\n"
# case: (files, train file, extra `data:` settings, extra task.yaml lines, the file the message must name, its text)
CASES = {
    "non-utf8 jsonl": (
        {"d.jsonl": GOOD.encode() + b'{"key": "z", "q": "caf\xe9", "a": "b"}\n'},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "not UTF-8",
    ),
    "non-utf8 csv": ({"d.csv": b"key,q,a\nk1,caf\xe9,b\nk2,x,y\n"}, "d.csv", "", "", "d.csv:2", "not UTF-8"),
    "non-utf8 task.yaml": ({"d.jsonl": GOOD}, "d.jsonl", "", "description: caf\xe9\n", "task.yaml:4", "not UTF-8"),
    "empty csv": ({"d.csv": ""}, "d.csv", "", "", "d.csv", "empty CSV"),
    "ragged csv": (
        {"d.csv": "key,q,a\nk1,x,y\nk2,x,y,z,w\n"},
        "d.csv",
        "",
        "",
        "d.csv:3",
        "5 fields but the header has 3",
    ),
    "empty parquet": ({"d.parquet": b""}, "d.parquet", "", "", "d.parquet", "not a readable Parquet"),
    "truncated parquet": (
        {"d.parquet": parquet_bytes()[:300]},
        "d.parquet",
        "",
        "",
        "d.parquet",
        "not a readable Parquet",
    ),
    "corrupt parquet": (
        {"d.parquet": b"PAR1" + b"\x00junk" * 50 + b"PAR1"},
        "d.parquet",
        "",
        "",
        "d.parquet",
        "not a readable Parquet",
    ),
    "deeply nested json": ({"d.json": "[" * 100_000 + "]" * 100_000}, "d.json", "", "", "d.json", "nested too deeply"),
    "deeply nested jsonl": (
        {"d.jsonl": GOOD + '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n"},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "nested too deeply",
    ),
    "one example": ({"d.jsonl": jsonl(rows(1))}, "d.jsonl", "", "", "task.yaml", "leaves no training examples"),
    "two examples": (
        {"d.jsonl": jsonl(rows(2))},
        "d.jsonl",
        "",
        "",
        "r.yaml",
        "eval.validation.fraction 0.2 leaves no training data",
    ),
    "test_fraction too large": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        ", test_fraction: 0.99",
        "",
        "task.yaml",
        "data.test_fraction 0.99 of the 10 example(s) in d.jsonl leaves no training examples",
    ),
    "duplicate ids": (
        {"d.jsonl": jsonl(rows() + [{"key": "k3", "q": "again", "a": "b"}])},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "id 'k3' is already used at d.jsonl:4",
    ),
    "duplicate labels": (
        {"d.jsonl": jsonl(rows(labels=["x", "y"]))},
        "d.jsonl",
        "",
        "labels: [x, y, x]\nmetric: accuracy\n",
        "task.yaml:4",
        "repeated: 'x'",
    ),
    "empty label": (
        {"d.jsonl": jsonl(rows(labels=["x", "y"]))},
        "d.jsonl",
        "",
        "labels: [x, y, '']\nmetric: accuracy\n",
        "task.yaml:4",
        "a label must be non-empty",
    ),
    "empty corpus folder": (
        {"d.jsonl": GOOD, "docs/.keep": ""},
        "d.jsonl",
        "",
        "corpus: {path: docs}\n",
        "docs",
        "corpus folder has no .txt or .md files",
    ),
    "corpus of binary and empty files": (
        {"d.jsonl": GOOD, "docs/a.txt": b"\x00\x01\xff" * 10, "docs/b.md": ""},
        "d.jsonl",
        "",
        "corpus: {path: docs}\n",
        "docs",
        "no .txt or .md file with text",
    ),
    "corpus path outside the task": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        "",
        "corpus: {path: ../elsewhere}\n",
        "task.yaml:4",
        "corpus.path '../elsewhere' leads outside the task folder",
    ),
    "corpus symlink outside the task": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        "",
        "corpus: {path: docs}\n",
        "task.yaml:4",
        "corpus.path 'docs' leads outside the task folder",
    ),
    "corpus file symlink outside the task": (
        {"d.jsonl": GOOD, "docs/a.txt": "fine"},
        "d.jsonl",
        "",
        "corpus: {path: docs}\n",
        "b.txt",
        "outside the corpus folder",
    ),
    # a task's data is copied into predictions and REPORT.md: it may not read what else the machine holds
    "train file up and out": ({}, "../elsewhere/d.jsonl", "", "", "task.yaml:2", "data.train '../elsewhere/d.jsonl'"),
    "train file absolute": ({}, "{elsewhere}/d.jsonl", "", "", "task.yaml:2", "leads outside the task folder"),
    "train file symlink out": ({}, "d.jsonl", "", "", "task.yaml:2", "data.train 'd.jsonl' leads outside"),
    "test file up and out": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        ", test: ../elsewhere/d.jsonl",
        "",
        "task.yaml:2",
        "data.test '../elsewhere/d.jsonl' leads outside the task folder",
    ),
    "task name with ..": ({"d.jsonl": GOOD}, "d.jsonl", "", "", "task.yaml:1", "a task name must"),
    "task name with /": ({"d.jsonl": GOOD}, "d.jsonl", "", "", "task.yaml:1", "a task name must"),
    # names that once failed only when the plots were written, after every cell had finished
    "task name of 300 characters": ({"d.jsonl": GOOD}, "d.jsonl", "", "", "task.yaml:1", "at most 100 characters"),
    "task name with NUL": ({"d.jsonl": GOOD}, "d.jsonl", "", "", "task.yaml:1", "or control characters"),
    "negative split_seed": ({"d.jsonl": GOOD}, "d.jsonl", ", split_seed: -1", "", "task.yaml:2", "a seed is a whole"),
    "split_seed over 32 bits": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        f", split_seed: {2**40}",
        "",
        "task.yaml:2",
        "from 0 to 4294967295",
    ),
    "complex key": ({"d.jsonl": GOOD}, "d.jsonl", "", "? [a, b]\n: 1\n", "task.yaml:4", "a key must be a name"),
    # a missing answer read as the text "nan" or "None" would be scored as the expected answer
    "NaN output": (
        {"d.jsonl": GOOD + '{"key": "z", "q": "x", "a": NaN}\n'},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "missing field 'a'",
    ),
    "NaN in a numeric parquet column": (
        {"d.parquet": numeric_parquet(float("nan"))},
        "d.parquet",
        "",
        "",
        "d.parquet:10",
        "missing field 'a'",
    ),
    "chat content as a list": (
        {"d.jsonl": chat([{"type": "text", "text": "hi"}], "answer")},
        "d.jsonl",
        ", format: chat",
        "",
        "d.jsonl:1",
        "the user message's content is a list, not text",
    ),
    "chat answer as a mapping": (
        {"d.jsonl": chat("hi", {"text": "answer"})},
        "d.jsonl",
        ", format: chat",
        "",
        "d.jsonl:1",
        "the assistant message's content is a dict, not text",
    ),
    "duplicate corpus ids": (
        {"d.jsonl": GOOD, "docs.jsonl": jsonl([{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])},
        "d.jsonl",
        "",
        "corpus: {path: docs.jsonl}\n",
        "docs.jsonl:2",
        "document id 'a' is already used at line 1",
    ),
    # found by bench/probe_hardening.py: each was a traceback, or accepted as Python's text of the value
    "train file a symlink loop": ({}, "d.jsonl", "", "", "task.yaml:2", "data.train 'd.jsonl' cannot be followed"),
    "train file named ''": (
        {"d.jsonl": GOOD},
        "''",
        "",
        "",
        "task.yaml:2",
        "data.train: String should have at least 1",
    ),
    "output a list": (
        {"d.jsonl": GOOD + '{"key": "z", "q": "x", "a": ["b", "c"]}\n'},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "field 'a' must be text, got list",
    ),
    "output Infinity": (
        {"d.jsonl": GOOD + '{"key": "z", "q": "x", "a": Infinity}\n'},
        "d.jsonl",
        "",
        "",
        "d.jsonl:11",
        "field 'a' must be text, got inf",
    ),
    "parquet list column": (
        {"d.parquet": list_parquet()},
        "d.parquet",
        "",
        "",
        "d.parquet:1",
        "field 'a' must be text, got list",
    ),
    "template with a format spec": (
        {"d.jsonl": GOOD},
        "d.jsonl",
        "",
        "prompt: {template: 'Q: {input:>99999999}'}\n",
        "task.yaml:4",
        "a placeholder takes no format spec or conversion: {input:>99999999}",
    ),
    "corpus id null": (
        {"d.jsonl": GOOD, "docs.jsonl": jsonl([{"id": None, "text": "one"}])},
        "d.jsonl",
        "",
        "corpus: {path: docs.jsonl}\n",
        "docs.jsonl:1",
        "each corpus record needs an 'id' (text or a whole number)",
    ),
}
NAMES = {
    "task name with ..": "../up",
    "task name with /": "a/b",
    "task name of 300 characters": "t" * 300,
    "task name with NUL": '"a\\0b"',
}


def build(tmp_path, case: str):
    files, train, data, more, *_ = CASES[case]
    folder = tmp_path / "mini"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    name = NAMES.get(case, "mini")
    train = train.replace("{elsewhere}", str(tmp_path / "elsewhere"))
    folder.mkdir(exist_ok=True)
    (folder / "task.yaml").write_bytes(TASK_YAML.format(name=name, train=train, data=data, more=more).encode("latin-1"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/a.txt").write_text("a document outside the task folder")
    (tmp_path / "elsewhere/d.jsonl").write_text(GOOD)
    if case == "train file symlink out":
        os.symlink(tmp_path / "elsewhere/d.jsonl", folder / "d.jsonl")
    if case == "corpus symlink outside the task":
        os.symlink(tmp_path / "elsewhere", folder / "docs")
    if case == "train file a symlink loop":
        os.symlink("d.jsonl", folder / "d.jsonl")
    if case == "corpus file symlink outside the task":
        os.symlink(tmp_path / "elsewhere/a.txt", folder / "docs/b.txt")
    return folder


@pytest.mark.parametrize("case", CASES)
def test_bad_task_data_is_a_one_line_error_naming_the_file(tmp_path, case):
    folder = build(tmp_path, case)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(task=folder))
    result = run_cli("validate", recipe)
    *_, where, message = CASES[case]
    assert result.exit_code == 2, result.output
    assert where in result.output and message in result.output, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ")


def test_a_label_with_one_example_warns_that_the_split_is_not_stratified(tmp_path, write):
    write("mini/d.jsonl", jsonl(rows(9, labels=["x", "y"]) + [{"key": "z", "q": "q", "a": "z"}]))
    write(
        "mini/task.yaml",
        TASK_YAML.format(name="mini", train="d.jsonl", data="", more="labels: [x, y, z]\nmetric: accuracy\n"),
    )
    with pytest.warns(
        ConfigWarning, match=r"task\.yaml: the test split is cut at random.*label\(s\) 'z' have one example"
    ):
        task = load_task(str(tmp_path / "mini"))
    assert (len(task.train), len(task.test)) == (8, 2)


def test_a_stray_binary_corpus_file_is_skipped_with_a_warning(tmp_path, write):
    from harness.retrieval import load_corpus

    write("docs/a.txt", "text")
    (tmp_path / "docs/b.txt").write_bytes(b"\x00\x01")
    with pytest.warns(ConfigWarning, match=r"skipped 1 corpus file\(s\) that are not UTF-8 text, e.g. b\.txt"):
        assert load_corpus(tmp_path / "docs") == [("a", "text")]


FIELDS_YAML = "name: mini\ndata: {{train: d.jsonl}}\nfields: {{input: q, output: a, id: key, {more}}}\n{corpus}"


def test_a_preference_pair_of_one_text_twice_is_an_error(tmp_path, write):
    pairs = [{"key": f"k{i}", "q": "q", "a": "a", "c": "good", "r": "good" if i == 3 else "bad"} for i in range(10)]
    write("mini/d.jsonl", jsonl(pairs))
    write("mini/task.yaml", FIELDS_YAML.format(more="chosen: c, rejected: r", corpus=""))
    message = str(pytest.raises(ConfigError, load_task, str(tmp_path / "mini")).value)
    assert "d.jsonl:4: the chosen and the rejected answer are the same text" in message


def test_gold_documents_none_of_which_is_in_the_corpus_are_an_error(tmp_path, write):
    from harness import preflight

    write("mini/docs/a.txt", "a document")
    write("mini/task.yaml", FIELDS_YAML.format(more="doc_id: doc", corpus="corpus: {path: docs}\n"))
    write("mini/d.jsonl", jsonl([{"key": f"k{i}", "q": "q", "a": "a", "doc": "docs/a"} for i in range(10)]))
    task = load_task(str(tmp_path / "mini"))
    message = str(pytest.raises(ConfigError, preflight.check_gold_documents, task, {"a"}).value)
    assert "none of the 1 gold document id(s) the data names is in the corpus docs (e.g. 'docs/a'" in message
    assert "its ids are e.g. 'a'" in message and "recall@k would be 0" in message
    # some missing: recall@k is capped on their examples, which is said
    with pytest.warns(ConfigWarning, match=r"1 of 2 gold document id\(s\) are not in the corpus docs"):
        preflight.check_gold_documents(with_gold_document(task, "b"), {"docs/a"})


def with_gold_document(task, extra: str):
    """The task with one more gold document named by its first test example."""
    import dataclasses

    first = dataclasses.replace(task.test[0], gold_docs=(*task.test[0].gold_docs, extra))
    return dataclasses.replace(task, test=(first, *task.test[1:]))


def test_a_binary_parquet_column_is_read_as_its_text(tmp_path, write):
    buffer = io.BytesIO()
    pd.DataFrame([{"key": f"k{i}", "q": f"q{i}", "a": f"answer {i}".encode()} for i in range(10)]).to_parquet(buffer)
    (tmp_path / "mini").mkdir()
    (tmp_path / "mini/d.parquet").write_bytes(buffer.getvalue())
    write("mini/task.yaml", TASK_YAML.format(name="mini", train="d.parquet", data="", more=""))
    task = load_task(str(tmp_path / "mini"))
    assert sorted(e.output for e in (*task.train, *task.test))[:2] == ["answer 0", "answer 1"]  # not "b'answer 0'"
