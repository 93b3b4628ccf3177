"""Experiment tracking (the recipe's `tracking:`): MLflow, Weights & Biases and TensorBoard.

Each backend is one file (harness/tracking/<backend>_tracker.py) that defines its settings model (its
block under `tracking:`), its Tracker class, and one `register(Backend(...))` call (see
docs/ARCHITECTURE.md, "Adding a tracker"); importing it loads no tracker library. A tracker has two sides:

- The driver (pipeline.py) calls `open_run` before any cell runs: each tracker creates what the cells'
  processes attach to (MLflow: a parent run for the harness run and a nested run per technique) and its
  state goes into results.json's meta, which every worker reads. After REPORT.md is written,
  `close_run` logs one summary per technique: the row's figures, the recipe, REPORT.md and the plots.
- A worker wraps each trained cell in `cell(...)`: the environment transformers' integrations read
  (MLFLOW_*, WANDB_*, TENSORBOARD_LOGGING_DIR) and, through `trainer_arguments()`, the TrainingArguments
  `report_to` and `run_name` (the cell's id), so training curves flow through the Trainer's own callbacks.

A tracker that is missing or fails never costs a result: `config.TrackingSpec.check_installed` stops a
run before it starts when a package is missing; any later failure is a TrackingWarning and the
comparison goes on (`guard` keeps a failing callback from failing the training it observes).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from harness.registry import Registry
from harness.rows import RowLike
from harness.yamlconfig import ConfigWarning

# Modules whose import registers the built-in trackers, in the order `tracking:` lists them; loaded on
# first lookup, with installed plugin packages (harness/plugins.py).
BUILTIN_MODULES = (
    "harness.tracking.mlflow_tracker",
    "harness.tracking.wandb_tracker",
    "harness.tracking.tensorboard_tracker",
)
# What the current cell's trainers pass to TrainingArguments (set by `cell`, read by train.training_args).
_TRAINER: dict[str, Any] = {"report_to": [], "run_name": None}


@dataclass(frozen=True)
class Backend:
    name: str  # its key under the recipe's `tracking:`
    settings: type[BaseModel]  # that key's block; every setting has a default (a bare key enables it)
    # Tracker(settings, recipe), with `name`, `report_to` (the Trainer integration that receives a trained
    # cell's curves, or None), open / summarize on the driver and attach / detach in a worker (see
    # mlflow_tracker.py); it imports its library only in those methods
    tracker: type
    modules: tuple[str, ...]  # the packages that serve it, any one of them: found (not imported) before a run
    install: str  # what to pip install when none of them is there
    description: str = ""  # one line for `harness kinds` and the docs

    def __post_init__(self):
        required = [name for name, field in self.settings.model_fields.items() if field.is_required()]
        if required:
            raise TypeError(
                f"tracker {self.name!r}: every setting needs a default (a bare key enables it with them); "
                f"{', '.join(required)} has none"
            )


TRACKERS: Registry[Backend] = Registry("tracker", BUILTIN_MODULES)


def register(backend: Backend) -> Backend:
    """Add a tracker; from then on recipes may name it under `tracking:`."""
    return TRACKERS.add(backend.name, backend)


def get(name: str) -> Backend:
    return TRACKERS.get(name)


def known() -> list[str]:
    return TRACKERS.in_order()


class TrackingWarning(ConfigWarning):
    """A tracker could not record something; the run itself is unaffected."""


def warn(backend: str, what: str, exc: BaseException) -> None:
    warnings.warn(
        f"tracking.{backend}: {what} failed ({type(exc).__name__}: {exc}); the comparison goes on without it",
        TrackingWarning,
        stacklevel=3,
    )


def trackers(recipe) -> list:
    """One tracker object per backend the recipe names."""
    return [get(name).tracker(getattr(recipe.tracking, name), recipe) for name in recipe.tracking.backends]


def open_run(recipe, store) -> None:
    """Before the cells run: each tracker's state (run ids, folders) into store.meta["tracking"]; a run
    resumed with --resume keeps the state it had, so its cells join the same tracked runs."""
    if not recipe.tracking.backends:
        return
    state = store.meta.setdefault("tracking", {})
    for tracker in trackers(recipe):
        if tracker.name in state:
            continue
        try:
            state[tracker.name] = tracker.open(store)
        except Exception as exc:  # noqa: BLE001 — a tracker's failure must not stop the comparison
            warn(tracker.name, "starting the run", exc)
    store.save()


def close_run(recipe, store, status: str = "FINISHED") -> None:
    """After REPORT.md is written: one summary per technique. status: FINISHED, or KILLED when interrupted."""
    state = store.meta.get("tracking") or {}
    if state:  # every tracker logs the resolved recipe among its files: written once, here
        from harness.tracking import summary

        try:
            summary.write_recipe(store)
        except OSError as exc:
            warn(", ".join(state), f"writing {summary.RECIPE_FILE}", exc)
    for tracker in trackers(recipe):
        if tracker.name not in state:  # it failed to start: warned then
            continue
        try:
            tracker.summarize(state[tracker.name], store, status)
        except Exception as exc:  # noqa: BLE001
            warn(tracker.name, "logging the summary", exc)


class CellTracking:
    """What `cell` yields: the worker reports the cell's row here, so the trackers close its runs with it."""

    status = "killed"  # until the row arrives: a cell stopped by Ctrl-C has none

    def finish(self, row: RowLike) -> None:
        self.status = row["status"]


@contextmanager
def cell(recipe, meta: dict, spec, cell_):
    """Around one cell in a worker: for a trained cell, each tracker's environment and the Trainer's
    report_to / run_name; restored afterwards, since later cells of the process may not train."""
    from harness import kinds

    tracked, state = CellTracking(), meta.get("tracking") or {}
    active = [t for t in trackers(recipe) if t.name in state] if kinds.trained(spec.kind) else []
    env: dict[str, str] = {}
    attached: list = []
    for tracker in active:
        try:
            env |= tracker.attach(state[tracker.name], cell_, spec.name)
            attached.append(tracker)
        except Exception as exc:  # noqa: BLE001
            warn(tracker.name, f"attaching cell {cell_.id}", exc)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    # report_to None: a tracker without a Trainer integration (it may still set the environment)
    reports = [t.report_to for t in attached if t.report_to]
    _TRAINER.update(report_to=reports, run_name=cell_.id if reports else None)
    try:
        yield tracked
    finally:
        _TRAINER.update(report_to=[], run_name=None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for tracker in attached:
            try:
                tracker.detach(tracked.status)
            except Exception as exc:  # noqa: BLE001
                warn(tracker.name, f"closing cell {cell_.id}", exc)


def trainer_arguments() -> dict:
    """TrainingArguments for the current cell: the trackers' integrations and the run's name."""
    args = {"report_to": list(_TRAINER["report_to"])}
    if _TRAINER["run_name"]:
        args["run_name"] = _TRAINER["run_name"]
    return args


def guard(trainer) -> None:
    """Wrap the tracker callbacks `report_to` added, so one that raises (a server gone, a full disk)
    warns once and goes quiet instead of failing the training it only observes."""
    if not _TRAINER["report_to"]:
        return
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    classes = tuple(INTEGRATION_TO_CALLBACK[name] for name in _TRAINER["report_to"])
    handler = trainer.callback_handler
    handler.callbacks = [_guarded(c) if isinstance(c, classes) else c for c in handler.callbacks]


def _guarded(callback):
    from transformers import TrainerCallback

    class Guarded(TrainerCallback):
        def __init__(self, inner):
            self.inner = inner

    def forward(event: str):
        def call(self, args, state, control, **kwargs):
            if self.inner is None:
                return None
            try:
                return getattr(self.inner, event)(args, state, control, **kwargs)
            except Exception as exc:  # noqa: BLE001
                warn(type(self.inner).__name__, f"its {event}", exc)
                self.inner = None

        return call

    for event in (name for name in dir(TrainerCallback) if name.startswith("on_")):
        setattr(Guarded, event, forward(event))
    return Guarded(callback)
