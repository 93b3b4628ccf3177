"""Technique kinds. Each module registers one runner: (spec, RunContext) -> Outcome."""

from harness.techniques.base import TECHNIQUES, Outcome, RunContext
from harness.techniques import finetune, prompt, rag  # noqa: F401  (each registers its kinds)

__all__ = ["TECHNIQUES", "Outcome", "RunContext"]
