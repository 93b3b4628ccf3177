"""Technique kinds: each module defines one kind's settings, its runner, and registers it (harness.kinds)."""

from harness.techniques.base import Outcome, RunContext
from harness.techniques import cpt, finetune, preference, prompt, rag  # noqa: F401  (each registers its kinds)

__all__ = ["Outcome", "RunContext"]
