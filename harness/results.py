"""The run directory: results.json written atomically after each technique, read back in today's layout.

Layout of reports/<recipe-name>/<run-id>/:
  results.json                   {"version", "meta", "rows": [...], "cells": [...]}: one row per finished
                                 technique, one per cell (rows typed by harness/rows.py)
  predictions/<technique>.jsonl  per-example input, expected, predicted, parsed, correct (value: continuous metrics)
  REPORT.md                      rendered from results.json by harness.report
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.rows import Row
from harness.yamlconfig import ConfigError

VERSION = 2  # results.json's layout; `upgrade` reads every earlier one
VERDICTS = ("vs_best", "vs_best_marker", "floor_flags")  # computed on reading, never stored


def upgrade(data: dict) -> dict:
    """results.json of any earlier version in today's layout (the one place that knows old layouts)."""
    if data.get("version", 1) > VERSION:
        raise ValueError(f"results.json version {data['version']} is newer than this harness reads ({VERSION})")
    if data.get("version", 1) < 2:
        data = data | {
            "rows": [_upgrade_row(r) for r in data["rows"]],
            "cells": [_upgrade_row(r) for r in data.get("cells", [])],
        }
    return data | {"version": VERSION}


def _upgrade_row(row: dict) -> dict:
    return {key: value for key, value in row.items() if key not in VERDICTS}


def to_json(data, indent: int | None = None) -> str:
    """JSON text of a result (results.json, a cell file, a prediction): a NaN or infinite figure (a broken
    measurement, an endpoint's garbage usage) is written as null, since JSON has no such number and a
    reader would reject the file or carry the garbage into every sum; other objects as their text."""
    return json.dumps(_finite(data), indent=indent, default=str, allow_nan=False)


def _finite(value):
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # numpy floats too
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def own_folder(folder: Path) -> Path:
    """The report's plots folder, made when missing; OSError when it is a link: a results folder is data
    (docs/trust.md), and its `plots` linked elsewhere would have the report write there."""
    if folder.is_symlink():
        raise OSError(f"{folder} is a link to {folder.resolve()}; the report writes only into its own folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class RunStore:
    """The results of one run directory; every change is persisted before the call returns."""

    def __init__(self, run_dir: Path, meta: dict, rows: Iterable[Mapping] = (), cells: Iterable[Mapping] = ()):
        self.run_dir = Path(run_dir)
        self.meta = meta
        # rows come in finite (a NaN or infinite figure, as an earlier results.json may hold, is None: missing)
        self.rows: list[Row] = [Row.model_validate(_finite(r)) for r in rows]
        self.cells: list[Row] = [Row.model_validate(_finite(r)) for r in cells]  # one per cell; see harness/planning.py

    @classmethod
    def open(cls, run_dir: str | Path) -> RunStore:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a run directory (expected reports/<recipe>/<run-id>/)")
        data = upgrade(json.loads(path.read_text()))
        for row in [*data["rows"], *data["cells"]]:
            check_file_name(row.get("technique"), f"{path}: technique")
        return cls(Path(run_dir), data["meta"], data["rows"], data["cells"])

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results.json"

    def finished(self, technique: str) -> bool:
        """Done for good: scored, or skipped as not applicable (a failed one is retried on resume)."""
        return any(r["technique"] == technique and r["status"] in ("ok", "skipped") for r in self.rows)

    def save(self) -> None:
        write_atomic(
            self.results_path,
            to_json(
                {
                    "version": VERSION,
                    "meta": self.meta,
                    "rows": [r.as_dict() for r in self.rows],
                    "cells": [r.as_dict() for r in self.cells],
                },
                indent=2,
            ),
        )

    def record(self, row: Mapping, predictions: Iterable[dict] = ()) -> None:
        """Store one technique's row (replacing an earlier attempt) and its predictions."""
        row, predictions = Row.model_validate(_finite(row)), list(predictions)
        if predictions:
            lines = "".join(to_json(p) + "\n" for p in predictions)
            write_atomic(self.predictions_path(row["technique"]), lines)
        self.rows = [r for r in self.rows if r["technique"] != row["technique"]] + [row]
        self.save()

    def predictions_path(self, technique: str) -> Path:
        return self.run_dir / "predictions" / f"{technique}.jsonl"

    def predictions(self, technique: str) -> list[dict]:
        path = self.predictions_path(technique)
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict) or "id" not in record:  # every prediction names its example
                raise ConfigError(f"{path}:{number}: not a prediction (no example 'id'); the file is not the harness's")
        return records

    def finished_predictions(self) -> dict[str, list[dict]]:
        """technique -> its predictions, for every technique that finished with a score."""
        return {r["technique"]: self.predictions(r["technique"]) for r in self.rows if r["status"] == "ok"}

    def ordered_rows(self) -> list[Row]:
        """Rows in the recipe's technique order (resumed runs append out of order)."""
        order = [t["name"] for t in self.meta.get("recipe", {}).get("techniques", [])]
        return sorted(self.rows, key=lambda r: order.index(r["technique"]) if r["technique"] in order else len(order))

    def answering_rows(self) -> list[Row]:
        """ordered_rows less the models that answer nothing (kind reward): what the tables rank and compare."""
        from harness import kinds

        return [r for r in self.ordered_rows() if kinds.generates(r["kind"])]

    def reward_model_rows(self) -> list[Row]:
        """The reward models (kind reward): reported in a table of their own, never ranked on the task's metric."""
        from harness import kinds

        return [r for r in self.ordered_rows() if not kinds.generates(r["kind"])]


def check_file_name(name: object, what: str) -> None:
    """A name the run folder uses as a file name (predictions/<technique>.jsonl) is one plain file name: a
    results.json written by hand or by another program cannot make `report` or `check` read elsewhere."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(f"{what} {name!r} is not a plain file name; this results.json was not written by the harness")


def open_runs(path: str | Path) -> list[RunStore]:
    """The runs at path: a results.json, a run folder, or a multi-task run folder (one sub-run per task)."""
    path = Path(path)
    if path.name == "results.json" and path.is_file():
        path = path.parent
    if (path / "results.json").is_file():
        return [RunStore.open(path)]
    subruns = sorted(p.parent for p in path.glob("*/results.json"))
    if not subruns:
        raise FileNotFoundError(
            f"{path}: no results.json in it or in its sub-folders; give a run folder "
            "(reports/<recipe>/<run-id>/) or a results.json"
        )
    stores = [RunStore.open(p) for p in subruns]
    order = stores[0].meta.get("recipe", {}).get("task")
    if isinstance(order, list):  # the recipe's task order, not the folders' alphabetical one (an inline
        # task is stored as its mapping, in the recipe as in task_ref)
        stores.sort(
            key=lambda s: order.index(s.meta.get("task_ref")) if s.meta.get("task_ref") in order else len(order)
        )
    return stores


def task_name(store: RunStore) -> str:
    return store.meta["task"]["name"]


def report_folder(stores: list[RunStore]) -> Path:
    """Where the run's REPORT.md lives: the run folder, or the parent of a multi-task run's task folders."""
    return stores[0].run_dir if len(stores) == 1 else stores[0].run_dir.parent


def rows_frame(stores: list[RunStore]):
    """The rows of the runs as a pandas DataFrame, one row per task and technique."""
    import pandas as pd

    return pd.DataFrame([{"task": task_name(s), **r} for s in stores for r in s.ordered_rows()])


def load_frame(path: str | Path):
    """The rows of a run (every task of a multi-task run) as a pandas DataFrame."""
    return rows_frame(open_runs(path))
