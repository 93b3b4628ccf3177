"""Few-shot held-out generation with and without the shared-prefix cache (harness/evaluate/prefix_cache.py).

A (uncached): every prompt encoded whole; B (cached): the system message and shots encoded once and
their key/value cache copied into each batch. A and B alternate (A B A B ...) so the load of a shared
machine hits both alike; prints each side's median examples/s, the ratio B/A, and whether the answers
were identical.

    python bench/bench_prefix_cache.py                          # default model, 4 shots, 64 prompts, 3 repeats
    python bench/bench_prefix_cache.py --tasks ticket-routing --repeats 5
Prints medians and ratios; nothing is asserted (the answers' equality is tested in tests/test_heldout_generation.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

from heldout_prompts import add_heldout_arguments, heldout_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    add_heldout_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    args = parser.parse_args()

    import torch

    from harness import models
    from harness.config import ModelSpec
    from harness.evaluate import heldout

    torch.set_num_threads(2)
    model, tokenizer = models.load(ModelSpec(id=args.model, dtype=args.dtype), "cpu")
    for task_name in args.tasks:
        prompts = heldout_prompts(task_name, tokenizer, args.shots, args.limit)
        rates, answers = {False: [], True: []}, {}
        for _ in range(args.repeats):
            for reuse in (False, True):
                start = time.perf_counter()
                found = heldout.generate_counted(
                    model, tokenizer, prompts, args.batch_size, args.max_new_tokens, reuse_prefix=reuse
                )
                rates[reuse].append(len(prompts) / (time.perf_counter() - start))
                answers[reuse] = found.answers
        plain, cached = statistics.median(rates[False]), statistics.median(rates[True])
        same = sum(a == b for a, b in zip(answers[False], answers[True]))
        print(
            f"{task_name:18s} {model.dtype} shots={args.shots} n={len(prompts)} bs={args.batch_size}: "
            f"uncached {plain:.2f} ex/s, cached {cached:.2f} ex/s (medians of {args.repeats}), "
            f"ratio {cached / plain:.2f}x; identical answers {same}/{len(prompts)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
