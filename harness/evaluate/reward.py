"""A reward model's scores (kind reward): one number per (prompt, answer), read off a sequence-
classification head at the answer's last token, the text laid out by the chat template as TRL's
RewardTrainer and RLOO/GRPO lay it out.

Three readers: the reward technique's own row (held-out pair accuracy and margin, `score_heldout_pairs`),
RL against the learned reward (harness/techniques/rl.py passes the loaded model to TRL), and
`eval.reward_model`, which scores every technique's held-out answers (`reward_heldout`, run by the worker
after the technique's runner, like the LLM judge).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.evaluate.context import Context


def load_reward_model(spec, device: str):
    """The base model with a new one-number head, in fp32 (it is trained)."""
    import torch

    from harness import models

    return models.load_scorer(spec, device, torch.float32)


def load_trained(spec, folder: Path, device: str):
    """A trained reward model as saved by kind reward: LoRA adapters (with the score head) on the base
    model, merged; or the whole model."""
    import torch

    from harness import models

    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tokenizer = models.load_scorer(spec, device, torch.float32)
        return PeftModel.from_pretrained(base, folder).merge_and_unload().eval(), tokenizer
    return models.load_scorer(spec.model_copy(update={"id": str(folder)}), device, torch.float32)


def conversation_text(tokenizer, prompt: list[dict], answer: str) -> str:
    """The prompt's messages and the answer as one chat, as the reward model was trained on them."""
    return tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)


def scores(model, tokenizer, texts: Sequence[str], batch_size: int) -> list[float]:
    """The reward model's score of each text."""
    import torch

    totals: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            padding_side="right",
            add_special_tokens=False,
        ).to(model.device)
        with torch.inference_mode():
            totals += model(**batch).logits[:, 0].float().tolist()
    return totals


def score_heldout_pairs(model, tokenizer, ctx: Context) -> dict:
    """The reward model on the held-out pairs: the share with reward(chosen) > reward(rejected) and its 95%
    bootstrap interval, and the mean margin reward(chosen) - reward(rejected)."""
    from harness import metrics, prompting

    examples = ctx.heldout_examples()
    batch = ctx.recipe.eval.heldout.batch_size
    prompts = [prompting.messages(ctx.task, e) for e in examples]

    def rewarded(answer_of) -> list[float]:
        texts = [conversation_text(tokenizer, p, answer_of(e)) for p, e in zip(prompts, examples)]
        return scores(model, tokenizer, texts, batch)

    chosen, rejected = rewarded(lambda e: e.chosen), rewarded(lambda e: e.rejected)
    margins = np.asarray(chosen) - np.asarray(rejected)
    right = (margins > 0).astype(float)
    low, high = metrics.bootstrap_ci(
        lambda idx: float(right[idx].mean()), len(right), ctx.recipe.eval.heldout.bootstrap_samples, ctx.recipe.seed
    )
    return {
        "reward_accuracy": float(right.mean()) if len(right) else None,
        "reward_accuracy_ci_low": low if len(right) else None,
        "reward_accuracy_ci_high": high if len(right) else None,
        "reward_margin": float(margins.mean()) if len(margins) else None,
        "reward_pairs": len(margins),
    }


def reward_heldout(ctx: Context, reward_model: str, folder: Path, predictions: list[dict]) -> dict:
    """`eval.reward_model`: the trained reward model `reward_model` (saved at `folder`) scores each held-out
    answer of a finished cell. Adds `reward_score` to each prediction and returns the row's figures: the
    mean score, the scoring's own seconds, and its rank correlation with the task metric (as the judge's)."""
    from harness import prompting
    from harness.analysis.stats import judge_agreement, value_of
    from harness.measure import measure

    by_id = {e.id: e for e in ctx.heldout_examples()}
    with measure(ctx.device) as phase:
        model, tokenizer = load_trained(ctx.recipe.model, folder, ctx.device)
        texts = [
            conversation_text(tokenizer, prompting.messages(ctx.task, by_id[p["id"]]), p["predicted"] or "")
            for p in predictions
        ]
        values = scores(model, tokenizer, texts, ctx.recipe.eval.heldout.batch_size)
    for prediction, value in zip(predictions, values):
        prediction["reward_score"] = value
    agreement = judge_agreement(values, [value_of(p) for p in predictions], binary=False)
    return {
        "reward_model": reward_model,
        "reward_score": float(np.mean(values)) if values else None,
        "reward_spearman": agreement["judge_spearman"],
        "reward_seconds": phase.seconds,
    }
