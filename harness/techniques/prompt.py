"""kind: prompt — the base model as it is, zero-shot or k-shot through the chat template."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field

from harness import kinds, prompting
from harness.config import TechniqueBase
from harness.evaluate.lmeval import evaluate_lm_eval
from harness.evaluate.phase import evaluate_heldout
from harness.tasks import Example
from harness.techniques.base import Outcome, RunContext


class PromptTechnique(TechniqueBase):
    """Prompt-only: the base model as it is, zero-shot or with k examples from the train split."""

    kind: Literal["prompt"]
    shots: int = Field(0, ge=0, le=64)  # examples shown before the question; drawn from train by seed


def run_prompt(spec: PromptTechnique, ctx: RunContext) -> Outcome:
    return score_base_model(spec, ctx)


def score_base_model(spec, ctx: RunContext, augment: Callable[[Example, str], str] | None = None) -> Outcome:
    """The shared base model, prompted with the spec's shots (and, for rag, `augment`'s passages)."""
    from harness import models

    model, tokenizer = ctx.base_model()
    shots = prompting.draw_shots(ctx.task, spec.shots, ctx.recipe.seed)
    outcome = evaluate_heldout(
        ctx,
        spec.name,
        model,
        tokenizer,
        lambda example: prompting.render(tokenizer, prompting.messages(ctx.task, example, shots, augment)),
    )
    _, total = models.count_parameters(model)
    outcome.values.update(
        trainable_params=0,
        total_params=total,
        dtype=str(model.dtype).removeprefix("torch."),
        **evaluate_lm_eval(ctx, spec.name, model, tokenizer, base_model=True),
    )
    return outcome


kinds.register(
    kinds.Kind(
        "prompt",
        PromptTechnique,
        run_prompt,
        "the base model as it is, zero- or few-shot",
        reads_base_model=True,
    )
)
