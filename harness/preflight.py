"""Pre-flight: what a valid recipe (config.py) must also pass before a run starts, loading no model.

The schema checks a recipe's own settings, each error at its line in the file. Pre-flight checks what
lies outside the file: the models resolve, the trackers' packages are installed, and each task takes
the recipe's settings (labels for loglikelihood scoring, a judge rubric, the validation split, the
corpus, the few-shot examples). `harness validate` runs it, and `pipeline.run` runs it first, so a
run started from `harness run` or from Python is checked alike, before any folder is made.

Light: nothing here imports torch or transformers (tests/test_cli_light.py). A problem is raised
(ConfigError, or ModelResolutionError for a model); input that works but likely not as meant warns
with a ConfigWarning where it is found, which the CLI prints as one line.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import kinds, planning, screening
from harness.config import Recipe
from harness.models import ModelResolutionError, check_resolvable
from harness.prompting import draw_shots
from harness.retrieval import load_corpus
from harness.tasks import Task, load_task, with_validation
from harness.yamlconfig import ConfigError, ConfigWarning


def check(recipe: Recipe, source: str | None = None) -> None:
    """Raise on the first problem. `source`, the recipe's file, prefixes the errors about settings that
    have no line of their own in it (a missing tracker package, a setting a task cannot take)."""
    check_resolvable(recipe.model.id)
    with citing(source):
        recipe.tracking.check_installed()
    check_judge_model(recipe)
    with citing(source):
        check_distributed(recipe)
        check_output_folder(recipe)
        check_cores(recipe)
        planning.task_folders(recipe.tasks)  # two tasks that would share a run sub-folder
    for task in map(load_task, recipe.tasks):
        check_task(recipe, task, source)


def check_judge_model(recipe: Recipe) -> None:
    """A judge model that certainly cannot load fails here, as the recipe's `model:` does. An endpoint
    is not contacted before the run (its key is read where the cells run)."""
    judge = recipe.eval.judge
    if judge is None or judge.model is None:
        return
    try:
        check_resolvable(judge.model.id)
    except ModelResolutionError as exc:
        raise ModelResolutionError(f"eval.judge.model: {exc}") from None


def check_distributed(recipe: Recipe) -> None:
    """What a multi-process cell (train.distributed) needs beyond its settings: DeepSpeed's package, GPUs
    that agree with its processes, and a cluster executor for a cell across machines."""
    from importlib.util import find_spec

    for technique in recipe.techniques:
        spec = getattr(getattr(technique, "train", None), "distributed", None)
        if spec is None:
            continue
        where = f"technique {technique.name!r}: train.distributed"
        if spec.strategy == "deepspeed" and find_spec("deepspeed") is None:
            raise ConfigError(f"{where}.strategy deepspeed needs the deepspeed package: pip install deepspeed")
        gpus = recipe.executor.gpus_per_cell
        asked = gpus.get(technique.name, gpus.get(technique.kind)) if isinstance(gpus, dict) else gpus
        if asked and asked != spec.world_size:
            raise ConfigError(
                f"executor.gpus_per_cell gives technique {technique.name!r} {asked:g} GPU(s) per cell, but its "
                f"train.distributed runs {spec.world_size} processes, one GPU each; make them equal, or leave "
                "gpus_per_cell unset for it (a multi-process cell asks for its processes' GPUs)"
            )
        if spec.nodes > 1 and recipe.executor.kind == "local":
            raise ConfigError(
                f"{where}.nodes {spec.nodes}: a cell across machines needs a cluster executor that starts it on "
                f"each node (executor.kind: slurm or ray); on one machine, run its {spec.world_size} processes as "
                f"processes: {spec.world_size}, nodes: 1"
            )


def check_output_folder(recipe: Recipe) -> None:
    """The run folder's root is a folder, or can be made one: found now, not when the first cell's result
    is written."""
    key, root = ("executor.storage", recipe.executor.storage) if recipe.executor.storage else ("output_dir", None)
    path = Path(root or recipe.output_dir)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        what = "is not a folder" if existing == path else f"cannot hold a folder: {existing} is not one"
        raise ConfigError(f"{key}: {path} {what}; fix: name a folder the run folders may go in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {existing} is not writable; fix: name a folder you may write in")


def check_cores(recipe: Recipe) -> None:
    """The local executor gives each cell cpus_per_cell threads of this machine: more than it has only
    makes the threads take turns."""
    cpus, cores = recipe.executor.cpus_per_cell, os.cpu_count() or 1
    if recipe.executor.kind == "local" and cpus is not None and cpus > cores:
        raise ConfigError(
            f"executor.cpus_per_cell {cpus}: this machine has {cores} CPU cores; give at most {cores} "
            "(or leave it unset: the cores are split between --jobs)"
        )


def check_lora_targets(recipe: Recipe) -> None:
    """Every LoRA's target_modules names modules of the model: peft would otherwise fail in every cell
    ("Target modules ... not found"); which module types it adapts, peft decides. The model is read on the
    meta device (no weights), which needs torch, so `harness run` checks it before the first cell, not the
    light `harness validate`."""
    from pydantic import BaseModel

    from harness import planner
    from harness.techniques.finetune import LoraSettings

    def loras(settings: BaseModel) -> Iterator[LoraSettings]:  # cpt's `then:` holds one too
        for _, value in settings:
            if isinstance(value, LoraSettings):
                yield value
            elif isinstance(value, BaseModel):
                yield from loras(value)

    asked = [(t.name, lora.target_modules) for t in recipe.techniques for lora in loras(t)]
    asked = [(name, targets) for name, targets in asked if targets != "all-linear"]
    if not asked:
        return
    try:
        modules = planner.read_model(recipe.model.id).modules
    except Exception:  # noqa: BLE001 — a model the planner cannot read: peft's own error then names the module
        return
    short = sorted({module.rsplit(".", 1)[-1] for module in modules if not module.rsplit(".", 1)[-1].isdigit()})
    for name, targets in asked:
        for target in targets:  # matched as peft matches a list: the whole name, or its last dotted parts
            if not any(module == target or module.endswith("." + target) for module in modules):
                hint = difflib.get_close_matches(target, short, n=1)
                raise ConfigError(
                    f"technique {name!r}: lora.target_modules {target!r} names no module of "
                    f"{recipe.model.id}{f' (did you mean {hint[0]!r}?)' if hint else ''}; its modules: "
                    f"{', '.join(short)} (or all-linear)"
                )


def check_task(recipe: Recipe, task: Task, source: str | None = None) -> None:
    """The task takes the recipe's settings; the validation split is cut as a run cuts it, so that its
    problems show here rather than in a worker."""
    with citing(source):
        recipe.eval.heldout.check_task(task)
        if recipe.eval.judge is not None:
            recipe.eval.judge.check_task(task)
        task = with_validation(task, recipe.eval.validation)
        if recipe.eval.leakage.action != "warn":  # error: stop before any cell; exclude: not every example
            screening.screen(task, recipe.eval.leakage)
    if task.corpus_path is not None and any(map(kinds.needs_corpus, recipe.techniques)):
        documents = load_corpus(task.corpus_path)  # its errors name the corpus file and line
        check_gold_documents(task, {doc_id for doc_id, _ in documents})
    with citing(source):
        for technique in recipe.techniques:
            if technique.search and technique.search.objective == "validation_macro_f1" and not task.is_classification:
                raise ConfigError(
                    f"technique {technique.name!r}: objective validation_macro_f1 needs a classification task "
                    f"(one with `labels:`); task {task.name!r} has none: use validation_score"
                )
            if kinds.trained(technique.kind):
                planning.check_train_sizes(recipe, technique, len(task.train))
            try:
                draw_shots(task, getattr(technique, "shots", 0), recipe.seed)
            except ValueError as exc:
                raise ConfigError(f"technique {technique.name!r} on task {task.name!r}: {exc}") from None


def check_gold_documents(task: Task, corpus_ids: set[str]) -> None:
    """The gold documents the data names (fields.doc_id) are in the corpus: when none is, recall@k is 0 by
    construction (an id typo, or ids of another corpus); when some are missing, it is capped, and said."""
    named = {doc for example in (*task.train, *task.validation, *task.test) for doc in example.gold_docs}
    missing = sorted(named - corpus_ids)
    if not missing:
        return
    where = f"{task.where}: fields.doc_id"
    corpus = task.spec.corpus.path if task.spec.corpus else "(none)"
    sample = ", ".join(map(repr, missing[:3]))
    if len(missing) == len(named):
        known = ", ".join(map(repr, sorted(corpus_ids)[:3]))
        raise ConfigError(
            f"{where}: none of the {len(named)} gold document id(s) the data names is in the corpus "
            f"{corpus} (e.g. {sample}; its ids are e.g. {known}), so recall@k would be 0 whatever "
            "is retrieved; fix the ids (a folder's document id is its file's path without the suffix)"
        )
    warnings.warn(
        f"{where}: {len(missing)} of {len(named)} gold document id(s) are not in the corpus {corpus} "
        f"(e.g. {sample}): recall@k cannot reach 1 on their examples",
        ConfigWarning,
        stacklevel=2,
    )


@contextmanager
def citing(source: str | None) -> Iterator[None]:
    """A ConfigError raised inside names the recipe's file first (when there is one)."""
    try:
        yield
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc}") from None
