"""What every technique shares: the run context, the outcome type, and measured held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.progress import Progress

from harness import models
from harness.config import Recipe
from harness.evaluate import heldout
from harness.measure import measure
from harness.registry import Registry
from harness.tasks import Example, Task

TECHNIQUES: Registry[Callable[[Any, "RunContext"], "Outcome"]] = Registry("technique kind")


@dataclass
class Outcome:
    values: dict[str, Any]  # row fields measured by the technique (score, eval_seconds, ...)
    predictions: list[dict] = field(default_factory=list)


@dataclass
class RunContext:
    recipe: Recipe
    task: Task
    device: str
    run_dir: Path
    progress: Progress
    _base: tuple | None = None
    base_load_seconds: float | None = None

    def base_model(self):
        """(model, tokenizer) of the recipe's base model, loaded once and shared by read-only techniques."""
        if self._base is None:
            job = self.progress.add_task(f"loading model {self.recipe.model.id}", total=None)
            with measure(self.device) as phase:
                self._base = models.load(self.recipe.model, self.device)
            self.base_load_seconds = phase.seconds
            self.progress.remove_task(job)
        return self._base

    def release_base_model(self) -> None:
        self._base = None


def evaluate_heldout(ctx: RunContext, label: str, model, tokenizer, prompt_for: Callable[[Example], str]) -> Outcome:
    """Score a model on the held-out split, measuring the phase; fills the eval fields of a row."""
    settings = ctx.recipe.eval.heldout
    n = len(heldout.heldout_examples(ctx.task, settings))
    job = ctx.progress.add_task(f"{label}: generating", total=n)
    with measure(ctx.device) as phase:
        result = heldout.evaluate(model, tokenizer, ctx.task, prompt_for, settings, ctx.recipe.seed,
                                  on_batch=lambda k: ctx.progress.advance(job, k))
    ctx.progress.remove_task(job)
    values = {
        "metric": result.metric, "score": result.score, "ci_low": result.ci_low, "ci_high": result.ci_high,
        "n_eval": n, "invalid_rate": result.invalid_rate, "eval_seconds": phase.seconds,
        "eval_peak_memory_bytes": phase.peak_bytes, "peak_memory_method": phase.method,
        "eval_tokens_per_second": result.generated_tokens / phase.seconds if phase.seconds else None,
        "eval_examples_per_second": n / phase.seconds if phase.seconds else None,
        **{f"score_{name}": value for name, value in result.metrics.items()},
    }
    return Outcome(values, result.predictions)
