"""Technique kinds: each module defines one kind's settings, its runner, and registers it (harness.kinds)."""

# Import order is registration order, which `harness kinds` and error messages list.
# isort: off
from harness.techniques import prompt, rag, finetune, cpt, peft_method, preference, reward, rl  # noqa: F401
from harness.techniques import api, api_finetune  # noqa: F401  (after the local kinds: listed last)

# isort: on
from harness.techniques.base import Outcome, RunContext

__all__ = ["Outcome", "RunContext"]
