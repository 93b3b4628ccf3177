"""Task folders: tasks/<name>/task.yaml plus data files, loaded into train and test examples.

A data file may be JSONL, JSON (a list of records), CSV or Parquet, in one of four shapes:
`fields` (columns mapped by `fields:`), `alpaca` (instruction/input/output), `chat` (an OpenAI-style
`messages` list) or `sharegpt` (a `conversations` list of {from, value}); a conversation may have several
turns and ends with the assistant's answer (harness/chat_formats.py). A task may instead read a dataset
with the `datasets` library (`data.hub`, `data.dataset`: harness/datasources.py), whose records take the
same shapes; a recipe may give such a task inline (a TaskSpec, no folder).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import string
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness import chat_formats, datasources, metrics
from harness.chat_formats import is_missing as _missing
from harness.datasources import Records
from harness.yamlconfig import ConfigError, ConfigWarning, Seed, Strict, line_of, load_yaml_model, read_text

BUNDLED_TASKS = Path(__file__).resolve().parent.parent / "tasks"
PLACEHOLDERS = {"input", "instruction", "context", "choices", "labels"}


class FieldMap(Strict):
    """Which column of the data holds each part of an example (format: fields)."""

    input: str = "input"
    output: str = "output"
    instruction: str | None = None
    context: str | None = None
    choices: str | None = None
    id: str | None = None
    doc_id: str | None = None  # the gold document id (or a list of ids) in the corpus, for recall@k
    chosen: str | None = None  # a preference pair (for DPO): the preferred answer ...
    rejected: str | None = None  # ... and the dispreferred one; give both or neither

    @model_validator(mode="after")
    def _preference_pair(self):
        if (self.chosen is None) != (self.rejected is None):
            given, missing = ("chosen", "rejected") if self.chosen is not None else ("rejected", "chosen")
            raise ValueError(
                f"`{given}` is set but `{missing}` is not; a preference pair needs both columns (or neither)"
            )
        return self


class CorpusSpec(Strict):
    """Documents a RAG technique retrieves from: a folder of .txt/.md files (id = path without the
    suffix) or a JSONL file of {id, text} records."""

    path: str  # relative to the task folder


class DataSpec(Strict):
    """Data files in the task folder (`train:`, `test:`), or a dataset read with the `datasets` library
    (`hub:` or `dataset:`, whose `train:` and `test:` name splits; harness/datasources.py)."""

    train: str | None = Field(None, min_length=1)  # a file path in the task folder; with hub/dataset: a split
    test: str | None = Field(None, min_length=1)  # a separate test file (or split); else cut from train
    test_fraction: float = Field(0.2, gt=0, lt=1)  # used only when `test` is not given
    split_seed: Seed = 0  # fixed so every run and technique sees the same held-out examples
    format: Literal["fields", "alpaca", "chat", "sharegpt"] = "fields"
    hub: str | None = Field(None, min_length=1)  # a dataset id on the Hugging Face Hub, e.g. owner/name
    dataset: str | None = Field(None, min_length=1)  # a folder in the task folder: data files or save_to_disk's
    name: str | None = Field(None, min_length=1)  # the dataset's configuration (subset), with hub or dataset
    revision: str | None = Field(None, min_length=1)  # a hub branch, tag or commit (hub only)
    limit: int | None = Field(None, ge=1)  # read at most this many rows of each split, drawn at random (split_seed)

    @model_validator(mode="after")
    def _one_source(self):
        if self.hub is not None and self.dataset is not None:
            raise ValueError("give `hub:` (a hub dataset id) or `dataset:` (a folder in the task folder), not both")
        if self.hub is None and self.dataset is None:
            if self.train is None:
                raise ValueError("give `train:` (a data file), `hub:` (a hub dataset id) or `dataset:` (a folder)")
            if self.name is not None:
                raise ValueError("`name:` picks a configuration of a dataset: it goes with `hub:` or `dataset:`")
        if self.revision is not None and self.hub is None:
            raise ValueError("`revision:` picks a version of a hub dataset: it goes with `hub:`")
        return self

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, hub: str | None) -> str | None:
        """A hub id, never a path: the datasets library would read a path (`../x`) as a local folder."""
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        if hub is not None:
            try:
                validate_repo_id(hub)
            except HFValidationError as exc:
                raise ValueError(
                    f"not a hub dataset id ({exc}); a folder inside the task folder is named with `dataset:`"
                ) from None
        return hub

    @property
    def train_name(self) -> str:
        """The train file, or the train split (`train` unless named)."""
        return self.train or "train"


class PromptTemplate(Strict):
    system: str | None = None  # a system message; the model's chat template default when unset
    template: str = "{input}"  # placeholders: {input} {instruction} {context} {choices} {labels}

    @model_validator(mode="after")
    def _known_placeholders(self):
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(self.template)]
        used = {name for name, _, _ in parsed if name is not None}
        unknown = used - PLACEHOLDERS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}")
        formatted = sorted(
            {f"{{{name}{'!' + c if c else ''}{':' + f if f else ''}}}" for name, f, c in parsed if f or c}
        )
        if formatted:  # `{input:>99999999}` pads each prompt to 100 MB; a placeholder is its text as it is
            raise ValueError(f"a placeholder takes no format spec or conversion: {', '.join(formatted)}")
        return self


class JudgeRubric(Strict):
    """How an LLM judge grades this task's answers (used when a recipe sets `eval.judge`): the rubric it
    reads beside the question, the reference answer and the answer, and the top of its 1..scale score."""

    rubric: str = Field(min_length=1)  # what a good answer does, in plain words
    scale: int = Field(5, ge=2, le=100)  # the judge scores 1..scale; stored normalised to 0-1

    @field_validator("rubric")
    @classmethod
    def _not_blank(cls, rubric: str) -> str:
        if not rubric.strip():
            raise ValueError("the rubric is empty; say what a good answer does")
        return rubric


class TaskSpec(Strict):
    name: str = Field(max_length=100)  # part of file names (plots/<task>-....png), which stop at 255 bytes
    description: str = ""
    data: DataSpec
    fields: FieldMap = FieldMap()
    corpus: CorpusSpec | None = None
    labels: list[str] | None = Field(None, min_length=2)  # a classification task's label set
    metric: str = "exact_match"  # a name registered in harness.metrics.METRICS
    prompt: PromptTemplate = PromptTemplate()
    judge: JudgeRubric | None = None  # an LLM judge's rubric; judged only when the recipe names a judge model

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name):
        # the name becomes part of file names in the run folder (plots/<task>-....png)
        if not name.strip() or "/" in name or "\\" in name or ".." in name or not name.isprintable():
            raise ValueError(
                "a task name must be non-empty and contain no '/', '\\', '..' or control characters (it names files)"
            )
        return name

    @model_validator(mode="after")
    def _pairs_need_fields(self):
        # a chat or sharegpt record has no chosen/rejected columns: `fields:` maps columns of format fields only
        if self.fields.chosen is not None and self.data.format != "fields":
            raise ValueError(
                f"`fields.chosen`/`fields.rejected` (preference pairs) apply to `data.format: fields` only, "
                f"not {self.data.format!r}; fix: give the pairs as columns with format fields"
            )
        return self

    @field_validator("labels", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, labels):
        if isinstance(labels, list) and any(isinstance(label, bool) for label in labels):
            raise ValueError("YAML reads yes/no/on/off as booleans: quote such labels, e.g. ['yes', 'no']")
        return labels

    @field_validator("metric")
    @classmethod
    def _registered_metric(cls, name: str, info: ValidationInfo) -> str:
        if name not in metrics.METRICS:
            # a custom error type: the message is the whole story, without pydantic's "Value error," prefix
            raise PydanticCustomError("unknown_name", metrics.METRICS.unknown(name))
        # labels are validated before metric (field order); absent from info.data when they failed,
        # and then that error is the one to report
        if metrics.get(name).needs_labels and "labels" in info.data and not info.data["labels"]:
            raise ValueError(f"metric {name!r} needs a `labels:` list (the classification label set)")
        return name

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels):
        if labels is not None:
            if any(not label.strip() for label in labels):
                raise ValueError("a label must be non-empty text (a model cannot be scored on answering nothing)")
            repeated = sorted({label for label in labels if labels.count(label) > 1})
            if repeated:
                raise ValueError(f"each label may appear once; repeated: {', '.join(map(repr, repeated))}")
        return labels


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    output: str
    instruction: str = ""
    context: str = ""
    choices: str = ""
    gold_docs: tuple[str, ...] = ()  # corpus documents that hold the answer, when the data names them
    chosen: str | None = None  # the preferred answer of a preference pair (format `fields` with fields.chosen)
    rejected: str | None = None  # the dispreferred answer; set exactly when chosen is
    # a conversation's turns before `input` (formats chat, sharegpt): (role, text), user and assistant alternating
    history: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Task:
    name: str
    path: Path | None  # its folder; None for a task a recipe gives inline (a hub dataset, no folder)
    spec: TaskSpec
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    validation: tuple[Example, ...] = ()  # cut from train by with_validation; empty when the recipe sets none
    sources: dict = dataclasses.field(default_factory=dict)  # split -> what it was read from (the run's meta)

    @property
    def where(self) -> str:
        """Where the task is defined, for messages that say what to fix."""
        return str(self.path / "task.yaml") if self.path else f"the recipe's inline task {self.name!r}"

    @property
    def labels(self) -> list[str] | None:
        return self.spec.labels

    @property
    def is_classification(self) -> bool:
        return bool(self.spec.labels)

    @property
    def has_preferences(self) -> bool:
        """Every example carries a chosen/rejected pair (fields.chosen and fields.rejected are set)."""
        return self.spec.fields.chosen is not None and self.spec.fields.rejected is not None

    @property
    def corpus_path(self) -> Path | None:
        return self.path / self.spec.corpus.path if self.spec.corpus and self.path else None


def find_task(name_or_path: str) -> Path:
    """A path to a task folder (or its task.yaml), else a bundled task name."""
    path = Path(name_or_path)
    if path.name == "task.yaml":
        path = path.parent
    if (path / "task.yaml").is_file():
        return path
    if (BUNDLED_TASKS / name_or_path / "task.yaml").is_file():
        return BUNDLED_TASKS / name_or_path
    known = ", ".join(t.name for t in list_task_dirs()) or "none"
    raise ConfigError(
        f"task {name_or_path!r} not found: no {path / 'task.yaml'} and no bundled task of that name "
        f"(bundled: {known}). Fix: give a folder that holds a task.yaml, or a bundled name."
    )


def list_task_dirs() -> list[Path]:
    return sorted(p.parent for p in BUNDLED_TASKS.glob("*/task.yaml"))


TaskRef = str | TaskSpec  # how a recipe names a task: a bundled name or a folder, or the task itself inline


def task_ref(value: str | dict | TaskSpec) -> TaskRef:
    """A recipe's task reference as stored in a run's meta (an inline task as a mapping) made whole again."""
    return TaskSpec.model_validate(value) if isinstance(value, dict) else value


def task_label(ref: TaskRef) -> str:
    return ref if isinstance(ref, str) else ref.name


def load_task_spec(ref: TaskRef) -> tuple[Path | None, TaskSpec]:
    if isinstance(ref, TaskSpec):
        return None, ref
    folder = find_task(ref)
    return folder, load_yaml_model(folder / "task.yaml", TaskSpec)


def load_task(ref: TaskRef | dict) -> Task:
    folder, spec = load_task_spec(task_ref(ref))
    if folder is None:
        return _load_inline(spec)
    if spec.corpus:
        corpus = inside_task_folder(folder, spec.corpus.path, "corpus.path")
        if not corpus.exists():
            raise ConfigError(
                f"{folder / 'task.yaml'}: corpus path {spec.corpus.path!r} does not exist in {folder}; "
                "fix `corpus.path` (a folder of .txt/.md files or a .jsonl of {id, text})"
            )
    location = inside_task_folder(folder, spec.data.dataset, "data.dataset") if spec.data.dataset else spec.data.hub
    return _from_records(spec, folder, lambda split: _split_records(spec, folder, location, split))


def _load_inline(spec: TaskSpec) -> Task:
    """A task a recipe gives inline: its data is a hub dataset, since it has no folder to hold files."""
    if spec.data.hub is None or spec.corpus is not None:
        raise ConfigError(
            f"task {spec.name!r} is given inline in the recipe, so it has no folder for data files, a `dataset:` "
            "folder or a corpus: name a hub dataset (`data: {hub: owner/name}`), or write a task folder "
            "(tasks/<name>/task.yaml) and name that"
        )
    hub = spec.data.hub
    return _from_records(spec, None, lambda split: _read_dataset(spec, f"task {spec.name!r}", hub, split))


def _from_records(spec: TaskSpec, folder: Path | None, read) -> Task:
    """The task from its train records (and test records, or a test split cut from the train examples)."""
    train_records = read(spec.data.train_name)
    examples = _load_examples(train_records, spec)
    sources = {"train": train_records.source}
    if spec.data.test:
        test_records = read(spec.data.test)
        train, test = examples, _load_examples(test_records, spec)
        sources["test"] = test_records.source
    else:
        where = f"{folder / 'task.yaml'}: " if folder else f"task {spec.name!r}: "
        train, test = _split(examples, spec, where)
    return Task(name=spec.name, path=folder, spec=spec, train=tuple(train), test=tuple(test), sources=sources)


def _split_records(spec: TaskSpec, folder: Path, location: str | Path | None, split: str) -> Records:
    """One split's records: from a dataset when the task names one, else from the data file `split` names."""
    data = spec.data
    if location is not None:
        return _read_dataset(spec, str(folder / "task.yaml"), location, split)
    key = "data.train" if split == data.train_name else "data.test"
    path = inside_task_folder(folder, split, key)
    rows = read_records(path)
    kept = datasources.sample(len(rows), data.limit, data.split_seed)
    source = {"file": split, "rows": len(rows), "read": len(kept)}
    return Records(where=str(path), stem=path.stem, rows=[rows[i] for i in kept], source=source, short=path.name)


def _read_dataset(spec: TaskSpec, where: str, location: str | Path, split: str) -> Records:
    try:
        return datasources.read_split(spec.data, location, split)
    except ConfigError as exc:  # the dataset's own errors name it; say which task asked for it
        raise ConfigError(f"{where}: {exc}") from None


def inside_task_folder(folder: Path, value: str, key: str) -> Path:
    """The file or folder a task.yaml's `key` names, which must lie inside the task folder (after symlinks):
    a run records only the folder, may run on another machine, and a task's data is copied into
    predictions and reports, so a task may not read what else the machine holds (docs/trust.md)."""
    path = folder / value
    line = line_of(folder / "task.yaml", tuple(key.split(".")))
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError until Python 3.13)
        raise ConfigError(
            f"{folder / 'task.yaml'}{f':{line}' if line else ''}: {key} {value!r} cannot be followed ({exc})"
        ) from None
    if resolved.is_relative_to(folder.resolve()):
        return path
    raise ConfigError(
        f"{folder / 'task.yaml'}{f':{line}' if line else ''}: {key} {value!r} leads outside the task folder "
        f"(to {path.resolve()}); fix: copy the data into {folder} and name it by its path inside that folder"
    )


def _split(examples: list[Example], spec: TaskSpec, where: str) -> tuple[list[Example], list[Example]]:
    fraction, n = spec.data.test_fraction, len(examples)
    cut = cut_size(n, fraction)
    if cut >= n:  # the test split rounds up (never empty), so it is the train split that can be
        raise ConfigError(
            f"{where}data.test_fraction {fraction} of the {n} example(s) in {spec.data.train_name} "
            "leaves no training examples; fix: add examples, lower `test_fraction`, or give a separate "
            "`data.test` file"
        )
    return stratified_split(examples, fraction, spec.data.split_seed, bool(spec.labels), where=f"{where}the test split")


def cut_size(n: int, size: float | int) -> int:
    """How many of n examples a cut of `size` takes: a count, or a share rounded up (as scikit-learn does)."""
    return math.ceil(size * n) if isinstance(size, float) else size


def stratified_split(
    examples, size: float | int, seed: int, by_label: bool, where: str = "split"
) -> tuple[list[Example], list[Example]]:
    """(rest, cut): `size` examples (a count, or a share when below 1) cut off, stratified by label when asked."""
    from sklearn.model_selection import train_test_split

    stratify = [e.output for e in examples] if by_label else None
    try:
        return train_test_split(examples, test_size=size, random_state=seed, stratify=stratify)
    except ValueError as exc:  # too few examples of a label to stratify: an unstratified cut still serves
        single = sorted(label for label, n in Counter(stratify or []).items() if n == 1)
        reason = f"label(s) {', '.join(map(repr, single))} have one example each" if single else str(exc)
        warnings.warn(
            f"{where} is cut at random, not by label, so it may lack some labels: {reason}", ConfigWarning, stacklevel=2
        )
        return train_test_split(examples, test_size=size, random_state=seed)


def with_validation(task: Task, split) -> Task:
    """The task with a validation split (the recipe's eval.validation) cut from its train split; the
    remaining train examples keep their order, so train-size subsets stay nested."""
    if split is None:
        return task
    size = split.size if split.size is not None else split.fraction
    if cut_size(len(task.train), size) >= len(task.train):
        setting = f"size {split.size}" if split.size is not None else f"fraction {split.fraction}"
        raise ConfigError(
            f"eval.validation.{setting} leaves no training data: task {task.name!r} has "
            f"{len(task.train)} train example(s); lower it, or add examples to the task"
        )
    _, validation = stratified_split(
        list(task.train),
        size,
        split.seed,
        task.is_classification,
        where=f"task {task.name!r}: the validation split (eval.validation)",
    )
    held = {e.id for e in validation}
    train = tuple(e for e in task.train if e.id not in held)
    return dataclasses.replace(task, train=train, validation=tuple(validation))


def heldout_examples(task: Task, limit: int | None) -> Sequence[Example]:
    """The test examples every technique is scored on: the first `limit` (eval.heldout.limit) of them, or all."""
    return task.test[:limit] if limit else task.test


def read_records(path: Path) -> list[tuple[int, object]]:
    """(line or row number, record) for each record; the number is what an error message cites."""
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_read_jsonl(path))
    if suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise ConfigError(f"{path}: JSON nested too deeply to read; fix: flatten the records") from None
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON list of records")
        return [(i + 1, r) for i, r in enumerate(data)]  # record number: JSON has no line per record
    if suffix in (".csv", ".parquet"):
        frame = _read_csv(path) if suffix == ".csv" else _read_parquet(path)
        first = 2 if suffix == ".csv" else 1  # CSV: line 1 is the header
        return [(i + first, r) for i, r in enumerate(frame.to_dict("records"))]
    raise ConfigError(f"{path}: unsupported data file type {suffix!r}; use .jsonl, .json, .csv or .parquet")


def _read_jsonl(path: Path):
    # split on newlines only: str.splitlines would also split on U+2028 and others, legal inside JSON strings
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}:{line_no}: invalid JSON ({exc.msg}); each line must be one JSON object"
            ) from None
        except RecursionError:
            raise ConfigError(f"{path}:{line_no}: JSON nested too deeply to read; fix: flatten the record") from None


def _read_csv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path}: empty CSV file; its first line must be the header (the column names)") from None
    except pd.errors.ParserError as exc:
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if ragged:
            expected, line, saw = ragged.groups()
            raise ConfigError(
                f"{path}:{line}: {saw} fields but the header has {expected}; fix: quote values that contain commas"
            ) from None
        raise ConfigError(f"{path}: not a readable CSV file ({str(exc).strip()})") from None


def _read_parquet(path: Path):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        reason = str(exc).replace(f"Could not open Parquet input source '{path}': ", "").strip()
        raise ConfigError(
            f"{path}: not a readable Parquet file ({reason}); fix: write it again, "
            "e.g. with pandas' DataFrame.to_parquet"
        ) from None


def _load_examples(records: Records, spec: TaskSpec) -> list[Example]:
    convert = {"fields": _from_fields, "alpaca": _from_alpaca, "chat": _from_chat, "sharegpt": _from_chat}[
        spec.data.format
    ]
    examples: list[Example] = []
    first_line: dict[str, int] = {}
    for line, record in records.rows:
        where = records.at(line)
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: expected an object with keys, got {type(record).__name__}")
        example = convert(record, spec, where, default_id=f"{records.stem}-{line}")
        if example.id in first_line:  # predictions and the validation cut are keyed by id
            raise ConfigError(
                f"{where}: id {example.id!r} is already used at {records.at(first_line[example.id], brief=True)}; "
                "fix: give each example its own id"
            )
        first_line[example.id] = line
        if not example.output.strip():
            raise ConfigError(f"{where}: empty output; every example needs an expected answer")
        if spec.labels and example.output not in spec.labels:
            raise ConfigError(f"{where}: output {example.output!r} is not one of the task's labels {spec.labels}")
        examples.append(example)
    if not examples:
        raise ConfigError(f"{records.where}: no examples")
    return examples


def _text(record: dict, key: str | None, where: str, required: bool, lines: bool = False) -> str:
    """A record's field as text. `lines`: a list is its items' lines (choices, passages, gold document ids);
    else a list is an error, as are a mapping, a boolean, bytes that are not UTF-8 and an infinite number (an
    answer or id read as Python's text of them would be scored or matched as given)."""
    if key is None:
        return ""
    value = record.get(key)
    tolist = getattr(value, "tolist", None)  # a Parquet list cell (a numpy array), a numpy scalar
    if callable(tolist):
        value = tolist()
    if isinstance(value, bytes):  # a Parquet binary column
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: field {key!r} holds bytes that are not UTF-8 text") from None
    if key not in record or _missing(value):
        if required:
            keys = ", ".join(map(str, record)) or "none"
            raise ConfigError(
                f"{where}: missing field {key!r} (the record has: {keys}); fix the row or `fields:` in task.yaml"
                f"{chat_formats.format_hint(record, 'fields')}; the record: {chat_formats.preview(record)}"
            )
        return ""
    if isinstance(value, list) and lines:
        return "\n".join(map(str, value))
    if isinstance(value, (list, dict, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        shown = type(value).__name__ if isinstance(value, (list, dict, bool)) else repr(value)
        raise ConfigError(f"{where}: field {key!r} must be text, got {shown}")
    return str(value)


def _from_fields(record: dict, spec: TaskSpec, where: str, default_id: str) -> Example:
    f = spec.fields
    example = Example(
        id=_text(record, f.id, where, required=False) or default_id,
        input=_text(record, f.input, where, required=True, lines=True),
        output=_text(record, f.output, where, required=True),
        instruction=_text(record, f.instruction, where, required=False, lines=True),
        context=_text(record, f.context, where, required=False, lines=True),
        choices=_text(record, f.choices, where, required=False, lines=True),
        gold_docs=tuple(d for d in _text(record, f.doc_id, where, required=False, lines=True).split("\n") if d),
        chosen=_preference(record, f.chosen, where),
        rejected=_preference(record, f.rejected, where),
    )
    if example.chosen is not None and example.chosen == example.rejected:  # a pair that prefers nothing
        raise ConfigError(f"{where}: the chosen and the rejected answer are the same text; a preference pair needs two")
    return example


def _preference(record: dict, key: str | None, where: str) -> str | None:
    """One side of a preference pair: None when the task has none, else required and non-empty."""
    if key is None:
        return None
    value = _text(record, key, where, required=True)
    if not value.strip():
        raise ConfigError(
            f"{where}: empty field {key!r}; every example of a preference task needs a chosen and a rejected answer"
        )
    return value


def _from_alpaca(record: dict, spec: TaskSpec, where: str, default_id: str) -> Example:
    return Example(
        id=_text(record, "id", where, required=False) or default_id,
        instruction=_text(record, "instruction", where, required=True, lines=True),
        input=_text(record, "input", where, required=False, lines=True),
        output=_text(record, "output", where, required=True),
    )


def _from_chat(record: dict, spec: TaskSpec, where: str, default_id: str) -> Example:
    """A conversation (format chat or sharegpt): its last user turn is the question, the assistant's reply
    the answer, and the turns before them the example's history."""
    chat = chat_formats.conversation(record, spec.data.format, where)
    *history, (_, question), (_, answer) = chat.turns
    return Example(
        id=_text(record, "id", where, required=False) or default_id,
        instruction=chat.system,
        input=question,
        output=answer,
        history=tuple(history),
    )
