"""Held-out generation speed of a LoRA model with its adapters unmerged vs merged into the base weights
(eval.heldout.merge_adapters; harness/techniques/finetune.py scored_model), and of the merged model vs a
fully fine-tuned one of the same architecture.

The default model gets rank-16 all-linear adapters (the lora kind's defaults) with random, nonzero
weights (a trained adapter costs the same), in the dtype it is scored in; the merged copy is made by
peft's merge_and_unload. "full" is the base model with every weight perturbed and trainable, as full
fine-tuning leaves it. The three alternate (unmerged, merged, full, unmerged, ...); prints median
examples/s, the ratios and the answers' agreement.

    python bench/bench_merged_lora.py                   # ticket-routing, zero-shot, 64 prompts, 3 repeats
Exits 1 when merged runs below 0.85x of full: a merged model is a plain model of the same size (it ran at
0.5-0.7x until the output layer got a contiguous input, models.contiguous_head_input). The answers'
equality is tested in tests/test_merged_scoring.py.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

from heldout_prompts import heldout_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="ticket-routing")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from peft import get_peft_model

    from harness import models
    from harness.config import ModelSpec
    from harness.evaluate import heldout
    from harness.techniques.finetune import LoraSettings, lora_config

    torch.set_num_threads(2)
    spec = ModelSpec(id=args.model)
    base, tokenizer = models.load(spec, "cpu", torch.float32)
    config = lora_config(LoraSettings())
    config.init_lora_weights = False  # nonzero B: the adapters change the answers, as trained ones do
    torch.manual_seed(0)
    full = copy.deepcopy(base).to(models.resolve_dtype(spec, "cpu")).eval()
    with torch.no_grad():
        for parameter in full.parameters():
            parameter.add_(torch.randn_like(parameter) * 1e-3)
    full.requires_grad_(True)
    unmerged = get_peft_model(base, config).to(models.resolve_dtype(spec, "cpu")).eval()
    merged = copy.deepcopy(unmerged).merge_and_unload(safe_merge=True)
    prompts = heldout_prompts(args.task, tokenizer, 0, args.limit)
    rates, answers = {"unmerged": [], "merged": [], "full": []}, {}
    for _ in range(args.repeats):
        for name, model in (("unmerged", unmerged), ("merged", merged), ("full", full)):
            start = time.perf_counter()
            answers[name] = heldout.generate_counted(
                model, tokenizer, prompts, args.batch_size, args.max_new_tokens
            ).answers
            rates[name].append(len(prompts) / (time.perf_counter() - start))
    a, b, c = (statistics.median(rates[name]) for name in ("unmerged", "merged", "full"))
    same = sum(x == y for x, y in zip(answers["unmerged"], answers["merged"]))
    print(
        f"{args.task} {merged.dtype} n={len(prompts)} bs={args.batch_size}: unmerged {a:.2f} ex/s, merged {b:.2f} "
        f"ex/s, full {c:.2f} ex/s (medians of {args.repeats}); merged/unmerged {b / a:.2f}x, merged/full "
        f"{b / c:.2f}x; identical answers (unmerged, merged) {same}/{len(prompts)}"
    )
    if b / c < 0.85:
        raise SystemExit(f"merged LoRA runs at {b / c:.2f}x of full fine-tuning's speed: expected about 1x")


if __name__ == "__main__":
    main()
