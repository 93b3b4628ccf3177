"""`harness task init SOURCE --name NAME`: a task folder written from a data file, its task.yaml commented.

What is inferred from the records, and how (each choice is explained again in task.yaml's comments):

- the **shape**: chat (`messages` lists of {role, content}), alpaca (instruction / input / output), or
  columns mapped by `fields:`;
- each **field** by its column's name (`question`, `text`, `answer`, `label`, ...), else by content: the
  id is a column whose values are all distinct, the input the column with the longest texts;
- a **label** column: the answer column when it has few distinct short values (at most `MAX_LABELS`, at
  most half as many as rows), and then the labels and a classification metric (accuracy; macro-F1 when the
  labels are imbalanced); otherwise a free-text metric by the answers' length.

`write_task(folder, name, records, data)` is the one entry: it takes the records and the `data:` block
to write, so a source other than a file (a dataset) plugs in by reading its records and naming itself in
`data:`. `init_from_file` is the file source: it copies the file into the folder.
"""

from __future__ import annotations

import json
import numbers
import shutil
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.analysis.floor import IMBALANCE_RATIO
from harness.tasks import load_task, read_records
from harness.yamlconfig import ConfigError

MAX_LABELS = 50  # more distinct answers than this is free text, not a label set
MAX_LABEL_WORDS = 5  # a label is a word or a short phrase
SHORT_ANSWER_WORDS = 3  # median answer length up to which `contains` is proposed (else rouge_l)

# Column names, most telling first; matched case-insensitively, also as a suffix (question_text).
NAMES: dict[str, tuple[str, ...]] = {
    "id": ("id", "uid", "guid", "idx", "example_id", "qid", "key"),
    "output": (
        "output",
        "answer",
        "label",
        "target",
        "response",
        "completion",
        "category",
        "class",
        "intent",
        "gold",
        "reference",
        "summary",
        "solution",
        "y",
    ),
    "input": (
        "input",
        "question",
        "text",
        "prompt",
        "query",
        "message",
        "sentence",
        "content",
        "utterance",
        "review",
        "problem",
        "source",
        "x",
    ),
    "instruction": ("instruction", "system", "system_prompt"),
    "context": ("context", "passage", "document", "article", "background", "evidence"),
    "choices": ("choices", "options"),
}


@dataclass
class Proposal:
    """What init infers from the records, with the reason for each choice (written as comments)."""

    format: str  # fields | alpaca | chat (or another shape the loader knows)
    fields: dict[str, str] = field(default_factory=dict)  # FieldMap key -> column (format fields only)
    labels: list[str] | None = None
    metric: str = "exact_match"
    why: dict[str, str] = field(default_factory=dict)  # "format", a field key, "labels", "metric" -> reason
    system: str | None = None
    template: str = "{input}"
    answers: list[str] = field(default_factory=list)  # each record's expected answer, as the loader reads it


def init_from_file(source: Path, name: str, out: Path | None = None, test: Path | None = None) -> Path:
    """A task folder (default tasks/NAME) for a JSONL/JSON/CSV/Parquet file (and a separate test file): the
    files copied in, task.yaml inferred from their records. Returns the folder."""
    folder = Path(out) if out is not None else Path("tasks") / name
    files = {"train": Path(source)} | ({"test": Path(test)} if test is not None else {})
    records = [record for path in files.values() for _, record in read_records(path)]
    names = {"train": files["train"].name}
    if test is not None:  # two files of one name (train/data.csv, test/data.csv) may not overwrite each other
        names["test"] = files["test"].name if files["test"].name != names["train"] else f"test{files['test'].suffix}"
    copies = {names[key]: path for key, path in files.items() if path.resolve() != (folder / names[key]).resolve()}
    origin = " and ".join(map(str, files.values())) + (f", copied here as {', '.join(copies)}" if copies else "")
    return write_task(folder, name, records, names, origin, copies)


INIT_ROWS = 5000  # the rows of a dataset's train split that init reads to infer the task (seeded sample)


def init_from_dataset(source: str, name: str, out: Path | None = None, config: str | None = None) -> Path:
    """A task folder for a dataset read with the `datasets` library: a local folder (hub-shaped data files or
    save_to_disk's output; copied in and named with `data.dataset`) or a hub id (named with `data.hub`;
    offline, read from the datasets cache). Its train split's records infer the task; a `test` split, when
    the dataset has one, is the test split."""
    from harness import datasources
    from harness.tasks import DataSpec

    folder = Path(out) if out is not None else Path("tasks") / name
    local = Path(source).is_dir()
    location: str | Path = Path(source) if local else source
    spec = DataSpec(**({"dataset": Path(source).name} if local else {"hub": source}), name=config, limit=INIT_ROWS)
    splits, _ = datasources.open_dataset(spec, location)
    data: dict = {"dataset": Path(source).name} if local else {"hub": source}
    data |= ({"name": config} if config else {}) | {"train": "train" if "train" in splits else next(iter(splits))}
    data |= {"test": "test"} if "test" in splits and data["train"] != "test" else {}
    records = [record for _, record in datasources.read_split(spec, location, data["train"]).rows]
    copies = {Path(source).name: Path(source)} if local else None
    return write_task(folder, name, records, data, f"dataset {source}" + (f" ({config})" if config else ""), copies)


def write_task(
    folder: Path, name: str, records: Sequence[object], data: dict, origin: str, copies: dict[str, Path] | None = None
) -> Path:
    """Write folder/task.yaml for `records` (every split's) with the `data:` block `data`, copying each of
    `copies` (name in the folder -> file) in; then load the task back, so what init writes is known to load."""
    if (folder / "task.yaml").exists():
        raise ConfigError(f"{folder / 'task.yaml'} exists already; choose another --out folder or remove it")
    rows = _dicts(records, origin)
    proposal = propose(rows)
    folder.mkdir(parents=True, exist_ok=True)
    for target, path in (copies or {}).items():
        if path.is_dir():  # a dataset folder
            shutil.copytree(path, folder / target)
        else:
            shutil.copyfile(path, folder / target)
    (folder / "task.yaml").write_text(task_yaml(name, data, proposal, origin, len(rows)))
    try:
        load_task(str(folder))
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}\n(task init wrote {folder / 'task.yaml'}, but it does not load as written: edit the fields "
            "it names, then `harness task check` it)"
        ) from None
    return folder


def _dicts(records: Sequence[object], origin: str) -> list[dict]:
    rows = [r for r in records if isinstance(r, dict)]
    if not rows:
        raise ConfigError(f"{origin}: no records with keys (objects or table rows) to infer a task from")
    if len(rows) != len(records):
        raise ConfigError(f"{origin}: every record must be an object with keys; some are not")
    return rows


def propose(rows: list[dict]) -> Proposal:
    """The task's shape, fields, labels, metric and prompt, inferred from its records."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lower = {str(c).lower(): c for c in columns}
    if _is_chat(rows, "messages"):
        proposal = Proposal(
            "chat",
            why={
                "format": "every record has a `messages` list of {role, content}: the last (assistant) turn is "
                "the answer, the user turn before it the question"
            },
        )
        proposal.answers = [_last_content(row["messages"]) for row in rows]
    elif _is_chat(rows, "conversations"):
        proposal = _sharegpt(rows)
    elif "instruction" in lower and "output" in lower:
        proposal = Proposal(
            "alpaca",
            why={"format": "the records have `instruction` and `output` (and `input`): the alpaca shape"},
        )
        proposal.answers = [_as_text(row.get(lower["output"])) for row in rows]
    else:
        proposal = _fields(rows, columns)
    _labels_and_metric(proposal)
    _prompt(proposal)
    return proposal


def _is_chat(rows: list[dict], key: str) -> bool:
    return all(isinstance(row.get(key), list) and row[key] and isinstance(row[key][0], dict) for row in rows)


def _last_content(messages: list) -> str:
    return _as_text(messages[-1].get("content") if isinstance(messages[-1], dict) else None)


def _sharegpt(rows: list[dict]) -> Proposal:
    """ShareGPT records (`conversations: [{from, value}]`)."""
    proposal = Proposal(
        "sharegpt",
        why={"format": "every record has a `conversations` list of {from, value}: the ShareGPT shape"},
    )
    proposal.answers = [_as_text(row["conversations"][-1].get("value")) for row in rows]
    return proposal


def _fields(rows: list[dict], columns: list) -> Proposal:
    proposal = Proposal("fields", why={"format": "records of named columns, mapped below"})
    free = [str(c) for c in columns]
    lower = {c.lower(): c for c in free}
    if "chosen" in lower and "rejected" in lower:  # a preference pair: the chosen answer is the target
        for key in ("chosen", "rejected"):
            proposal.fields[key] = free.pop(free.index(lower[key]))
            proposal.why[key] = f"column `{proposal.fields[key]}`: one side of a preference pair (DPO)"
        proposal.fields["output"] = proposal.fields["chosen"]
        proposal.why["output"] = "the chosen reply is the generation target"
    for key in ("id", "output", "input", "instruction", "context", "choices"):
        if key in proposal.fields:
            continue
        column = _by_name(key, free, rows)
        if column is not None:
            proposal.fields[key] = free.pop(free.index(column))
            proposal.why[key] = f"column `{column}`: its name"
    if "id" not in proposal.fields:
        column = next((c for c in free if _distinct_ids(c, rows) and c.lower().endswith("id")), None)
        if column is not None:
            proposal.fields["id"] = free.pop(free.index(column))
            proposal.why["id"] = f"column `{column}`: every value distinct"
    texts = sorted((c for c in free if _texts(c, rows)), key=lambda c: -_mean_length(c, rows))
    if "output" not in proposal.fields:
        labelled = next((c for c in texts if _label_like([_as_text(r.get(c)) for r in rows])), None)
        column = labelled or (texts[-1] if len(texts) > 1 else None)
        if column is None:
            raise ConfigError(_unmapped("output", "answer, label, target, response, output", columns))
        proposal.fields["output"] = column
        texts.remove(column)
        free.remove(column)
        proposal.why["output"] = f"column `{column}`: " + (
            "few distinct short values (a label)" if labelled else "a text column beside the input"
        )
    if "input" not in proposal.fields:
        if not texts:
            raise ConfigError(_unmapped("input", "input, question, text, prompt, message", columns))
        proposal.fields["input"] = texts[0]
        free.remove(texts[0])
        proposal.why["input"] = f"column `{texts[0]}`: the longest texts"
    proposal.answers = [_as_text(row.get(proposal.fields["output"])) for row in rows]
    if free:
        proposal.why["unused"] = ", ".join(f"`{c}`" for c in free)
    return proposal


def _by_name(key: str, columns: list[str], rows: list[dict]) -> str | None:
    for name in NAMES[key]:
        for column in columns:
            low = column.lower()
            if low == name or ((len(name) > 2 or key == "id") and low.endswith(("_" + name, " " + name))):
                if key == "id" and not _distinct_ids(column, rows):
                    continue  # the loader refuses a repeated id
                return column
    return None


def _distinct_ids(column: str, rows: list[dict]) -> bool:
    values = [row.get(column) for row in rows]
    return all(v is not None and str(v).strip() for v in values) and len(set(map(str, values))) == len(values)


def _texts(column: str, rows: list[dict]) -> bool:
    """Text or numbers in every row (numbers.Number: Parquet's numpy scalars too), not booleans or lists."""
    return all(isinstance(row.get(column), (str, numbers.Number)) and not _boolean(row.get(column)) for row in rows)


def _boolean(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's, from a Parquet file


def _mean_length(column: str, rows: list[dict]) -> float:
    return statistics.fmean(len(_as_text(row.get(column))) for row in rows)


def _as_text(value: object) -> str:
    return "" if value is None else str(value)


def _label_like(answers: list[str]) -> bool:
    """Few distinct short values, relative to the rows: a label set, not free text."""
    distinct = set(answers)
    return 2 <= len(distinct) <= min(MAX_LABELS, len(answers) // 2) and all(
        a.strip() and len(a.split()) <= MAX_LABEL_WORDS for a in distinct
    )


def _labels_and_metric(proposal: Proposal) -> None:
    answers = proposal.answers
    counts = Counter(answers)
    if proposal.format != "fields" or "chosen" in proposal.fields or not _label_like(answers):
        words = statistics.median(len(a.split()) for a in answers) if answers else 0
        if words <= SHORT_ANSWER_WORDS:
            proposal.metric = "contains"
            proposal.why["metric"] = (
                f"answers are short (median {words:g} word{'' if words == 1 else 's'}): the answer must state the "
                "expected one; exact_match if it must be exactly that and nothing else"
            )
        else:
            proposal.metric = "rouge_l"
            proposal.why["metric"] = (
                f"answers are free text (median {words:g} words): word overlap with the expected one gives partial "
                "credit; chrf or embedding_similarity are alternatives, and a `judge:` rubric grades meaning"
            )
        return
    proposal.labels = sorted(counts)
    shares = [n / len(answers) for n in counts.values()]
    imbalanced = max(shares) > IMBALANCE_RATIO * min(shares)
    proposal.why["labels"] = (
        f"{len(counts)} distinct answers over {len(answers)} records ("
        + ", ".join(f"{label} {n}" for label, n in counts.most_common())
        + "): a classification task"
    )
    proposal.metric = "macro_f1" if imbalanced else "accuracy"
    proposal.why["metric"] = (
        f"the labels are imbalanced (the largest share is over {IMBALANCE_RATIO:g}x the smallest): macro-F1 weighs "
        "every label alike, where accuracy would flatter always answering the commonest"
        if imbalanced
        else "the labels are about balanced: accuracy; macro_f1 weighs rare labels more"
    )


def _prompt(proposal: Proposal) -> None:
    fields = proposal.fields
    if proposal.labels:
        proposal.system = "Classify the text. Reply with exactly one label, nothing else."
        proposal.template = "Labels: {labels}\nText: {input}\nLabel:"
    if fields.get("context"):
        proposal.template = "{context}\n\n" + proposal.template
    if fields.get("choices"):
        proposal.template += "\nChoices: {choices}"


def task_yaml(name: str, data: dict, proposal: Proposal, origin: str, n_records: int) -> str:
    """task.yaml's text: each setting with a comment saying why it was chosen and what to change."""
    lines = [
        f"# Written by `harness task init` from {origin} ({n_records} records).",
        "# Every choice below is a guess from the data: read the comments, change what is wrong, then run",
        "# `harness task check` on this folder (sizes, labels, token lengths, leakage) before a recipe uses it.",
        f"name: {_yaml(name)}",
        "description: ''   # one line on what the task asks; shown by `harness tasks` and in reports",
        "data:",
        *[f"  {key}: {_yaml(value)}" for key, value in data.items()],
    ]
    if "test" not in data:
        lines += [
            "  test_fraction: 0.2   # held-out share cut from the data"
            + (", stratified by label" if proposal.labels else "")
            + "; or give a separate `test:` file",
            "  split_seed: 0        # fixes which examples are held out, for every run and technique",
        ]
    if proposal.format != "fields":
        lines.append(f"  format: {proposal.format}   # {proposal.why['format']}")
    else:
        lines.append(f"# {proposal.why['format']}; a column not named here is unused")
        lines.append("fields:")
        order = ("id", "instruction", "context", "input", "choices", "output", "chosen", "rejected")
        for key, column in sorted(proposal.fields.items(), key=lambda item: order.index(item[0])):
            lines.append(f"  {key}: {_yaml(column)}   # {proposal.why[key]}")
        if "unused" in proposal.why:
            lines.append(f"  # unused columns: {proposal.why['unused']} (map one as instruction, context or id)")
    if proposal.labels:
        lines.append(f"# {proposal.why['labels']}; a model's answer counts as the first label it names")
        lines.append(f"labels: {_yaml(proposal.labels)}")
    else:
        lines.append("# no label set: the answers are free text (add `labels: [...]` for a classification task)")
    lines.append(f"metric: {proposal.metric}   # {proposal.why['metric']}")
    lines.append("prompt:   # what the model reads; placeholders: {input} {instruction} {context} {choices} {labels}")
    if proposal.system:
        lines.append(f"  system: {_yaml(proposal.system)}   # say what the task is, in the model's words")
    else:
        lines.append(
            "  # system: a system message, e.g. 'Answer in one sentence.'; without it, each example's instruction "
            "(when it has one), else the chat template's default"
        )
    lines.append(f"  template: {_yaml(proposal.template)}")
    return "\n".join(lines) + "\n"


def _yaml(value: object) -> str:
    """A value as one line of YAML, quoted where YAML would read it as something else ('yes', '1.0', ': x')."""
    if isinstance(value, str) and "\n" in value:  # YAML would fold it over lines; JSON's escapes are YAML's too
        return json.dumps(value, ensure_ascii=False)
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
        .strip()
        .removesuffix("\n...")
    )


def _unmapped(key: str, names: str, columns: list) -> str:
    return (
        f"no column could be taken as the {key} (by name: {names}; or by content); the records have: "
        f"{', '.join(map(str, columns))}. Fix: rename that column, or write task.yaml's `fields:` by hand"
    )


def summary(folder: Path) -> list[str]:
    """What init wrote, for the terminal: the shape, the fields, labels and metric, the split sizes."""
    task = load_task(str(folder))
    spec = task.spec
    fields = ", ".join(f"{k}={v}" for k, v in spec.fields.model_dump(exclude_none=True).items())
    return [
        f"wrote {folder / 'task.yaml'}: format {spec.data.format}"
        + (f" ({fields})" if spec.data.format == "fields" else ""),
        f"{len(task.train)} train, {len(task.test)} test; metric {spec.metric}"
        + (f"; labels {', '.join(spec.labels)}" if spec.labels else ""),
        f"next: read its comments, then `harness task check {folder}`",
    ]
