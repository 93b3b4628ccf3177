"""Held-out scoring under `eval.heldout.mode: loglikelihood`, before and after the prompt's cache is reused.

A (whole): every (prompt, label) pair encoded whole, `batch_size` pairs at a time
(preference.completion_logprobs, how loglikelihood_answers scored before); B (cached): the prompt encoded
once, its last position scoring every label's first token and its key/value cache copied under each batch
of labels (heldout.label_logprobs). A and B alternate (A B A B ...) so the load of a shared machine hits
both alike; prints each side's median examples/s, the ratio B/A, and the largest difference between the
two's log-likelihoods.

    python bench/bench_loglikelihood.py                       # default model, ticket-routing, 16 prompts
    python bench/bench_loglikelihood.py --labels 80 --limit 8 # a many-label task: 80 labels
Prints medians and ratios; nothing is asserted (the agreement is tested in tests/test_classify.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

from heldout_prompts import heldout_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="ticket-routing")
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--labels", type=int, default=0, help="how many labels: the task's, then made-up intents")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from harness import models
    from harness.config import ModelSpec
    from harness.evaluate.heldout import label_logprobs
    from harness.evaluate.preference import completion_logprobs
    from harness.tasks import load_task

    torch.set_num_threads(2)
    model, tokenizer = models.load(ModelSpec(id=args.model), "cpu")
    prompts = heldout_prompts(args.task, tokenizer, args.shots, args.limit)
    labels = list(load_task(args.task).labels or [])
    labels += [f"intent {i}: {word} request" for i, word in enumerate(["card", "transfer", "refund"] * 40)]
    labels = labels[: args.labels or len(load_task(args.task).labels or [])]

    def whole() -> list[float]:
        return [
            v
            for prompt in prompts
            for v in completion_logprobs(model, tokenizer, [prompt] * len(labels), labels, args.batch_size)
        ]

    def cached() -> list[float]:
        return [v for prompt in prompts for v in label_logprobs(model, tokenizer, prompt, labels, args.batch_size)]

    rates: dict[str, list[float]] = {"whole": [], "cached": []}
    values = {}
    for _ in range(args.repeats):
        for name, score in (("whole", whole), ("cached", cached)):
            start = time.perf_counter()
            values[name] = score()
            rates[name].append(len(prompts) / (time.perf_counter() - start))
    a, b = statistics.median(rates["whole"]), statistics.median(rates["cached"])
    gap = max(abs(x - y) for x, y in zip(values["whole"], values["cached"]))
    n = len(labels)

    def picks(scores: list[float]) -> list[int]:  # each prompt's likeliest label
        return [max(range(n), key=lambda j: scores[i * n + j]) for i in range(len(prompts))]

    same = sum(a == b for a, b in zip(picks(values["whole"]), picks(values["cached"])))
    print(
        f"{args.model} on {args.task}: {len(prompts)} prompts x {len(labels)} labels, batch {args.batch_size}, "
        f"{args.repeats} repeats (A/B interleaved, medians)\n"
        f"  whole  (prompt + label per label): {a:.3f} examples/s\n"
        f"  cached (prompt once, its cache):   {b:.3f} examples/s\n"
        f"  ratio cached/whole: {b / a:.1f}x; largest log-likelihood difference {gap:.2e} ({model.dtype}); "
        f"the same likeliest label for {same}/{len(prompts)} prompts"
    )


if __name__ == "__main__":
    main()
