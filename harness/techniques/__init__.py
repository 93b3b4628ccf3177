"""Technique kinds: each module defines one kind's settings, its runner, and registers it (harness.kinds)."""

from harness.techniques.base import Outcome, RunContext
from harness.techniques import cpt, finetune, peft_method, preference, prompt, rag, rl  # noqa: F401  (each registers its kinds)
from harness.techniques import api  # noqa: F401  (after the local kinds: listed last)

__all__ = ["Outcome", "RunContext"]
