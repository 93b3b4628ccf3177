"""Preference pairs on held-out prompts: does the model give the chosen answer a higher likelihood than
the rejected one? Scored for every technique on a task with `fields: {chosen, rejected}`, so prompt-only,
SFT and DPO are compared on the same pairs. A completion's score is the sum of its tokens' log-
probabilities after the prompt (the quantity DPO's loss moves), without the end-of-turn token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PairScores:
    margins: list[float]  # log p(chosen | prompt) - log p(rejected | prompt), per pair

    @property
    def accuracy(self) -> float:
        return float(np.mean([m > 0 for m in self.margins])) if self.margins else float("nan")

    @property
    def mean_margin(self) -> float:
        return float(np.mean(self.margins)) if self.margins else float("nan")


def encoding(tokenizer) -> tuple[bool, int]:
    """How a prompt is encoded before its completion: with special tokens unless it is a rendered chat
    prompt (which has its own), and the id that pads a batch."""
    add_special = not getattr(tokenizer, "chat_template", None)
    return add_special, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def completion_logprobs(
    model, tokenizer, prompts: Sequence[str], completions: Sequence[str], batch_size: int
) -> list[float]:
    """Sum of log p(completion token | prompt, earlier tokens) for each (prompt, completion)."""
    add_special, pad = encoding(tokenizer)
    totals: list[float] = []
    for start in range(0, len(prompts), batch_size):
        rows, masks = [], []
        for prompt, completion in zip(prompts[start : start + batch_size], completions[start : start + batch_size]):
            prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
            completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
            rows.append(prompt_ids + completion_ids)
            masks.append([0] * len(prompt_ids) + [1] * len(completion_ids))
        width = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.device)
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=model.device)
        scored = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=model.device)[:, 1:]
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        totals += (token_logps * scored).sum(dim=1).tolist()
    return totals


def score_pairs(
    model, tokenizer, prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str], batch_size: int
) -> PairScores:
    good = completion_logprobs(model, tokenizer, prompts, chosen, batch_size)
    bad = completion_logprobs(model, tokenizer, prompts, rejected, batch_size)
    return PairScores([g - b for g, b in zip(good, bad)])
