"""Technique kinds: one descriptor per kind, registered once. The recipe schema (which settings a
`kind:` takes) and the pipeline's behaviour (which cells share a process, which kinds train, which
need from a task, their default learning rate) are all read from here, so a new kind is one file that
defines its settings model, its runner and one `register(Kind(...))` call (see docs/ARCHITECTURE.md).

Importing this module, and the kind modules, loads no ML library: runners import torch and friends
when a cell runs, so `harness validate` and the report commands stay light.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.registry import Registry

if TYPE_CHECKING:  # a kind's file imports Figure to declare its figures; figures.get asks the kinds
    from harness.figures import Figure

# Modules whose import registers the built-in kinds: loaded on first lookup, with installed plugin
# packages (harness/plugins.py: a kind shipped as a package).
BUILTIN_MODULES = ("harness.techniques",)


@dataclass(frozen=True)
class Need:
    """Something a technique needs from its task. On a task without it the technique does not apply: its
    cells are skipped rows that say why (worker.run_cell) and it gets no search trials, the same for
    every kind; a skipped row is no failure (`harness run` exits 0)."""

    what: str  # as the reason names it: "task 'x' has no <what>"
    present: Callable[[Any], bool]  # (Task) -> whether the task has it
    fix: str  # what to add to the task's task.yaml


CORPUS = Need("corpus", lambda task: task.corpus_path is not None, "add `corpus: {path: ...}`")
PREFERENCE_PAIRS = Need(
    "preference pairs",
    lambda task: task.has_preferences,
    "add `fields: {chosen: <column>, rejected: <column>}`",
)


def uses_retrieval(spec) -> tuple[Need, ...]:
    """The default: a kind needs the task's corpus when its settings have a `retrieval:` block."""
    return (CORPUS,) if getattr(spec, "retrieval", None) is not None else ()


@dataclass(frozen=True)
class Kind:
    name: str  # the recipe's `kind:` value
    settings: type  # pydantic model of a recipe entry; its `kind` field is Literal[name]
    run: Callable[[Any, Any], Any]  # (spec, RunContext) -> Outcome; imports heavy libraries when called
    description: str = ""  # one line for `harness kinds` and the docs
    # Only reads the shared base model (no training, no weights changed): its cells share one process
    # and one loaded model, its lm-eval run is the base model's, and the report counts it training-free.
    reads_base_model: bool = False
    trained: bool = False  # learns from the train split: learning curves and the validation-loss objective apply
    default_learning_rate: float | None = None  # when the recipe's train.learning_rate is unset
    needs: Callable[[Any], tuple[Need, ...]] = uses_retrieval  # (spec) -> what the task must have for it to apply
    # Runs on someone else's machine: its cost is what the provider bills (the row's own cost_usd, from its
    # tokens), never this machine's seconds x the recipe's device price.
    hosted: bool = False
    # The row figures only this kind writes (label, unit, better end: see figures.py), and its rows'
    # descriptive fields (name -> what it holds): a row key nothing declares is a failed cell.
    figures: tuple[Figure, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    # Answers the task's questions, so it is scored and ranked on the task's metric. False: a model other
    # techniques use (kind reward), reported in a table of its own and never ranked against those that answer.
    generates: bool = True

    def __post_init__(self):
        field = getattr(self.settings, "model_fields", {}).get("kind")
        if field is None or typing.get_args(field.annotation) != (self.name,):
            raise TypeError(
                f"kind {self.name!r}: its settings model {self.settings.__name__} needs `kind: Literal[{self.name!r}]`"
            )
        if self.trained and self.default_learning_rate is None:
            raise TypeError(f"kind {self.name!r} trains, so it needs a default_learning_rate")


KINDS: Registry[Kind] = Registry("technique kind", BUILTIN_MODULES)


def unavailable() -> dict[str, str]:
    """Kinds users ask for that cannot be offered here, and why: `kind: <name>` is a recipe error saying so."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        trl = f"TRL {version('trl')}"
    except PackageNotFoundError:
        trl = "TRL"
    return {
        "ppo": (
            f"kind ppo: the pinned {trl} has no PPOTrainer (neither trl nor trl.experimental offers one); "
            "for RL against a learned reward use kind rloo (or grpo) with `reward: {model: <a kind reward technique>}`"
        )
    }


def register(kind: Kind) -> Kind:
    """Add a kind; from then on recipes may use `kind: <name>`."""
    return KINDS.add(kind.name, kind)


def get(name: str) -> Kind:
    return KINDS.get(name)


def known() -> list[str]:
    return KINDS.in_order()


def reads_base_model(kind: str) -> bool:
    """False for kinds this process does not know (e.g. rows of a run made with a plugin kind)."""
    return kind in KINDS and KINDS.get(kind).reads_base_model


def hosted(kind: str) -> bool:
    """False for kinds this process does not know."""
    return kind in KINDS and KINDS.get(kind).hosted


def trained(kind: str) -> bool:
    return kind in KINDS and KINDS.get(kind).trained


def generates(kind: str) -> bool:
    """True for kinds this process does not know (a plugin kind's rows are answers until it says otherwise)."""
    return kind not in KINDS or KINDS.get(kind).generates


def sources(spec) -> list[tuple[str, str]]:
    """(what for, technique) for each technique of the recipe whose trained model `spec` needs: the one it
    starts from (`init_from`) and the reward model it is trained against (`reward: {model: ...}`)."""
    init_from = getattr(spec, "init_from", None)
    reward = getattr(getattr(spec, "reward", None), "model", None)
    return [(role, name) for role, name in (("init_from", init_from), ("reward.model", reward)) if name is not None]


def needs_corpus(spec) -> bool:
    return CORPUS in KINDS.get(spec.kind).needs(spec)


def inapplicable(spec, task, recipe) -> str | None:
    """Why `spec` does not apply to `task`: what its kind needs that the task lacks, or a technique whose
    model it needs (`sources`: its init_from, its reward model) does not apply; None when it applies."""
    missing = [need for need in KINDS.get(spec.kind).needs(spec) if not need.present(task)]
    if missing:
        fixes = "; ".join(f"{need.fix} to the task's task.yaml" for need in missing)  # no machine path in reports
        lacks = " and no ".join(need.what for need in missing)
        why = "its `retrieval:`" if missing == list(uses_retrieval(spec)) else f"kind {spec.kind}"
        return f"task {task.name!r} has no {lacks}, which {spec.name!r} needs ({why}); fix: {fixes}"
    for role, source in sources(spec):
        upstream = inapplicable(recipe.technique(source), task, recipe)
        if upstream is not None:
            uses = "starts from" if role == "init_from" else "is trained against the reward model"
            return f"{spec.name!r} {uses} {source!r}, which does not apply: {upstream}"
    return None


def declared_figures(kind: str | None) -> dict[str, Figure]:
    """The figures `kind` declares (every registered kind's when None; none for a kind this process
    does not know, e.g. a row from a run made with a plugin)."""
    names = KINDS.in_order() if kind is None else [kind] if kind in KINDS else []
    chosen = [KINDS.get(name) for name in names]
    return {figure.key: figure for k in chosen for figure in k.figures}


def declared_fields(kind: str) -> dict[str, str]:
    return KINDS.get(kind).fields if kind in KINDS else {}
