"""Issue 29's probe, re-measured in one go with the harness's own code: each family of hostile or broken input
run through what a user runs, every case classified, a table per family and the totals. Seeded; asserts
nothing (tests/test_probe_hardening.py asserts a seeded subset of the task-folder and path families).

    python bench/probe_hardening.py                       # every family (the kills take a few minutes)
    python bench/probe_hardening.py --family tasks        # one: recipes, tasks, paths, kills, endpoints

Families, and how a case is classified:
- recipes: the bundled recipes mutated at random (bench/probe_recipes.py) through `harness validate`.
- tasks: malformed task folders (task.yaml keys, values and YAML; each data format and file type broken
  in many ways; symlinks, folders where files belong, corpora, preference pairs) through `harness
  validate` on a recipe naming the task, then, when accepted, through what `harness run` does with a task
  before its cells (load_task, the validation cut, the floor, every prompt, the corpus). A clear error is
  exit 2 with one `error:` line naming a file; a case marked meaningless that is accepted is wrongly
  accepted.
- paths: attempts to read or write outside the folders a command may use (task data, corpora, plugins,
  lm-eval include paths, run folder names, report file names from a crafted results.json) and two ids that
  would collide. Refused with a clear error, stayed inside (nothing read or written elsewhere), escaped
  (a sentinel's text was read, a file appeared outside, a plugin's code ran) or traceback.
- kills: a two-task run SIGKILLed with its process group at seeded random points and resumed after each
  (tests/test_kill_resume.py's machinery): finished rows lost or changed, cells redone, torn files.
- endpoints: a real loopback server answering each misbehaviour (tests/test_endpoint_hostile.py's) to the
  endpoint client: failed with the reason, accepted (a valid answer), wrongly accepted (garbage used),
  key leaked (in an error, the cache, a reply or to another origin), lost (a valid answer refused, or a
  request held past its timeout), traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

COLUMNS = ("cases", "clear error", "accepted", "traceback", "wrongly accepted", "escaped", "key leaked", "lost")
SECRET = "SENTINEL-outside-the-task-folder-7c41"  # text only a file outside an allowed folder holds


@dataclass
class Case:
    family: str
    name: str
    outcome: str  # one of COLUMNS[1:]
    detail: str = ""


# --- running a command as a user would --------------------------------------------------------------------


def cli(*args) -> tuple[int, str, BaseException | None]:
    """`harness ARGS` in this process: exit code, output, and the exception when one escaped the CLI."""
    from click.testing import CliRunner

    from harness.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(main, [str(a) for a in args])
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, exception


def error_outcome(code: int, output: str, exception, names: tuple[str, ...]) -> str | None:
    """'clear error' (exit 2, `error:` lines naming one of `names`, no traceback), 'traceback', or None when
    the command succeeded."""
    if exception is not None or "Traceback" in output:
        return "traceback"
    if code == 0:
        return None
    if code == 2 and output.lstrip().startswith("error:") and any(name in output for name in names):
        return "clear error"
    return "traceback"  # an exit the CLI does not promise (an unclear or nameless error)


def user_error(action: Callable[[], object]) -> tuple[str | None, str]:
    """Run `action` as the CLI would: (None, '') when it passed, ('clear error', message) for a user error,
    ('traceback', the traceback) for anything else."""
    from harness.cli import user_error_types

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            action()
    except user_error_types() as exc:
        return "clear error", str(exc)
    except Exception:  # noqa: BLE001 — any other exception is what the probe counts
        return "traceback", traceback.format_exc(limit=-3)
    return None, ""


# --- tasks: malformed task folders -----------------------------------------------------------------------

TASK_RECIPE = """\
name: probe
model: random:tiny-llama
task: {task}
techniques:
  - {{name: few, kind: prompt, shots: 1}}
  - {{name: rag, kind: rag}}
eval: {{validation: {{fraction: 0.2}}}}
"""
FORMATS = {  # format -> task.yaml's data and fields lines
    "fields": "data: {{train: {train}}}\nfields: {{input: q, output: a, id: key}}\n",
    "alpaca": "data: {{train: {train}, format: alpaca}}\n",
    "chat": "data: {{train: {train}, format: chat}}\n",
}


DROP = object()  # a record() change that removes the field


def record(fmt: str, i: int, **change) -> dict:
    """Example i of a well-formed data file in this format; `change` replaces fields (DROP: removes one)."""
    base = {
        "fields": {"key": f"k{i}", "q": f"question {i}", "a": f"answer {i % 2}"},
        "alpaca": {"id": f"k{i}", "instruction": "Answer.", "input": f"question {i}", "output": f"answer {i % 2}"},
        "chat": {
            "id": f"k{i}",
            "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a{i % 2}"}],
        },
    }[fmt]
    for key, value in change.items():
        if value is DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def encode(records: list, ext: str) -> bytes:
    """Records as a data file of this type (JSONL, a JSON list, CSV or Parquet, as pandas writes them)."""
    import pandas as pd

    if ext == "jsonl":
        return "".join(json.dumps(r, allow_nan=True) + "\n" for r in records).encode()
    if ext == "json":
        return json.dumps(records, allow_nan=True).encode()
    frame = pd.DataFrame(records)
    if ext == "csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


@dataclass
class TaskCase:
    files: dict  # path in the task folder -> text or bytes
    yaml: str  # task.yaml's text ({elsewhere}: a folder beside the task's that holds SECRET)
    meaningful: bool = False  # accepting it is right (the data means something); else it must be refused
    links: dict = field(default_factory=dict)  # path in the task folder -> symlink target


def good(fmt: str = "fields", ext: str = "jsonl", n: int = 10) -> bytes:
    return encode([record(fmt, i) for i in range(n)], ext)


def task_yaml(fmt: str = "fields", train: str = "d.jsonl", more: str = "", name: str = "mini") -> str:
    return f"name: {name}\n" + FORMATS[fmt].format(train=train) + more


def one_bad(fmt: str, ext: str, **change) -> bytes:
    """Ten good records but the fourth changed."""
    return encode([record(fmt, i, **change) if i == 3 else record(fmt, i) for i in range(10)], ext)


def every(fmt: str, key: str) -> bytes:
    """A Parquet file whose column `key` holds a mapping in every row (a column holds one type)."""
    return encode([record(fmt, i, **{key: {"text": "x"}}) for i in range(10)], "parquet")


def task_cases() -> dict[str, TaskCase]:
    """Every malformed task folder the probe builds, by name (distinct folders)."""
    cases: dict[str, TaskCase] = {}
    exts = ("jsonl", "json", "csv", "parquet")
    output_key = {"fields": "a", "alpaca": "output"}
    for ext in exts:
        train = f"d.{ext}"
        cases[f"empty {ext}"] = TaskCase({train: b""}, task_yaml(train=train))
        cases[f"header or brackets only {ext}"] = TaskCase(
            {train: {"jsonl": b"\n\n", "json": b"[]", "csv": b"key,q,a\n", "parquet": encode([], "parquet")}[ext]},
            task_yaml(train=train),
        )
        for fmt in ("fields", "alpaca", "chat"):
            data = good(fmt, ext)
            # a CSV cut mid-row is a shorter last row, which no reader can tell from a complete one
            cases[f"truncated {fmt} {ext}"] = TaskCase(
                {train: data[: int(len(data) * 0.6) + 7]}, task_yaml(fmt, train), meaningful=ext == "csv"
            )
            if fmt != "chat":
                key = output_key[fmt]
                cases[f"missing output {fmt} {ext}"] = TaskCase(
                    {train: one_bad(fmt, ext, **{key: DROP})}, task_yaml(fmt, train)
                )
                if ext != "csv":
                    cases[f"output a mapping {fmt} {ext}"] = TaskCase(
                        {train: one_bad(fmt, ext, **{key: {"text": "x"}}) if ext != "parquet" else every(fmt, key)},
                        task_yaml(fmt, train),
                    )
                    cases[f"null output {fmt} {ext}"] = TaskCase(
                        {train: one_bad(fmt, ext, **{key: None})}, task_yaml(fmt, train)
                    )
        cases[f"duplicate ids {ext}"] = TaskCase({train: one_bad("fields", ext, key="k1")}, task_yaml(train=train))
        cases[f"label not in the list {ext}"] = TaskCase(
            {train: one_bad("fields", ext, a="answer 7")},
            task_yaml(train=train, more="labels: [answer 0, answer 1]\nmetric: accuracy\n"),
        )
        cases[f"good {ext}, labels"] = TaskCase(
            {train: good("fields", ext)},
            task_yaml(train=train, more="labels: [answer 0, answer 1]\nmetric: accuracy\n"),
            meaningful=True,
        )
    for ext in ("jsonl", "json", "csv"):
        train = f"d.{ext}"
        cases[f"latin-1 byte {ext}"] = TaskCase(
            {train: good(ext=ext).replace(b"question 4", b"qu\xe9stion 4")}, task_yaml(train=train)
        )
        cases[f"utf-16 {ext}"] = TaskCase({train: good(ext=ext).decode().encode("utf-16")}, task_yaml(train=train))
        cases[f"utf-8 BOM {ext}"] = TaskCase(
            {train: b"\xef\xbb\xbf" + good(ext=ext)}, task_yaml(train=train), meaningful=True
        )
        cases[f"CRLF line ends {ext}"] = TaskCase(
            {train: good(ext=ext).replace(b"\n", b"\r\n")}, task_yaml(train=train), meaningful=True
        )
    # values of the wrong type
    jsonl = "d.jsonl"
    for what, value, meaningful in (
        ("a number", 3, True),
        ("a boolean", True, False),
        ("a list", ["x", "y"], False),
        ("infinite", math.inf, False),
        ("NaN", math.nan, False),
        ("empty", "", False),
        ("blank", "  \n ", False),
    ):
        cases[f"output {what}"] = TaskCase({jsonl: one_bad("fields", "jsonl", a=value)}, task_yaml(), meaningful)
    for what, value, meaningful in (
        ("a mapping", {"x": 1}, False),
        ("a boolean", False, False),
        ("NaN", math.nan, False),
        ("a number", 12, True),
    ):
        cases[f"input {what}"] = TaskCase({jsonl: one_bad("fields", "jsonl", q=value)}, task_yaml(), meaningful)
    cases["id a mapping"] = TaskCase({jsonl: one_bad("fields", "jsonl", key={"a": 1})}, task_yaml())
    cases["ids 1 and '1'"] = TaskCase(
        {jsonl: encode([record("fields", i, key=i) for i in range(9)] + [record("fields", 9, key="1")], "jsonl")},
        task_yaml(),
    )
    cases["a record that is a list"] = TaskCase({jsonl: good() + b'["k", "q", "a"]\n'}, task_yaml())
    cases["a record that is a number"] = TaskCase({jsonl: good() + b"42\n"}, task_yaml())
    cases["json an object, not a list"] = TaskCase({"d.json": b'{"rows": []}'}, task_yaml(train="d.json"))
    cases["json list of strings"] = TaskCase({"d.json": b'["a", "b", "c"]'}, task_yaml(train="d.json"))
    cases["huge line (5 MB)"] = TaskCase(
        {jsonl: good() + json.dumps(record("fields", 99, q="word " * 1_000_000)).encode() + b"\n"}, task_yaml(), True
    )
    cases["a NUL byte in a value"] = TaskCase({jsonl: one_bad("fields", "jsonl", q="a\x00b")}, task_yaml(), True)
    cases["unicode separators in a value"] = TaskCase(
        {jsonl: one_bad("fields", "jsonl", q="a\u2028b\u2029c")}, task_yaml(), True
    )
    cases["csv with a quoted newline"] = TaskCase(
        {"d.csv": b'key,q,a\nk0,"two\nlines",x\n' + b"".join(b"k%d,q,y\n" % i for i in range(1, 10))},
        task_yaml(train="d.csv"),
        True,
    )
    cases["csv with a repeated column"] = TaskCase(
        {"d.csv": b"key,q,a,a\n" + b"".join(b"k%d,q%d,x,y\n" % (i, i) for i in range(10))},
        task_yaml(train="d.csv"),
        True,
    )
    cases["csv missing the output column"] = TaskCase(
        {"d.csv": b"key,q\n" + b"".join(b"k%d,q\n" % i for i in range(10))}, task_yaml(train="d.csv")
    )
    cases["parquet bytes column"] = TaskCase(  # UTF-8 bytes: the text they hold
        {"d.parquet": encode([record("fields", i, a=f"answer {i}".encode()) for i in range(10)], "parquet")},
        task_yaml(train="d.parquet"),
        meaningful=True,
    )
    cases["parquet list column as output"] = TaskCase(
        {"d.parquet": encode([record("fields", i, a=["x", "y"]) for i in range(10)], "parquet")},
        task_yaml(train="d.parquet"),
    )

    # chat records
    def chat(*messages, **extra) -> bytes:
        return good("chat") + json.dumps({"messages": list(messages), **extra}).encode() + b"\n"

    user, assistant = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}
    for what, line in {
        "no messages": good("chat") + b'{"id": "x"}\n',
        "messages a string": good("chat") + b'{"messages": "hi"}\n',
        "one message": chat(user),
        "last message the user's": chat(assistant, user),
        "a message without a role": chat({"content": "q"}, assistant),
        "a message that is a string": chat("q", assistant),
        "assistant content null": chat(user, {"role": "assistant", "content": None}),
        "assistant content a number": chat(user, {"role": "assistant", "content": 7}),  # the answer "7"
        "system content a mapping": chat({"role": "system", "content": {"x": 1}}, user, assistant),
        "tool calls, no content": chat(user, {"role": "assistant", "tool_calls": [{"id": "1"}]}),
        "an unknown role": chat({"role": "wizard", "content": "q"}, user, assistant),
    }.items():
        cases[f"chat: {what}"] = TaskCase(
            {jsonl: line}, task_yaml("chat"), meaningful=what in ("an unknown role", "assistant content a number")
        )
    cases["chat in a CSV"] = TaskCase({"d.csv": good("chat", "csv")}, task_yaml("chat", "d.csv"))
    # task.yaml itself
    data = {jsonl: good()}
    for what, text, meaningful in (
        ("empty", "", False),
        ("a list", "- a\n- b\n", False),
        ("a scalar", "just text\n", False),
        ("YAML syntax error", "name: mini\ndata: {train: d.jsonl\n", False),
        ("a tab for indentation", "name: mini\ndata:\n\ttrain: d.jsonl\n", False),
        ("unknown key", task_yaml(more="lables: [a, b]\n"), False),
        ("no data", "name: mini\nfields: {input: q, output: a}\n", False),
        ("no name", "data: {train: d.jsonl}\nfields: {input: q, output: a}\n", False),
        ("name a number", task_yaml(name="123").replace("name: 123", "name: 123"), True),
        ("name a list", "name: [a]\n" + task_yaml().split("\n", 1)[1], False),
        ("data a string", "name: mini\ndata: d.jsonl\n", False),
        ("fields a list", "name: mini\ndata: {train: d.jsonl}\nfields: [q, a]\n", False),
        ("fields.output null", "name: mini\ndata: {train: d.jsonl}\nfields: {input: q, output: null}\n", False),
        ("labels a string", task_yaml(more="labels: answer 0\n"), False),
        ("one label", task_yaml(more="labels: [answer 0]\n"), False),
        ("labels yes/no", task_yaml(more="labels: [yes, no]\n"), False),
        ("metric unknown", task_yaml(more="metric: accuracyy\n"), False),
        ("accuracy without labels", task_yaml(more="metric: accuracy\n"), False),
        ("template unknown placeholder", task_yaml(more="prompt: {template: 'Q: {question}'}\n"), False),
        ("template unbalanced brace", task_yaml(more="prompt: {template: 'Q: {input'}\n"), False),
        ("template positional", task_yaml(more="prompt: {template: 'Q: {0}'}\n"), False),
        ("template attribute", task_yaml(more="prompt: {template: 'Q: {input.upper}'}\n"), False),
        ("template format spec", task_yaml(more="prompt: {template: 'Q: {input:>99999999}'}\n"), False),
        ("test_fraction 0", task_yaml().replace("train: d.jsonl", "train: d.jsonl, test_fraction: 0"), False),
        ("test_fraction 1.5", task_yaml().replace("train: d.jsonl", "train: d.jsonl, test_fraction: 1.5"), False),
        ("test_fraction a string", task_yaml().replace("train: d.jsonl", "train: d.jsonl, test_fraction: half"), False),
        ("test_fraction true", task_yaml().replace("train: d.jsonl", "train: d.jsonl, test_fraction: true"), False),
        ("format unknown", task_yaml().replace("train: d.jsonl", "train: d.jsonl, format: xml"), False),
        ("judge rubric blank", task_yaml(more="judge: {rubric: '  '}\n"), False),
        ("judge scale 1", task_yaml(more="judge: {rubric: good, scale: 1}\n"), False),
        ("duplicate key", task_yaml() + "name: other\n", False),
        (
            "alias bomb",
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7))
            + task_yaml(),
            False,
        ),
        ("python tag", task_yaml(more="description: !!python/object/apply:os.system ['true']\n"), False),
        ("binary garbage", "\x00\x01\x02garbage\xff", False),
        ("name of spaces", task_yaml(name="'   '"), False),
        ("description a mapping", task_yaml(more="description: {a: 1}\n"), False),
    ):
        cases[f"task.yaml: {what}"] = TaskCase(dict(data), text, meaningful)
    # files where they should not be, and links
    cases["data.train missing"] = TaskCase({}, task_yaml())
    cases["data.train a folder"] = TaskCase({"d.jsonl/x": "y"}, task_yaml())
    cases["data.train a .txt"] = TaskCase({"d.txt": "q a\n"}, task_yaml(train="d.txt"))
    cases["data.train empty string"] = TaskCase(data, task_yaml(train="''"))
    cases["data.train symlink loop"] = TaskCase({}, task_yaml(), links={"d.jsonl": "d.jsonl"})
    cases["data.train dangling symlink"] = TaskCase({}, task_yaml(), links={"d.jsonl": "nowhere.jsonl"})
    cases["data.train symlink inside"] = TaskCase(
        {"real.jsonl": good()}, task_yaml(), meaningful=True, links={"d.jsonl": "real.jsonl"}
    )
    cases["data.train up and out"] = TaskCase({}, task_yaml(train="../elsewhere/d.jsonl"))
    cases["data.train absolute"] = TaskCase({}, task_yaml(train="{elsewhere}/d.jsonl"))
    cases["data.train symlink out"] = TaskCase({}, task_yaml(), links={"d.jsonl": "{elsewhere}/d.jsonl"})
    cases["data.test symlink out"] = TaskCase(
        data,
        task_yaml().replace("train: d.jsonl", "train: d.jsonl, test: t.jsonl"),
        links={"t.jsonl": "{elsewhere}/d.jsonl"},
    )
    cases["task.yaml a folder"] = TaskCase({**data, "task.yaml/x": "y"}, "")
    # corpora
    corpus = task_yaml(more="corpus: {path: docs}\n")
    docs = task_yaml(more="corpus: {path: docs.jsonl}\n")
    for what, files, text, links, meaningful in (
        ("path missing", {}, corpus, {}, False),
        ("a folder of .pdf", {"docs/a.pdf": b"%PDF-1.4"}, corpus, {}, False),
        ("jsonl without text", {"docs.jsonl": b'{"id": "a"}\n'}, docs, {}, False),
        ("jsonl text a number", {"docs.jsonl": b'{"id": "a", "text": 5}\n'}, docs, {}, False),
        ("jsonl id null", {"docs.jsonl": b'{"id": null, "text": "x"}\n'}, docs, {}, False),
        ("jsonl invalid", {"docs.jsonl": b'{"id": "a", "text": "x"\n'}, docs, {}, False),
        ("jsonl empty", {"docs.jsonl": b""}, docs, {}, False),
        ("a .txt file", {"docs.txt": b"one document"}, task_yaml(more="corpus: {path: docs.txt}\n"), {}, False),
        ("a symlink loop in the folder", {"docs/a.txt": "text"}, corpus, {"docs/loop": "."}, True),
        ("symlinked up and out", {}, corpus, {"docs": "{elsewhere}"}, False),
        ("a file symlinked out", {"docs/a.txt": "fine"}, corpus, {"docs/b.txt": "{elsewhere}/a.txt"}, False),
        ("path up and out", {}, task_yaml(more="corpus: {path: ../elsewhere}\n"), {}, False),
        (
            "gold doc_id not in the corpus",
            {jsonl: encode([record("fields", i, doc="nope") for i in range(10)], "jsonl"), "docs/a.txt": "x"},
            corpus.replace("id: key}", "id: key, doc_id: doc}"),
            {},
            False,
        ),
    ):
        cases[f"corpus: {what}"] = TaskCase({**data, **files}, text, meaningful, links)
    # preference pairs
    pairs = "fields: {input: q, output: a, id: key, chosen: c, rejected: r}\n"
    pair_yaml = "name: mini\ndata: {train: d.jsonl}\n" + pairs
    for what, records in (
        (
            "rejected missing in a record",
            [record("fields", i, c="good", r=DROP if i == 3 else "bad") for i in range(10)],
        ),
        ("chosen empty", [record("fields", i, c="" if i == 3 else "good", r="bad") for i in range(10)]),
        ("chosen a list", [record("fields", i, c=["a"] if i == 3 else "good", r="bad") for i in range(10)]),
    ):
        cases[f"preference: {what}"] = TaskCase({jsonl: encode(records, "jsonl")}, pair_yaml)
    cases["preference: only chosen named"] = TaskCase(
        data, "name: mini\ndata: {train: d.jsonl}\nfields: {input: q, output: a, chosen: c}\n"
    )
    cases["preference: chosen equals rejected"] = TaskCase(
        {jsonl: encode([record("fields", i, c="same", r="same") for i in range(10)], "jsonl")}, pair_yaml
    )
    cases.update(conversation_cases())
    cases.update(dataset_cases())
    return cases


def conversation(i: int, *turns: tuple[str, object]) -> dict:
    """A ShareGPT record: turns given, else a good two-exchange conversation."""
    turns = turns or (("human", f"question {i}"), ("gpt", "which one?"), ("human", "this one"), ("gpt", f"a{i % 2}"))
    return {"id": f"k{i}", "conversations": [{"from": who, "value": text} for who, text in turns]}


def conversation_cases() -> dict[str, TaskCase]:
    """ShareGPT and multi-turn chat records broken one way each (the fourth record of ten)."""
    sharegpt = "name: mini\ndata: {train: d.jsonl, format: sharegpt}\n"
    bad_turns = {
        "two human turns in a row": (("human", "q"), ("human", "q again"), ("gpt", "a")),
        "ends with the human": (("human", "q"), ("gpt", "a"), ("human", "and?")),
        "a tool call turn": (("human", "q"), ("function_call", "{}"), ("gpt", "a")),
        "an unknown speaker": (("human", "q"), ("robot", "a")),
        "an empty earlier answer": (("human", "q"), ("gpt", ""), ("human", "q2"), ("gpt", "a")),
        "a value that is a list": (("human", ["q"]), ("gpt", "a")),
        "system in the middle": (("human", "q"), ("system", "be brief"), ("gpt", "a")),
    }
    cases = {
        f"sharegpt: {what}": TaskCase(
            {"d.jsonl": encode([conversation(i, *turns) if i == 3 else conversation(i) for i in range(10)], "jsonl")},
            sharegpt,
        )
        for what, turns in bad_turns.items()
    }
    cases["sharegpt: good, several turns"] = TaskCase(
        {"d.jsonl": encode([conversation(i) for i in range(10)], "jsonl")}, sharegpt, meaningful=True
    )
    cases["sharegpt: records given as chat"] = TaskCase(
        {"d.jsonl": encode([conversation(i) for i in range(10)], "jsonl")}, task_yaml("chat")
    )
    cases["sharegpt: conversations is a string"] = TaskCase(
        {"d.jsonl": encode([{"conversations": "human: hi"} for _ in range(10)], "jsonl")}, sharegpt
    )
    return cases


def dataset_cases() -> dict[str, TaskCase]:
    """`data:` naming a dataset (datasets library) wrongly: out of the folder, not one, mixed with files."""
    fields = "fields: {input: q, output: a, id: key}\n"
    saved = {"ds/state.json": "{not json", "ds/dataset_info.json": "{}"}
    return {
        f"dataset: {what}": TaskCase(files, f"name: mini\ndata: {data}\n" + fields, links=links)
        for what, files, data, links in (
            ("folder up and out", {}, "{dataset: ../elsewhere}", {}),
            ("folder symlinked out", {}, "{dataset: ds}", {"ds": "{elsewhere}"}),
            ("a hub id that is a path", {}, "{hub: ../../etc}", {}),
            ("an uncached hub id offline", {}, "{hub: nobody/nothing-here}", {}),
            ("hub and dataset both", {}, "{hub: a/b, dataset: ds}", {}),
            ("a folder with no data", {"ds/readme.txt": "nothing"}, "{dataset: ds}", {}),
            ("a torn save_to_disk folder", saved, "{dataset: ds}", {}),
            ("a split that is not there", {"d.jsonl": good()}, "{dataset: ., train: nope}", {}),
            ("limit zero", {"d.jsonl": good()}, "{train: d.jsonl, limit: 0}", {}),
        )
    }


def build_task(root: Path, case: TaskCase) -> Path:
    folder, elsewhere = root / "mini", root / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / "d.jsonl").write_text("".join(json.dumps(record("fields", i, q=SECRET)) + "\n" for i in range(10)))
    (elsewhere / "a.txt").write_text(SECRET)
    folder.mkdir()
    for name, content in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    for name, target in case.links.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.replace("{elsewhere}", str(elsewhere)), folder / name)
    if not (folder / "task.yaml").exists():
        (folder / "task.yaml").write_bytes(
            case.yaml.replace("{elsewhere}", str(elsewhere)).encode("utf-8", "surrogateescape")
        )
    return folder


# Python's text of a value that is not text: what a missing, binary or structured value becomes through str()
PYTHON_TEXT = re.compile(r"b'.*'|nan|-?inf|None|True|False|\[.*\]|\{.*\}|array\(.*\)", re.DOTALL)


def run_before_cells(recipe_path: Path) -> list[str]:
    """What `harness run` does with the recipe's task before any cell, and what a cell does with its data:
    the pre-flight, the task with its validation cut, the floor, every prompt, the corpus. Returns every
    text the task's data put into a prompt, an answer or the corpus (for the escape check)."""
    from harness import preflight, prompting
    from harness.analysis import floor
    from harness.config import load_recipe
    from harness.retrieval import load_corpus
    from harness.tasks import heldout_examples, load_task, with_validation

    recipe = load_recipe(str(recipe_path))
    preflight.check(recipe, str(recipe_path))
    texts = []
    for ref in recipe.tasks:
        task = with_validation(load_task(ref), recipe.eval.validation)
        held = list(heldout_examples(task, recipe.eval.heldout.limit))
        floor.floor(task, held, recipe.run_seeds, 50, recipe.seed)
        shots = prompting.draw_shots(task, 1, recipe.seed)
        for example in (*task.train, *task.validation, *task.test):
            texts += [m["content"] for m in prompting.messages(task, example, shots)] + [example.output]
        if task.corpus_path is not None:
            texts += [text for _, text in load_corpus(task.corpus_path)]
    return texts


def probe_task_case(root: Path, name: str, case: TaskCase) -> Case:
    folder = build_task(root, case)
    recipe = root / "r.yaml"
    recipe.write_text(TASK_RECIPE.format(task=folder))
    names = (str(folder), str(recipe))  # an error names a file in the task folder, or the recipe
    code, output, exception = cli("validate", recipe)
    outcome = error_outcome(code, output, exception, names)
    if outcome is not None:
        return Case("tasks", name, outcome, (output or repr(exception)).strip()[:300])
    texts: list[str] = []
    outcome, message = user_error(lambda: texts.extend(run_before_cells(recipe)))
    shown = [t for t in texts if PYTHON_TEXT.fullmatch(t)]
    if outcome is not None:
        if outcome == "clear error" and not any(n in message for n in names):
            outcome = "traceback"
        return Case("tasks", name, outcome, f"(after validate passed) {message.strip()[:300]}")
    if any(SECRET in text for text in texts):
        return Case("tasks", name, "escaped", "the task read a file outside its folder")
    if shown:  # a value that reached a prompt or an answer as Python's text of it
        return Case("tasks", name, "wrongly accepted", f"read as {shown[0]!r}")
    return Case("tasks", name, "accepted" if case.meaningful else "wrongly accepted", output.strip()[:200])


def probe_each(cases: dict, rng: random.Random, limit: int | None, probe: Callable[[Path, str], Case]) -> list[Case]:
    """probe(root, name) for every case (or a seeded sample of `limit`), each in a fresh folder of its own."""
    names = sorted(cases)
    if limit is not None:
        names = rng.sample(names, min(limit, len(names)))
    with tempfile.TemporaryDirectory() as tmp:
        roots = [Path(tmp) / str(n) for n in range(len(names))]
        for root in roots:
            root.mkdir()
        return [probe(root, name) for root, name in zip(roots, names)]


def tasks_family(rng: random.Random, limit: int | None = None) -> list[Case]:
    cases = task_cases()
    results = probe_each(cases, rng, limit, lambda root, name: probe_task_case(root, name, cases[name]))
    # the bundled test cases (tests/test_task_errors.py), each a folder of its own
    if limit is None:
        import test_task_errors

        with tempfile.TemporaryDirectory() as tmp:
            for n, name in enumerate(test_task_errors.CASES):
                root = Path(tmp) / str(n)
                root.mkdir()
                folder = test_task_errors.build(root, name)
                (root / "r.yaml").write_text(TASK_RECIPE.format(task=folder))
                code, output, exception = cli("validate", root / "r.yaml")
                outcome = error_outcome(code, output, exception, ("task.yaml", "r.yaml", "d.", "docs"))
                results.append(
                    Case("tasks", f"test_task_errors: {name}", outcome or "wrongly accepted", output.strip()[:300])
                )
    return results


# --- paths: reading or writing outside the allowed folders, and colliding ids ---------------------------------


@contextlib.contextmanager
def watched(root: Path, allowed: Path) -> Iterator[list[Path]]:
    """The files that appeared or changed under `root` outside `allowed` while the block ran."""

    def snapshot():
        return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and not p.is_symlink()}

    before, written = snapshot(), []
    yield written
    written += [p for p, mtime in snapshot().items() if before.get(p) != mtime and not p.is_relative_to(allowed)]


def path_task_case(name: str, case: TaskCase) -> Callable[[Path], Case]:
    def probe(root: Path) -> Case:
        result = probe_task_case(root, name, case)
        result.family = "paths"
        return result

    return probe


def crafted_run(run_dir: Path, task: str = "t", technique: str = "a", plugins=()) -> Path:
    """A stored run whose results.json names this task and technique (as someone may have written it)."""
    from test_trust import scored_run

    store = scored_run(run_dir, task, plugins)
    if technique != "a":
        data = json.loads(store.results_path.read_text())
        for row in data["rows"]:
            row["technique"] = technique if row["technique"] == "a" else row["technique"]
        store.results_path.write_text(json.dumps(data))
    return run_dir


def report_case(
    task: str = "t", technique: str = "a", command: str = "report", link: str | None = None
) -> Callable[[Path], Case]:
    """`harness report` (or check/compare) on a crafted results.json, `link` in its folder a symlink to a folder
    outside (`plots`) or a file outside (`REPORT.md`): nothing written outside the run folder."""

    def probe(root: Path) -> Case:
        run_dir = crafted_run(root / "deep" / "run", task, technique)
        if link is not None:
            target = root / "outside" / ("victim.md" if "." in link else "")
            (root / "outside").mkdir(exist_ok=True)
            if "." in link:
                target.write_text(SECRET)
            if (run_dir / link).is_dir():
                import shutil

                shutil.rmtree(run_dir / link)
            (run_dir / link).unlink(missing_ok=True)
            os.symlink(target, run_dir / link)
        args = {
            "report": ("report", run_dir),
            "csv": ("report", run_dir, "--format", "csv"),
            "pr": ("report", run_dir, "--format", "pr"),
            "check": ("check", run_dir, "--baseline", run_dir),
            "compare": ("compare", run_dir, run_dir),
        }[command]
        with watched(root, run_dir) as written:
            code, output, exception = cli(*args)
        if written:
            return Case("paths", "", "escaped", f"wrote {', '.join(map(str, written))}")
        if link is not None and "." in link and SECRET not in (root / "outside" / "victim.md").read_text():
            return Case("paths", "", "escaped", f"overwrote the file {link} links to")
        if SECRET in output:
            return Case("paths", "", "escaped", "read a file outside the run folder")
        outcome = error_outcome(code, output, exception, ("results.json",))
        if outcome == "traceback" and code == 1 and exception is None and command == "check":
            outcome = None  # check exits 1 for a regression: a verdict, not an error
        return Case("paths", "", outcome or "accepted", output.strip()[:200])

    return probe


def recipe_case(text: str, check: Callable[[Path, Path], str | None] | None = None) -> Callable[[Path], Case]:
    """`harness validate` on a recipe (`{root}`: the case's folder); `check(root, recipe)` says how an
    accepted recipe escaped (None: it stayed inside)."""

    def probe(root: Path) -> Case:
        (root / "repo" / ".git").mkdir(parents=True)
        (root / "outside").mkdir()
        (root / "outside" / "mark.py").write_text(
            "from pathlib import Path\nPath(__file__).with_suffix('.ran').touch()\n"
        )
        recipe = root / "repo" / "r.yaml"
        recipe.write_text(text.replace("{root}", str(root)))
        with watched(root, root / "repo" / "reports") as written:
            code, output, exception = cli("validate", recipe)
        if (root / "outside" / "mark.ran").exists():
            return Case("paths", "", "escaped", "validate ran a plugin's code")
        if written:
            return Case("paths", "", "escaped", f"validate wrote {', '.join(map(str, written))}")
        outcome = error_outcome(code, output, exception, ("r.yaml",))
        if outcome is not None:
            return Case("paths", "", outcome, output.strip()[:300])
        escaped = check(root, recipe) if check else None
        return Case("paths", "", "escaped" if escaped else "accepted", escaped or output.strip()[:200])

    return probe


def run_folder_outside(root: Path, recipe: Path) -> str | None:
    from harness import pipeline
    from harness.config import load_recipe

    path = pipeline.new_run_dir(load_recipe(str(recipe)))
    return None if path.resolve().is_relative_to((root / "repo" / "reports").resolve()) else f"run folder {path}"


BASE_RECIPE = (
    "name: {name}\nmodel: random:tiny-llama\ntask: ticket-routing\n"
    "techniques:\n  - {{name: {technique}, kind: prompt}}\n"
)


def two_tasks_of_one_name(root: Path) -> Case:
    import shutil

    for side in ("a", "b"):
        shutil.copytree(REPO / "tasks" / "ticket-routing", root / side / "mini")
    recipe = root / "r.yaml"
    recipe.write_text(
        BASE_RECIPE.format(name="x", technique="t").replace(
            "task: ticket-routing", f"task: [{root}/a/mini, {root}/b/mini]"
        )
    )
    code, output, exception = cli("validate", recipe)
    return Case(
        "paths", "", error_outcome(code, output, exception, ("r.yaml",)) or "wrongly accepted", output.strip()[:200]
    )


def train_sizes_colliding(root: Path) -> Case:
    recipe = root / "r.yaml"
    recipe.write_text(
        BASE_RECIPE.format(name="x", technique="t").replace("kind: prompt}", "kind: lora, train: {max_steps: 1}}")
        + "train_sizes: [0, all]\n"
    )
    code, output, exception = cli("validate", recipe)
    return Case(
        "paths", "", error_outcome(code, output, exception, ("r.yaml",)) or "wrongly accepted", output.strip()[:200]
    )


def report_imports_no_plugin(root: Path) -> Case:
    mark = root / "outside" / "mark.py"
    mark.parent.mkdir()
    mark.write_text("from pathlib import Path\nPath(__file__).with_suffix('.ran').touch()\n")
    run_dir = crafted_run(root / "run", plugins=[str(mark)])
    code, output, exception = cli("report", run_dir)
    if mark.with_suffix(".ran").exists():
        return Case("paths", "", "escaped", "report ran a plugin named in results.json")
    return Case(
        "paths", "", error_outcome(code, output, exception, ("results.json",)) or "accepted", output.strip()[:200]
    )


def path_cases() -> dict[str, Callable[[Path], Case]]:
    tasks = task_cases()
    cases = {
        f"task {name}": path_task_case(name, tasks[name])
        for name in (
            "data.train up and out",
            "data.train absolute",
            "data.train symlink out",
            "data.test symlink out",
            "corpus: path up and out",
            "corpus: symlinked up and out",
            "corpus: a file symlinked out",
        )
    }
    lm_eval = (
        BASE_RECIPE.format(name="x", technique="t") + "eval:\n  lm_eval:\n    tasks: [x]\n    include_path: [{path}]\n"
    )
    cases |= {
        "lm_eval include_path /etc": recipe_case(lm_eval.replace("{path}", "/etc")),
        "lm_eval include_path ../..": recipe_case(lm_eval.replace("{path}", "../../outside")),
        "lm_eval include_path a symlink out": recipe_case(lm_eval.replace("{path}", "{root}/repo/link"), None),
        "plugin outside the repository, validate": recipe_case(
            BASE_RECIPE.format(name="x", technique="t") + "plugins: ['{root}/outside/mark.py']\n"
        ),
        "plugin by ../ path, validate": recipe_case(
            BASE_RECIPE.format(name="x", technique="t") + "plugins: [../outside/mark.py]\n"
        ),
        "recipe name ../../up": recipe_case(BASE_RECIPE.format(name="../../up", technique="t"), run_folder_outside),
        "recipe name absolute": recipe_case(BASE_RECIPE.format(name="/tmp/abs", technique="t"), run_folder_outside),
        "technique name ../x": recipe_case(BASE_RECIPE.format(name="x", technique="'../x'")),
        "technique name with a NUL": recipe_case(BASE_RECIPE.format(name="x", technique='"a\\0b"')),
        "output_dir /dev/null": recipe_case(BASE_RECIPE.format(name="x", technique="t") + "output_dir: /dev/null\n"),
        "output_dir a file": recipe_case(BASE_RECIPE.format(name="x", technique="t") + "output_dir: r.yaml\n"),
        "report imports no plugin from results.json": report_imports_no_plugin,
        "two tasks of one name (collision)": two_tasks_of_one_name,
        "train_sizes 0 and all (collision)": train_sizes_colliding,
    }
    for task in ("../../escape", "/tmp-escape", ".hidden", "x" * 300, "nul\x00byte", "..", "a\\b"):
        cases[f"results.json task {task[:20]!r}, report"] = report_case(task=task)
    for technique in ("../../escape", "/abs/x", "..", "nul\x00byte"):
        for command in ("report", "csv", "check", "compare"):
            cases[f"results.json technique {technique!r}, {command}"] = report_case(
                technique=technique, command=command
            )
    for link in ("plots", "REPORT.md", "predictions", "results.csv"):
        cases[f"run folder's {link} a symlink out, report"] = report_case(link=link)
    cases["results.json task '../../escape', report --format pr"] = report_case(task="../../escape", command="pr")
    return cases


def paths_family(rng: random.Random, limit: int | None = None) -> list[Case]:
    cases = path_cases()

    def probe(root: Path, name: str) -> Case:
        if name == "lm_eval include_path a symlink out":
            (root / "repo").mkdir()
            os.symlink("/etc", root / "repo" / "link")
        result = cases[name](root)
        result.name = name
        return result

    return probe_each(cases, rng, limit, probe)


# --- kills -----------------------------------------------------------------------------------------------


def kills_family(rng: random.Random, seeds: int = 5, kills: int = 3) -> list[Case]:
    from conftest import build_tiny_model
    from test_kill_resume import kill_and_resume, multi_task_recipe

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        for seed in range(seeds):
            folder = Path(tmp) / f"seed-{seed}"

            def write(name: str, text: str, folder=folder) -> Path:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(text)
                return folder / name

            out = folder / "out"
            try:
                tally = kill_and_resume(multi_task_recipe(write, model, out), out, folder / "driver.log", seed, kills)
            except Exception:  # noqa: BLE001 — the machinery itself failed (a run ended before its kill, ...)
                results.append(Case("kills", f"seed {seed}", "traceback", traceback.format_exc(limit=-2)))
                continue
            lost = (
                tally["lost_rows"] + tally["redone_cells"] + tally["torn_files"] + tally["resume_failed"]
                or tally["problems"]
            )
            for point in range(tally["points"]):
                last = point == tally["points"] - 1
                results.append(
                    Case(
                        "kills",
                        f"seed {seed}, kill {point + 1}",
                        "lost" if last and lost else "accepted",
                        "; ".join(tally["problems"])[:400] if last else "",
                    )
                )
            print(
                f"  kills seed {seed}: {tally['points']} point(s), lost rows {tally['lost_rows']}, redone cells "
                f"{tally['redone_cells']}, torn files {tally['torn_files']}, resume failed {tally['resume_failed']}",
                flush=True,
            )
    return results


# --- endpoints -------------------------------------------------------------------------------------------

# behaviour -> (settings beyond the defaults, whether a valid answer comes in the end)
ENDPOINT_BEHAVIOURS = {
    "ok": ({}, True),
    "nan": ({}, False),
    "negative": ({}, False),
    "absurd": ({}, False),
    "string-usage": ({}, False),
    "bool-usage": ({}, False),
    "list-usage": ({}, False),
    "float-usage": ({}, True),
    "fractional-usage": ({}, False),
    "no-usage": ({}, True),
    "list-content": ({}, False),
    "number-content": ({}, False),
    "missing-choices": ({}, False),
    "empty-choices": ({}, False),
    "no-message": ({}, False),
    "tool-calls": ({}, True),  # no content: an empty answer, scored as such
    "array-body": ({}, False),
    "null-body": ({}, False),
    "not-json": ({}, False),
    "empty-body": ({}, False),
    "deep-json": ({}, False),
    "bad-utf8": ({}, False),
    "html-500": ({}, False),
    "500-then-ok": ({"max_retries": 2}, True),
    "429-then-ok": ({"max_retries": 2}, True),
    "retry-after-600": ({}, False),
    "retry-after-garbage": ({"max_retries": 1}, False),
    "401-echoes-key": ({}, False),
    "echo-key-in-content": ({}, True),
    "redirect": ({}, False),
    "redirect-same-origin": ({}, False),
    "404": ({}, False),
    "wrong-content-type": ({}, True),
    "gzip-garbage": ({}, False),
    "reset": ({}, False),
    "truncated-body": ({}, False),
    "not-http": ({}, False),
    "slow": ({"timeout_seconds": 0.5}, False),
    "drip": ({"timeout_seconds": 0.5}, False),
    "huge": ({}, False),
}
ENDPOINT_KEY = "sk-probe-hostile-5e6f7a8b9c"


def endpoints_family(rng: random.Random) -> list[Case]:
    """Each behaviour through the client, then all of them as the api cells of one `harness run` (with
    prices, so a cost would be computed from what they answer): the worse of the two outcomes counts."""
    from test_endpoint_hostile import Hostile

    server, elsewhere = Hostile(), Hostile()
    server.redirect_to = elsewhere.url("ok") + "/chat/completions"
    os.environ["HARNESS_PROBE_KEY"] = ENDPOINT_KEY
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = {b: endpoint_client_case(server, elsewhere, Path(tmp) / b, b) for b in ENDPOINT_BEHAVIOURS}
            cells = endpoint_run_cases(server, elsewhere, Path(tmp) / "run")
    finally:
        server.stop()
        elsewhere.stop()
        os.environ.pop("HARNESS_PROBE_KEY", None)
    order = ("accepted", "clear error", "wrongly accepted", "lost", "key leaked", "traceback")  # worse later
    results = []
    for behaviour, case in client.items():
        cell = cells.get(behaviour) or Case("endpoints", behaviour, "lost", "no row for its cell")
        worse = max((case, cell), key=lambda c: order.index(c.outcome))
        results.append(Case("endpoints", behaviour, worse.outcome, f"client: {case.detail} | cell: {cell.detail}"))
    return results


def endpoint_settings(behaviour: str) -> dict:
    settings, _ = ENDPOINT_BEHAVIOURS[behaviour]
    return {"max_retries": 0, "backoff_seconds": 0.01, "api_key_env": "HARNESS_PROBE_KEY"} | settings


def endpoint_client_case(server, elsewhere, cache: Path, behaviour: str) -> Case:
    from harness.endpoint import Endpoint, EndpointError
    from harness.techniques.api import ApiTechnique

    os.environ["HARNESS_CACHE"] = str(cache)
    settings = endpoint_settings(behaviour)
    spec = ApiTechnique(kind="api", name="x", base_url=server.url(behaviour), model="m", **settings)
    start, reply, error, text = time.monotonic(), None, None, ""
    try:
        reply = Endpoint(spec, max_tokens=4).chat([{"role": "user", "content": "hi"}])
        text = repr(reply)
    except EndpointError as exc:
        error = text = str(exc)
    except Exception:  # noqa: BLE001
        return Case("endpoints", behaviour, "traceback", traceback.format_exc(limit=-3))
    took = time.monotonic() - start
    stored = "".join(p.read_text(errors="replace") for p in cache.rglob("*") if p.is_file())
    valid = ENDPOINT_BEHAVIOURS[behaviour][1]
    if ENDPOINT_KEY in text + stored or any(k for _, k in elsewhere.seen):
        return Case("endpoints", behaviour, "key leaked", text[:200])
    if took > spec.timeout_seconds * (spec.max_retries + 1) + 5:
        return Case("endpoints", behaviour, "lost", f"held {took:.1f}s")
    if reply is not None:
        return Case("endpoints", behaviour, "accepted" if valid else "wrongly accepted", text[:200])
    if valid:
        return Case("endpoints", behaviour, "lost", f"a valid answer refused: {error}")
    return Case("endpoints", behaviour, "clear error", (error or "")[:200])


def endpoint_run_cases(server, elsewhere, folder: Path) -> dict[str, Case]:
    """Every behaviour as an api technique of one run (two held-out examples each): its row, by behaviour."""
    folder.mkdir()
    os.environ["HARNESS_CACHE"] = str(folder / "cache")
    techniques = "".join(
        "  - "
        + json.dumps(
            {"name": b, "kind": "api", "base_url": server.url(b), "model": "m", "concurrency": 1}
            | {"usd_per_1k_tokens": {"input": 1.0, "output": 2.0}}
            | endpoint_settings(b)
        )
        + "\n"
        for b in ENDPOINT_BEHAVIOURS
    )
    recipe = folder / "r.yaml"
    recipe.write_text(
        f"name: probe\nmodel: random:tiny-llama\ntask: ticket-routing\noutput_dir: {folder / 'out'}\n"
        f"techniques:\n{techniques}eval: {{heldout: {{limit: 2, max_new_tokens: 4, bootstrap_samples: 100}}}}\n"
    )
    code, output, exception = cli("run", recipe)
    run_dirs = list((folder / "out" / "probe").glob("*"))
    if exception is not None or len(run_dirs) != 1 or not (run_dirs[0] / "REPORT.md").is_file():
        detail = f"the run was lost: exit {code}, {exception!r}: {output[-300:]}"
        return {b: Case("endpoints", b, "lost", detail) for b in ENDPOINT_BEHAVIOURS}
    try:
        rows = {r["technique"]: r for r in json.loads((run_dirs[0] / "results.json").read_text())["rows"]}
    except ValueError as exc:
        return {b: Case("endpoints", b, "lost", f"results.json does not read: {exc}") for b in ENDPOINT_BEHAVIOURS}
    written = "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p != recipe)
    cases = {}
    for behaviour, (_, valid) in ENDPOINT_BEHAVIOURS.items():
        row = rows.get(behaviour)
        if row is None:
            continue
        cost = row.get("cost_usd")
        if ENDPOINT_KEY in written or any(k for _, k in elsewhere.seen):
            outcome, detail = "key leaked", "the key is in the run folder or the cache"
        elif row["status"] == "ok":
            sane = cost is None or (isinstance(cost, float) and 0 <= cost < 1)  # 2 requests of ~12 tokens
            outcome = "accepted" if valid and sane else "wrongly accepted"
            detail = f"ok, cost {cost}"
        elif "Traceback" in (row.get("error") or "") or not (row.get("error") or "").strip():
            outcome, detail = "traceback", row.get("error") or "no reason"
        else:
            outcome = "lost" if valid else "clear error"
            detail = row["error"][:200]
        cases[behaviour] = Case("endpoints", behaviour, outcome, detail)
    return cases


# --- recipes ---------------------------------------------------------------------------------------------


def recipes_family(rng: random.Random, per_recipe: int = 230) -> list[Case]:
    import probe_recipes

    tally, odd, tracebacks = probe_recipes.probe(per_recipe)
    results = [Case("recipes", f"#{n}", "clear error") for n in range(tally["clear error"])]
    results += [Case("recipes", line, "traceback", line) for line in tracebacks]
    meaningless = [line for line in odd if not line.endswith(("= [] accepted", "= {} accepted"))]
    results += [Case("recipes", line, "wrongly accepted", line) for line in meaningless]
    results += [Case("recipes", f"accepted #{n}", "accepted") for n in range(tally["accepted"] - len(meaningless))]
    return results


# --- the table -------------------------------------------------------------------------------------------

FAMILIES: dict[str, Callable[[random.Random], list[Case]]] = {
    "recipes": recipes_family,
    "tasks": tasks_family,
    "paths": paths_family,
    "kills": kills_family,
    "endpoints": endpoints_family,
}


def table(results: dict[str, list[Case]]) -> str:
    lines = ["| family | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    totals: Counter = Counter()
    for family, cases in results.items():
        counts = Counter(c.outcome for c in cases)
        counts["cases"] = len(cases)
        totals += counts
        lines.append(f"| {family} | " + " | ".join(f"{counts[c]:,}" for c in COLUMNS) + " |")
    lines.append("| **total** | " + " | ".join(f"{totals[c]:,}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", help="run only these (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="list every case, not only the defects")
    args = parser.parse_args()
    results = {}
    for family in args.family or FAMILIES:
        start = time.monotonic()
        cases = FAMILIES[family](random.Random(f"{args.seed}/{family}"))
        results[family] = cases
        print(f"{family}: {len(cases)} cases in {time.monotonic() - start:.0f}s", flush=True)
        for case in cases:
            defect = case.outcome not in ("clear error", "accepted")
            if defect or (args.verbose and family != "recipes"):
                print(f"  {case.outcome:>16}  {case.name}: {' '.join(case.detail.split())[:300]}", flush=True)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
