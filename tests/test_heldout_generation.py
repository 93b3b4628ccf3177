"""Held-out generation on the tiny model: answers do not depend on the batch or on the prefix cache."""

import pytest
import torch

from harness import models, prompting
from harness.config import ModelSpec
from harness.evaluate import heldout, prefix_cache
from harness.tasks import load_task


def varied_model(tiny_model_dir, dtype):
    """The tiny model with larger random weights: its greedy answers differ from prompt to prompt (at the
    default init it repeats one token), so a changed number anywhere shows up as a changed answer."""
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.normal_(0, 0.2)
    return model.to(dtype), tokenizer


def few_shot_prompts(tokenizer, n=8, shots=2):
    task = load_task("ticket-routing")
    drawn = prompting.draw_shots(task, shots, 0)
    return [prompting.render(tokenizer, prompting.messages(task, e, drawn)) for e in task.test[:n]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_answers_at_batch_size_1_equal_those_at_batch_size_4(tiny_model_dir, dtype):
    model, tokenizer = varied_model(tiny_model_dir, dtype)
    prompts = few_shot_prompts(tokenizer)
    alone = heldout.generate_counted(model, tokenizer, prompts, 1, 8)
    batched = heldout.generate_counted(model, tokenizer, prompts, 4, 8)
    assert len(set(alone.answers)) > len(prompts) // 2  # varied answers: agreement is not trivial
    assert batched.answers == alone.answers
    assert batched.prompt_tokens == alone.prompt_tokens  # padding is not counted as read


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_shot_answers_with_the_prefix_cache_equal_those_without(tiny_model_dir, dtype):
    model, tokenizer = varied_model(tiny_model_dir, dtype)
    prompts = few_shot_prompts(tokenizer)
    shared = prefix_cache.shared_prefix_length(tokenizer(prompts)["input_ids"])
    assert shared >= prefix_cache.MIN_SHARED_TOKENS  # the shots are shared: the cached path is the one taken
    plain = heldout.generate_counted(model, tokenizer, prompts, 4, 8, reuse_prefix=False)
    cached = heldout.generate_counted(model, tokenizer, prompts, 4, 8, reuse_prefix=True)
    assert cached.answers == plain.answers
    assert (cached.prompt_tokens, cached.output_tokens) == (plain.prompt_tokens, plain.output_tokens)


def test_shared_prefix_leaves_every_prompt_a_token_to_encode():
    assert prefix_cache.shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert prefix_cache.shared_prefix_length([[1, 2, 3], [1, 5, 3]]) == 1
    assert prefix_cache.shared_prefix_length([[1, 2, 3]]) == 0  # one prompt alone: nothing to share
