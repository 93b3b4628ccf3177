"""Do greedy held-out answers depend on the batch? Batch size 1 vs the recipe's batch size, bf16 vs fp32.

The same rendered prompts (the harness's own) are answered by heldout.generate_counted:
  bs1        one prompt at a time: no padding, the reference
  sorted     batches of --batch-size in the harness's order (sorted by length: little padding)
  unsorted   batches in the task's order (a plain batched `model.generate` loop: more left padding)
  cached     as sorted, with the shared prefix (system message, shots) encoded once (prefix_cache)
and each pass's agreement with bs1 is printed, with its seconds.

    python bench/bench_batch_agreement.py                      # default model, 64 prompts per task, 4 shots
    python bench/bench_batch_agreement.py --limit 32 --shots 0 --dtypes float32
Prints agreement figures; nothing is asserted (the fast test is tests/test_heldout_generation.py).
"""

from __future__ import annotations

import argparse
import time

from heldout_prompts import add_heldout_arguments, heldout_prompts


def answers(model, tokenizer, prompts, batch_size, max_new_tokens, in_order=False, reuse_prefix=False):
    from harness.evaluate import heldout

    if not in_order:
        return heldout.generate_counted(
            model, tokenizer, prompts, batch_size, max_new_tokens, reuse_prefix=reuse_prefix
        )
    found = []  # one call per chunk of the task's order: the chunk is the batch
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        found += heldout.generate_counted(
            model, tokenizer, chunk, batch_size, max_new_tokens, reuse_prefix=False
        ).answers
    return found


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_heldout_arguments(parser)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    args = parser.parse_args()

    import torch

    from harness import models
    from harness.config import ModelSpec

    torch.set_num_threads(2)
    passes = {
        "bs1": dict(batch_size=1),
        "sorted": dict(batch_size=args.batch_size),
        "unsorted": dict(batch_size=args.batch_size, in_order=True),
        "cached": dict(batch_size=args.batch_size, reuse_prefix=True),
    }
    for dtype in args.dtypes:
        model, tokenizer = models.load(ModelSpec(id=args.model), "cpu", getattr(torch, dtype))
        for task_name in args.tasks:
            prompts = heldout_prompts(task_name, tokenizer, args.shots, args.limit)
            found, seconds = {}, {}
            for name, options in passes.items():
                start = time.perf_counter()
                found[name] = answers(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, **options)
                found[name] = getattr(found[name], "answers", found[name])
                seconds[name] = time.perf_counter() - start
            figures = "  ".join(
                f"{name} {agreement(found['bs1'], found[name]):.3f} ({seconds[name]:.0f} s)" for name in passes
            )
            print(
                f"{dtype:9s} {task_name:18s} shots={args.shots} n={len(prompts)}  agreement with bs1: {figures}",
                flush=True,
            )


if __name__ == "__main__":
    main()
