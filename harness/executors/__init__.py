"""Executors run the cells of a study. Each is one file that defines its settings model (the `executor:`
block its `kind:` selects), its executor class, and one `register(ExecutorKind(...))` call (see
docs/ARCHITECTURE.md, "Adding an executor"). Built in: `local` (processes on this machine), `ray` (a Ray
cluster) and `slurm` (through submitit). Importing an executor's file loads no cluster library: Ray and
submitit are imported only when their executor is made.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.executors.base import Executor, ExecutorError, ExecutorSettings, Job, JobEnd, last_lines
from harness.registry import Registry

__all__ = [
    "Executor",
    "ExecutorError",
    "ExecutorKind",
    "ExecutorSettings",
    "Job",
    "JobEnd",
    "last_lines",
    "make_executor",
    "register",
]

# Modules whose import registers the built-in executors, in the order errors list them; loaded on
# first lookup, with installed plugin packages (harness/plugins.py).
BUILTIN_MODULES = ("harness.executors.local", "harness.executors.ray_cluster", "harness.executors.slurm")


@dataclass(frozen=True)
class ExecutorKind:
    name: str  # the recipe's `executor.kind` value
    settings: type[ExecutorSettings]  # the `executor:` block: ExecutorSettings plus `kind: Literal[name]` and its keys
    # (settings, recipe.device, recipe.techniques, --jobs or None) -> an Executor; imports its library when called
    make: Callable[[Any, str, list, int | None], Executor]
    description: str = ""  # one line for `harness kinds` and the docs

    def __post_init__(self):
        field = self.settings.model_fields.get("kind") if issubclass(self.settings, ExecutorSettings) else None
        if field is None or typing.get_args(field.annotation) != (self.name,):
            raise TypeError(
                f"executor {self.name!r}: its settings model {self.settings.__name__} must subclass "
                f"ExecutorSettings and have `kind: Literal[{self.name!r}]`"
            )


EXECUTORS: Registry[ExecutorKind] = Registry("executor", BUILTIN_MODULES)


def register(executor: ExecutorKind) -> ExecutorKind:
    """Add an executor; from then on recipes may use `executor: {kind: <name>}`."""
    return EXECUTORS.add(executor.name, executor)


def get(name: str) -> ExecutorKind:
    return EXECUTORS.get(name)


def known() -> list[str]:
    return EXECUTORS.in_order()


def make_executor(recipe, jobs: int | None) -> Executor:
    """The recipe's executor; its `device` is where cells run. `jobs`: cells at once (--jobs); None: one
    locally, the cluster's capacity on ray/slurm."""
    spec = recipe.executor
    return get(spec.kind).make(spec, recipe.device, recipe.techniques, jobs)
