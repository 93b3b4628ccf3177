"""A run as a study: the matrix of cells (technique x seed x training-set size x search trial) and how
finished cells merge back into one row per technique.

A cell is the unit of work that runs in its own process (see executor.py and worker.py) and writes
its own result file, cells/<cell id>.json; the driver (pipeline.py) plans cells, skips those already
finished, and merges their rows. Nothing here loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import kinds, metrics
from harness.analysis import stats
from harness.rows import Row, RowLike
from harness.searchspace import apply_params
from harness.tasks import TaskRef, load_task_spec, task_label
from harness.yamlconfig import ConfigError

PEAK_KEYS = {
    "peak_memory_bytes",
    "train_peak_memory_bytes",
    "eval_peak_memory_bytes",
    "lm_eval_peak_memory_bytes",
    "judge_peak_memory_bytes",
}


@dataclass(frozen=True)
class Cell:
    technique: str
    seed: int
    split: str = "test"  # "validation" for search trials: test is scored once per chosen configuration
    params: dict[str, Any] = field(default_factory=dict)  # dotted settings applied to the technique
    trial: int | None = None  # the search trial's number
    train_size: int | None = None  # train on the first N train examples (None: all)
    objective: str | None = None  # a trial's objective: validation_score, validation_loss or validation_macro_f1
    main: bool = True  # the configuration the technique's row reports (not a smaller learning-curve size)

    @property
    def id(self) -> str:
        if self.trial is not None:
            return f"{self.technique}.trial-{self.trial}"
        return f"{self.technique}.seed-{self.seed}" + (f".n-{self.train_size}" if self.train_size is not None else "")

    @property
    def scores_split(self) -> bool:
        """Whether the cell generates answers (a validation-loss trial needs none)."""
        return self.objective != "validation_loss"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Cell:
        return cls(**data)


# --- planning ------------------------------------------------------------------------------------


def seed_sensitive(spec) -> bool:
    """Whether the seed changes the outcome: it draws few-shot examples and orders training; greedy
    zero-shot answers from the base model are the same under every seed, so one cell serves them all."""
    return not kinds.reads_base_model(spec.kind) or getattr(spec, "shots", 0) > 0


def train_sizes(recipe) -> tuple[list[int | None], int | None]:
    """(sizes to train on, the main size): None stands for all of the train split."""
    if not recipe.train_sizes:
        return [None], None
    sizes = sorted(s for s in recipe.train_sizes if s != "all")
    main = None if "all" in recipe.train_sizes else sizes[-1]
    return sizes + ([None] if main is None else []), main


def test_cells(recipe, spec, params: dict) -> list[Cell]:
    """The technique's cells on the test split: every seed (one when seed-insensitive), and for trained
    kinds every training-set size."""
    tuned = apply_params(spec, params)
    seeds = recipe.run_seeds if seed_sensitive(tuned) else recipe.run_seeds[:1]
    sizes, main = train_sizes(recipe) if kinds.trained(spec.kind) else ([None], None)
    return [
        Cell(spec.name, seed, "test", dict(params), train_size=size, main=size == main)
        for seed in seeds
        for size in sizes
    ]


def task_folders(task_refs: Sequence[TaskRef]) -> list[tuple[TaskRef, str]]:
    """Each task of a multi-task run and its sub-folder of the run folder: the task's name (its task.yaml
    `name:`, which the report and its plots also go by). Two different tasks of one name, or one task
    folder written two ways (`tasks/x`, `tasks/x/`, `tasks/x/task.yaml`, a bundled name and its path),
    would share a sub-folder and one task's finished cells would pass for the other's: an error."""
    folders: list[tuple[TaskRef, str]] = []
    seen_paths: dict[Path, str] = {}  # resolved task folder -> its first ref
    seen_names: dict[str, str] = {}  # casefolded name (folders on macOS ignore case) -> its first ref
    for ref in task_refs:
        path, spec = load_task_spec(ref)
        label = task_label(ref)
        if path is not None and path.resolve() in seen_paths:
            raise ConfigError(
                f"task: {seen_paths[path.resolve()]!r} and {label!r} are the same task folder ({path.resolve()}); "
                "list it once"
            )
        if spec.name.casefold() in seen_names:
            raise ConfigError(
                f"task: {seen_names[spec.name.casefold()]!r} and {label!r} are both named {spec.name!r} (the `name:` "
                "in their task.yaml), so their results would share the run's sub-folder and the report could not "
                "tell them apart; rename one of them in its task.yaml, or compare them in separate recipes"
            )
        if path is not None:
            seen_paths[path.resolve()] = label
        seen_names[spec.name.casefold()] = label
        folders.append((ref, spec.name))
    return folders


def check_train_sizes(recipe, spec, n_train: int) -> None:
    """Each of `train_sizes` trains the technique on a different number of examples: a size at or above what
    it can train on (the task's train split, or its train.limit when lower) is `all` again, so its cell would
    repeat another's (or, labelled with the larger size, misstate it)."""
    limit = getattr(getattr(spec, "train", None), "limit", None)
    available = min(limit or n_train, n_train)
    trained_on: dict[int, int | str] = {}  # examples -> the size that trains on them
    for size in recipe.train_sizes or []:
        n = available if size == "all" else min(size, available)
        if n in trained_on:
            cap = f"its train.limit {limit}" if limit and limit < n_train else f"the task's {n_train} train examples"
            raise ConfigError(
                f"train_sizes: {trained_on[n]} and {size} both train technique {spec.name!r} on the same {n} "
                f"examples ({cap}); list sizes below {available} plus `all`"
            )
        trained_on[n] = size


def waves(techniques: Sequence, reward_model: str | None = None) -> list[list]:
    """Techniques in the order their results can exist: one that needs another's trained model (its
    `init_from`, its `reward: {model: ...}`) comes in a later wave than that technique, and with
    `eval.reward_model` every technique that answers comes after the reward model that scores its answers."""
    depth: dict[str, int] = {}
    by_name = {t.name: t for t in techniques}

    def needed(spec) -> list[str]:
        scored_by = [reward_model] if reward_model and kinds.generates(spec.kind) else []
        return [name for _, name in kinds.sources(spec)] + scored_by

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = max((level(source) + 1 for source in needed(by_name[name])), default=0)
        return depth[name]

    levels = [level(t.name) for t in techniques]
    return [[t for t, n in zip(techniques, levels) if n == wave] for wave in range(max(levels) + 1)]


def job_groups(cells: Sequence[Cell], kind_of: dict[str, str]) -> list[list[Cell]]:
    """Cells grouped into processes: base-model readers share one (one model load); every other cell
    gets its own, so its memory peak and any crash belong to it alone."""
    shared = [c for c in cells if kinds.reads_base_model(kind_of[c.technique])]
    return ([shared] if shared else []) + [[c] for c in cells if not kinds.reads_base_model(kind_of[c.technique])]


# --- cell results --------------------------------------------------------------------------------


def cell_path(run_dir: Path, cell: Cell) -> Path:
    return Path(run_dir) / "cells" / f"{cell.id}.json"


def read_result(run_dir: Path, cell: Cell) -> dict | None:
    """A cell's stored result ({"cell", "row", "predictions"}), or None when it has not finished."""
    path = cell_path(run_dir, cell)
    return json.loads(path.read_text()) if path.is_file() else None


def finished(result: dict | None) -> bool:
    """Done for good: scored or skipped (a failed cell is retried on resume)."""
    return result is not None and result["row"]["status"] in ("ok", "skipped")


def cell_row(result: dict) -> dict:
    """The row stored in results.json's `cells`: the cell's figures and where it sits in the matrix."""
    cell = result["cell"]
    return result["row"] | {
        "cell": Cell.from_dict(cell).id,
        "seed": cell["seed"],
        "split": cell["split"],
        "trial": cell["trial"],
        "params": cell["params"],
        "train_size": cell["train_size"],
    }


def merge(spec, results: Sequence[dict], seeds: Sequence[int]) -> tuple[Row, list[dict]]:
    """One technique's row and predictions from its main test cells (one per seed, or one reused for
    every seed): figures averaged over seeds (peaks: the highest), per-seed scores and their spread,
    and predictions keyed by seed so paired tests pair the same example under the same seed."""
    by_seed = {r["cell"]["seed"]: r for r in results}
    per_seed = [by_seed.get(seed, results[0]) for seed in seeds]  # a seed-insensitive cell serves every seed
    rows = [r["row"] for r in per_seed]
    failed = next((r for r in rows if r["status"] != "ok"), None)
    if failed is not None:
        return Row.model_validate(failed), []
    row = _average(rows)
    predictions = [p | {"seed": seed} for seed, r in zip(seeds, per_seed) for p in r["predictions"]]
    scores = [r["score"] for r in rows]
    unscored = None in scores  # a model that answers nothing (kind reward) has no task score
    row.update(
        n_seeds=len(seeds),
        seed_scores=None if unscored else scores,
        seed_invariant=len(by_seed) == 1 and len(seeds) > 1,
        score_std=None if unscored else mean_std(scores)[1],
        params=per_seed[0]["cell"]["params"],
    )
    # lm-eval's items per seed, as the predictions are, so they pair under the same seed too
    items = {str(s): r["row"]["lm_eval_samples"] for s, r in zip(seeds, per_seed) if r["row"].get("lm_eval_samples")}
    if items:
        row["lm_eval_samples"] = items
    # a mean of per-example values (not a corpus-level figure like macro-F1): bootstrap seeds and examples
    mean_type = row.get("metric") not in metrics.METRICS or metrics.get(row["metric"]).is_mean
    if len(seeds) > 1 and mean_type:
        row["ci_low"], row["ci_high"] = stats.mean_ci_over_seeds(predictions, samples=2000, seed=seeds[0])
    return Row.model_validate(row), predictions


def chosen_trial(trial_rows: Iterable[RowLike], objective: str) -> RowLike | None:
    """The trial whose values are chosen: the best validation figure among trials that finished (not pruned)."""
    done = [r for r in trial_rows if r["status"] == "ok" and r.get("objective") is not None and not r.get("pruned")]
    if not done:
        return None
    return (min if objective == "validation_loss" else max)(done, key=lambda r: r["objective"])


def search_summary(trial_rows: Iterable[RowLike], objective: str) -> dict:
    """Row fields describing a technique's search: trials, the chosen values, their validation figure, cost."""
    trial_rows = list(trial_rows)
    if not trial_rows:
        return {}
    pick = chosen_trial(trial_rows, objective)
    return {
        "search_trials": len(trial_rows),
        "search_pruned": sum(bool(r.get("pruned")) for r in trial_rows),
        "search_failed": sum(r["status"] != "ok" or r.get("objective") is None for r in trial_rows),
        "search_objective": objective,
        "search_best": pick["objective"] if pick else None,
        "chosen": pick["params"] if pick else None,
        "search_seconds": sum(r.get("wall_seconds") or 0 for r in trial_rows),
        "search_cost_usd": sum(r.get("cost_usd") or 0 for r in trial_rows),
    }


def _average(rows: Sequence[RowLike]) -> dict:
    merged = dict(rows[0])
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(set(map(repr, values))) > 1 and len(numbers) == len(values):
            merged[key] = max(numbers) if key in PEAK_KEYS else sum(numbers) / len(numbers)
    return merged


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
