"""Technique kinds. Each module registers one runner: (spec, RunContext) -> Outcome."""

from harness.techniques.base import TECHNIQUES, Outcome, RunContext
from harness.techniques import prompt  # noqa: F401  (registers its kind)

__all__ = ["TECHNIQUES", "Outcome", "RunContext"]
