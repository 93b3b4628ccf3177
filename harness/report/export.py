"""Exports of a run's rows: results.csv and results.parquet beside REPORT.md, and `harness report --format`."""

from __future__ import annotations

import json
from pathlib import Path

from harness.results import RunStore, rows_frame, write_atomic


def frame(stores: list[RunStore]):
    """One row per task and technique; lm-eval scores and every other figure as flat columns."""
    table = rows_frame(stores).drop(columns=["lm_eval_samples"], errors="ignore")  # per-item values: not a figure
    for column in table.columns:  # dict cells (lm_eval_errors) as JSON text: CSV and parquet stay flat
        if table[column].map(lambda v: isinstance(v, dict)).any():
            table[column] = table[column].map(lambda v: json.dumps(v) if isinstance(v, dict) else v)
    return table


def write_exports(stores: list[RunStore], folder: Path) -> None:
    table = frame(stores)
    write_atomic(folder / "results.csv", table.to_csv(index=False))
    try:
        tmp = folder / ".results.parquet.tmp"
        table.to_parquet(tmp, index=False)
        tmp.replace(folder / "results.parquet")
    except ImportError:  # parquet needs pyarrow; the CSV carries the same data
        pass
