"""A cell's held-out evaluation phase: its answers scored inside one measured phase, as the eval fields
of its row (`evaluate_heldout` for a local model, `evaluate_answers` for answers from anywhere: kind api's
endpoint), then latency at batch size 1 outside that phase.

The runners of the technique kinds call these with their RunContext (an evaluate.context.Context).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.evaluate.context import Context, Outcome
from harness.evaluate.serving import latency_figures, serving_figures
from harness.tasks import Example

# (examples, on_batch) -> heldout.Answered: one answer per example, with the token counts it measured
Answerer = Callable[[list[Example], Callable[[int], None]], Any]


def evaluate_heldout(ctx: Context, label: str, model, tokenizer, prompt_for: Callable[[Example], str]) -> Outcome:
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


def evaluate_answers(
    ctx: Context, label: str, answer: Answerer, after: Callable[[list[Example], list[dict]], dict] | None = None
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
        **phase.gpu_figures("eval"),
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


def measure_latency(ctx: Context, model, tokenizer, examples: list[Example], prompt_for) -> list[float]:
    """Seconds per request at batch size 1 on the first `eval.heldout.latency_samples` held-out prompts,
    outside the measured evaluation phase (so eval_seconds stays the batched run). Only the configuration
    the row reports measures it: search trials and smaller learning-curve sizes skip it."""
    from harness.evaluate import heldout

    settings = ctx.recipe.eval.heldout
    if not ctx.final or not settings.latency_samples:
        return []
    prompts = [prompt_for(e) for e in examples[: settings.latency_samples]]
    return heldout.latencies(model, tokenizer, prompts, settings, ctx.task.labels or ())


def score_preferences(ctx: Context, model, tokenizer, examples, prompt_for, predictions: list[dict]) -> dict:
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
