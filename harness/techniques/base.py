"""The runner contract: what a kind's runner gets (`RunContext`: the cell, its task and recipe, what the
cells of one process share) and returns (`Outcome`: row values + predictions).

Outcome and Progress are defined in evaluate/context.py (evaluation returns Outcomes and reports
progress, and evaluate/ imports no technique) and exported here with the rest of the contract. The
measured evaluation a runner calls is in evaluate/: phase.evaluate_heldout / evaluate_answers,
lmeval.evaluate_lm_eval, and the worker's judge.judge_heldout.

Imported by the kind modules at recipe-validation time, so torch and the model code are imported
inside the functions that run a cell, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import retrieval
from harness.config import Recipe, RetrievalSettings
from harness.evaluate.context import Outcome, Progress
from harness.planning import Cell
from harness.tasks import Example, Task
from harness.yamlconfig import ConfigError

__all__ = ["Index", "Outcome", "Progress", "RunContext", "Shared"]


@dataclass(frozen=True)
class Index:
    """A retriever over the task corpus's chunks, and what obtaining it cost this technique."""

    retriever: Any
    chunks: list[retrieval.Chunk]
    seconds: float  # build (or load from the disk cache) time; 0 when an earlier technique built it
    cached: bool  # loaded from disk or reused in this run, not built


@dataclass
class Shared:
    """What the cells of one process share: the base model (loaded once, outside every cell's wall
    time), corpus indexes, and the base model's lm-eval scores (prompt and rag read the same model)."""

    base: tuple | None = None
    base_load_seconds: float | None = None
    indexes: dict = field(default_factory=dict)
    base_lm_eval: dict | None = None
    lm_eval_failed: dict = field(default_factory=dict)  # lm-eval tasks that cannot run here
    # the recipe's LLM judge (eval.judge), loaded on first use; the worker drops it when the cell ends
    # (`drop_judge`), so it never sits in a later cell's memory peak
    judge: Any = None

    def drop_judge(self) -> None:
        self.judge = None


@dataclass
class RunContext:
    """One cell's run, as its runner reads it; an evaluate.context.Context, so the evaluate/ functions take it."""

    recipe: Recipe  # narrowed to one task and to the cell's seed
    task: Task
    device: str
    run_dir: Path
    progress: Progress
    cell: Cell = None  # type: ignore[assignment]  # which split to score, whether lm-eval and artifacts apply
    shared: Shared = field(default_factory=Shared)
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks (a search trial's pruning)
    ranks: int = 1  # processes the cell trains in (train.distributed); see load_device

    @property
    def load_device(self) -> str:
        """Where a model to train is loaded: the cell's device, except that ranks on GPUs are forked from
        this process (harness/distributed.py), which must not hold a CUDA context then: they get the
        model in host memory and place it themselves, and the trained model comes back to `device`."""
        return "cpu" if self.ranks > 1 and self.device.startswith("cuda") else self.device

    def __post_init__(self):
        if self.cell is None:
            self.cell = Cell("", self.recipe.seed)

    def base_model(self):
        """(model, tokenizer) of the recipe's base model, loaded once and shared by read-only techniques."""
        if self.shared.base is None:
            from harness import models
            from harness.measure import measure

            job = self.progress.add_task(f"loading model {self.recipe.model.id}", total=None)
            with measure(self.device) as phase:
                self.shared.base = models.load(self.recipe.model, self.device)
            self.shared.base_load_seconds = phase.seconds
            self.progress.remove_task(job)
        return self.shared.base

    def judge(self):
        """The recipe's judge (harness/evaluate/judge.py), built once per cell. A judge whose model spec is
        the recipe's own model, with the base model already loaded in this process, reads that copy."""
        if self.shared.judge is None:
            from harness.evaluate import judge

            settings = self.recipe.eval.judge
            assert settings is not None  # judge.judges(): only under eval.judge
            reuse = self.shared.base if settings.model == self.recipe.model else None
            self.shared.judge = judge.build(settings, self.device, loaded=reuse)
        return self.shared.judge

    def heldout_examples(self) -> list[Example]:
        """The examples this cell is scored on: the validation split for search trials, else the test split."""
        from harness.tasks import heldout_examples

        if self.cell.split == "validation":
            return list(self.task.validation)
        return list(heldout_examples(self.task, self.recipe.eval.heldout.limit))

    @property
    def final(self) -> bool:
        """The configuration the technique's row reports: it alone gets lm-eval and a saved artifact."""
        return self.cell.split == "test" and self.cell.main

    def index(self, settings: RetrievalSettings) -> Index:
        """The corpus index for these settings: built once per process, and cached on disk by corpus hash."""
        key = (settings.retriever, settings.chunk_size, settings.chunk_overlap, settings.embedding_model)
        if key in self.shared.indexes:
            return Index(self.shared.indexes[key].retriever, self.shared.indexes[key].chunks, 0.0, True)
        if self.task.corpus_path is None:
            raise ConfigError(
                f"task {self.task.name!r} has no corpus, so retrieval has nothing to search; "
                f"add `corpus: {{path: ...}}` to {self.task.where}"
            )
        from harness import models

        job = self.progress.add_task(f"indexing corpus ({settings.retriever})", total=None)
        start = time.perf_counter()
        chunks = retrieval.chunk_documents(
            retrieval.load_corpus(self.task.corpus_path), settings.chunk_size, settings.chunk_overlap
        )
        retriever = retrieval.build_retriever(
            settings.retriever,
            chunks,
            embedding_model=settings.embedding_model,
            device=self.device,
            cache_root=models.cache_dir() / "indexes",
        )
        self.progress.remove_task(job)
        self.shared.indexes[key] = Index(retriever, chunks, time.perf_counter() - start, retriever.loaded)
        return self.shared.indexes[key]
