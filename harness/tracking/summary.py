"""What every tracker logs once the report is written, taken from the run folder alone: each row's
figures, the technique's settings, and the files (the resolved recipe, REPORT.md, the plots)."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from harness.rows import RowLike

RECIPE_FILE = "recipe.yaml"  # the resolved recipe (overrides applied), written beside REPORT.md


def figures(row: RowLike) -> dict[str, float]:
    """The row's numeric figures (scores, times, memory, costs, lm-eval columns); flags and text are left out."""
    return {
        key: float(value)
        for key, value in row.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def labels(row: RowLike) -> dict[str, str]:
    """The row's text fields worth filtering runs by."""
    keys = ("technique", "kind", "status", "metric", "device", "dtype", "error")
    return {key: str(row[key]) for key in keys if row.get(key) is not None}


def settings(store, technique: str) -> dict[str, str]:
    """The technique's recipe entry, flattened to dotted keys (`train.learning_rate`)."""
    entry: dict = next((t for t in store.meta["recipe"]["techniques"] if t["name"] == technique), {})
    return dict(_flatten(entry))


def _flatten(value, prefix: str = ""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}{key}.")
    elif value is not None:
        yield prefix.rstrip("."), str(value)


def write_recipe(store) -> None:
    """The resolved recipe beside REPORT.md, once, before the trackers log `files`."""
    (store.run_dir / RECIPE_FILE).write_text(yaml.safe_dump(store.meta["recipe"], sort_keys=False))


def files(store) -> list[Path]:
    """The resolved recipe (see write_recipe), REPORT.md and the plots: the run's decision record."""
    recipe = store.run_dir / RECIPE_FILE
    report = store.run_dir / "REPORT.md"
    return [
        *([recipe] if recipe.is_file() else []),
        *([report] if report.is_file() else []),
        *sorted((store.run_dir / "plots").glob("*.png")),
    ]


def run_name(store) -> str:
    """The harness run as trackers name it: <recipe>/<run-id>, and the task in a multi-task run."""
    meta = store.meta
    name = f"{meta['recipe']['name']}/{meta['run_id']}"
    return name + (f"/{meta['task']['name']}" if isinstance(meta["recipe"]["task"], list) else "")
