"""A prompt prefix that every held-out prompt shares (the system message and the few-shot turns), encoded
once: its key/value cache is computed a single time and copied into each generation batch, so a batch
encodes only what differs, the questions.

A batch is laid out as [shared prefix][left padding][question]: the padding sits between prefix and
question, masked out by the attention mask. Positions come from the mask (generate numbers tokens by
the mask's running count), so every question's tokens keep the positions they have in the whole
prompt, and the model reads the same tokens at the same positions as without the cache.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

# Below this many shared tokens the copy of the cache costs about what re-encoding saves.
MIN_SHARED_TOKENS = 32


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens every list starts with, leaving at least one token of each to encode (generate needs input)."""
    if len(token_lists) < 2:
        return 0
    first, shortest = token_lists[0], min(len(t) for t in token_lists)
    n = 0
    while n < shortest - 1 and all(t[n] == first[n] for t in token_lists):
        n += 1
    return n


def encode_prefix(model, prefix: Sequence[int]):
    """The prefix's key/value cache (batch of one)."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([list(prefix)], device=model.device)
        return model(input_ids=ids, use_cache=True).past_key_values


def cache_for_batch(prefix_cache, batch_size: int):
    """A copy of the prefix cache for one batch (generate appends to the cache it is given)."""
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(batch_size)
    return cache


def batch_inputs(prefix: Sequence[int], suffixes: Sequence[Sequence[int]], pad_id: int, device):
    """input_ids and attention_mask for [prefix][left padding][suffix] rows."""
    import torch

    width = max(len(s) for s in suffixes)
    ids = [[*prefix, *[pad_id] * (width - len(s)), *s] for s in suffixes]
    mask = [[1] * len(prefix) + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }
