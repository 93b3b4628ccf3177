"""What every technique shares: the run context, the outcome type, and measured held-out evaluation.

Imported by the kind modules at recipe-validation time, so torch and the model code are imported
inside the functions that run a cell, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness import retrieval
from harness.config import Recipe, RetrievalSettings
from harness.study import Cell
from harness.tasks import Example, Task
from harness.yamlconfig import ConfigError


class Progress(Protocol):
    """The part of rich's Progress API the techniques use; worker.LineProgress (a cell's) has it too."""

    def add_task(self, description: str, *, total: float | None = ...) -> Any: ...
    def update(
        self,
        task_id: Any,
        /,
        *,
        completed: float | None = ...,
        description: str | None = ...,
        advance: float | None = ...,
    ) -> None: ...
    def advance(self, task_id: Any, amount: float = ..., /) -> None: ...
    def remove_task(self, task_id: Any, /) -> None: ...


@dataclass
class Outcome:
    values: dict[str, Any]  # row fields measured by the technique (score, eval_seconds, ...)
    predictions: list[dict] = field(default_factory=list)


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
    recipe: Recipe  # narrowed to one task and to the cell's seed
    task: Task
    device: str
    run_dir: Path
    progress: Progress
    cell: Cell = None  # type: ignore[assignment]  # which split to score, whether lm-eval and artifacts apply
    shared: Shared = field(default_factory=Shared)
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks (a search trial's pruning)

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
            assert settings is not None  # judges(): only under eval.judge
            reuse = self.shared.base if settings.model == self.recipe.model else None
            self.shared.judge = judge.build(settings, self.device, loaded=reuse)
        return self.shared.judge

    def heldout_examples(self) -> list[Example]:
        """The examples this cell is scored on: the validation split for search trials, else the test split."""
        from harness.tasks import heldout_examples

        if self.cell.split == "validation":
            return list(self.task.validation)
        return list(heldout_examples(self.task, self.recipe.eval.heldout))

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
                f"add `corpus: {{path: ...}}` to {self.task.path / 'task.yaml'}"
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


def evaluate_heldout(ctx: RunContext, label: str, model, tokenizer, prompt_for: Callable[[Example], str]) -> Outcome:
    """Score a model on the held-out split, measuring the phase; fills the eval fields of a row."""
    from harness.evaluate import heldout

    settings = ctx.recipe.eval.heldout

    def answer(examples: list[Example], on_batch: Callable[[int], None]):
        return heldout.model_answers(model, tokenizer, ctx.task, [prompt_for(e) for e in examples], settings, on_batch)

    outcome = evaluate_answers(
        ctx,
        label,
        answer,
        lambda examples, predictions: score_preferences(ctx, model, tokenizer, examples, prompt_for, predictions),
    )
    outcome.values.update(latency_figures(measure_latency(ctx, model, tokenizer, ctx.heldout_examples(), prompt_for)))
    return outcome


# (examples, on_batch) -> heldout.Answered: one answer per example, with the token counts it measured
Answerer = Callable[[list[Example], Callable[[int], None]], Any]


def evaluate_answers(
    ctx: RunContext, label: str, answer: Answerer, after: Callable[[list[Example], list[dict]], dict] | None = None
) -> Outcome:
    """Score answers on the held-out split, measuring the phase; fills the eval fields of a row.

    `answer(examples, on_batch)` answers every example (a local model: `heldout.model_answers`; kind api:
    a hosted endpoint's replies), calling `on_batch(k)` as k more are done. `after(examples, predictions)`
    adds figures measured in the same phase (preference pairs)."""
    from harness.evaluate import heldout
    from harness.measure import measure

    settings = ctx.recipe.eval.heldout
    examples = ctx.heldout_examples()
    n = len(examples)
    job = ctx.progress.add_task(
        f"{label}: {'generating' if settings.mode == 'generate' else 'scoring labels'}", total=n
    )
    with measure(ctx.device) as phase:
        answered = answer(examples, lambda k: ctx.progress.advance(job, k))
        result = heldout.score_answers(ctx.task, examples, answered, settings, ctx.recipe.seed)
        extra = after(examples, result.predictions) if after else {}
    ctx.progress.remove_task(job)
    values = {
        "metric": result.metric,
        "score": result.score,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "n_eval": n,
        "invalid_rate": result.invalid_rate,
        "eval_seconds": phase.seconds,
        "eval_peak_memory_bytes": phase.peak_bytes,
        "peak_memory_method": phase.method,
        "eval_mode": settings.mode,  # nothing is generated under loglikelihood: no tokens/s
        "eval_tokens_per_second": result.generated_tokens / phase.seconds
        if phase.seconds and settings.mode == "generate"
        else None,
        "eval_examples_per_second": n / phase.seconds if phase.seconds else None,
        **{f"score_{name}": value for name, value in result.metrics.items()},
        **extra,
        **serving_figures(result.prompt_tokens, result.output_tokens),
    }
    return Outcome(values, result.predictions)


def judges(ctx: RunContext) -> bool:
    """Whether this cell's answers are judged: the task has a `judge:` rubric, the recipe an `eval.judge`,
    and this is the configuration the row reports (search trials and smaller learning-curve sizes are not)."""
    return ctx.task.spec.judge is not None and ctx.recipe.eval.judge is not None and ctx.final


def judge_heldout(ctx: RunContext, predictions: list[dict], metric: str | None) -> dict:
    """Grade a finished cell's held-out answers with the recipe's judge, by the task's rubric. Adds
    `judge_score` (normalised to [0, 1], None when the reply had no score) and `judge_reason` to each
    prediction, and returns the row's judge figures: the mean score over parsed replies, the unparsed
    count, the judge's own seconds and peak memory (model load included; not part of eval_seconds,
    wall_seconds or the serving figures), the judge's own figures (an endpoint judge's tokens and
    judge_cost_usd; see judge.EndpointJudge.figures), and its agreement with the task metric (see
    analysis/stats.judge_agreement). Run by the worker after the technique's runner returned, so a trained
    model is already freed when the judge loads."""
    from harness import metrics
    from harness.analysis.stats import judge_agreement, value_of
    from harness.evaluate import judge
    from harness.measure import measure
    from harness.prompting import user_text

    rubric = ctx.task.spec.judge
    assert rubric is not None  # judges(): only a task with a rubric
    by_id = {e.id: e for e in ctx.heldout_examples()}
    texts = [
        judge.prompt(
            rubric.rubric, rubric.scale, user_text(ctx.task, by_id[p["id"]]), p["expected"], p["predicted"] or ""
        )
        for p in predictions
    ]
    job = ctx.progress.add_task("judging answers", total=len(texts))
    with measure(ctx.device) as phase:
        grader = ctx.judge()
        replies = grader.judge_answers(texts, on_batch=lambda k: ctx.progress.advance(job, k))
    ctx.progress.remove_task(job)
    scored = []
    for prediction, reply in zip(predictions, replies):
        points = judge.parse_score(reply, rubric.scale)
        prediction["judge_score"] = None if points is None else judge.normalise(points, rubric.scale)
        prediction["judge_reason"] = judge.reason(reply)
        if points is not None:
            scored.append((prediction["judge_score"], value_of(prediction)))
    values = {
        "judge_model": grader.name,
        "judge_scale": rubric.scale,
        "judge_score": sum(s for s, _ in scored) / len(scored) if scored else None,
        "judge_unparsed": len(predictions) - len(scored),
        "judge_seconds": phase.seconds,
        "judge_peak_memory_bytes": phase.peak_bytes,
    } | (grader.figures() if hasattr(grader, "figures") else {})  # an endpoint judge's tokens and cost
    return values | judge_agreement([s for s, _ in scored], [v for _, v in scored], metrics.is_binary(metric))


def measure_latency(ctx: RunContext, model, tokenizer, examples: list[Example], prompt_for) -> list[float]:
    """Seconds per request at batch size 1 on the first `eval.heldout.latency_samples` held-out prompts,
    outside the measured evaluation phase (so eval_seconds stays the batched run). Only the configuration
    the row reports measures it: search trials and smaller learning-curve sizes skip it."""
    from harness.evaluate import heldout

    settings = ctx.recipe.eval.heldout
    if not ctx.final or not settings.latency_samples:
        return []
    prompts = [prompt_for(e) for e in examples[: settings.latency_samples]]
    return heldout.latencies(model, tokenizer, prompts, settings, ctx.task.labels or ())


def percentile(values, q: float | None = None) -> float | None:
    """The q-th percentile of values (their mean when q is None); None when nothing was measured."""
    import numpy as np

    return None if not len(values) else float(np.mean(values) if q is None else np.percentile(values, q))


def serving_figures(prompt_tokens, output_tokens, latencies=()) -> dict:
    """Per request: prompt and generated tokens (mean, p95) and latency at batch size 1 (p50, p95); None
    where nothing was measured."""
    return {
        "prompt_tokens_mean": percentile(prompt_tokens),
        "prompt_tokens_p95": percentile(prompt_tokens, 95),
        "output_tokens_mean": percentile(output_tokens),
        "output_tokens_p95": percentile(output_tokens, 95),
        **latency_figures(latencies),
    }


def latency_figures(latencies) -> dict:
    return {"latency_p50_seconds": percentile(latencies, 50), "latency_p95_seconds": percentile(latencies, 95)}


def score_preferences(ctx: RunContext, model, tokenizer, examples, prompt_for, predictions: list[dict]) -> dict:
    """On a task with preference pairs, whether the model prefers each held-out example's chosen answer
    to its rejected one (every technique is scored on the same pairs, trained on them or not)."""
    if not ctx.task.has_preferences:
        return {}
    from harness.evaluate import preference

    pairs = preference.score_pairs(
        model,
        tokenizer,
        [prompt_for(e) for e in examples],
        [e.chosen for e in examples],
        [e.rejected for e in examples],
        ctx.recipe.eval.heldout.batch_size,
    )
    for prediction, margin in zip(predictions, pairs.margins):
        prediction["preference_margin"] = margin
    return {"preference_accuracy": pairs.accuracy, "preference_margin": pairs.mean_margin}


def evaluate_lm_eval(ctx: RunContext, label: str, model, tokenizer, base_model: bool = False) -> dict:
    """The recipe's lm-eval tasks on this model, measured; techniques that only read the base model
    (prompt, rag) share one run, since their lm-eval prompts are the same."""
    from harness.evaluate import lmeval
    from harness.measure import measure

    settings = ctx.recipe.eval.lm_eval
    if not settings.tasks or not ctx.final:  # search trials and learning-curve sizes skip it
        return {}
    if base_model and ctx.shared.base_lm_eval is not None:
        # the scores are shared; the time and memory belong to the technique that ran lm-eval
        return ctx.shared.base_lm_eval | {
            "lm_eval_seconds": 0.0,
            "lm_eval_peak_memory_bytes": None,
            "lm_eval_shared": True,
        }
    job = ctx.progress.add_task(f"{label}: lm-eval", total=len(settings.tasks))
    with measure(ctx.device) as phase:
        scores, errors = lmeval.score(
            model,
            tokenizer,
            settings,
            on_task=lambda name: ctx.progress.update(job, description=f"{label}: lm-eval {name}", advance=1),
            failed=ctx.shared.lm_eval_failed,
        )
    ctx.progress.remove_task(job)
    values = scores | {
        "lm_eval_errors": errors or None,
        "lm_eval_seconds": phase.seconds,
        "lm_eval_peak_memory_bytes": phase.peak_bytes,
    }
    if base_model:
        ctx.shared.base_lm_eval = values
    return values
