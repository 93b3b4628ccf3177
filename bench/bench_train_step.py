"""One training step (forward, backward, AdamW) of the default model on this CPU: bf16 autocast vs fp32.

The demo's trained techniques spend most of their time here (16 steps of batch 8; train_seconds
110-156 s in reports/demo-example/results.csv), so the precision `train.precision: auto` picks matters.
A batch is 8 rendered ticket-routing training examples, padded to the longest (as TRL's collator pads);
fp32 (A) and bf16 autocast (B) alternate, A B A B ...; prints median seconds per step and B/A.

    python bench/bench_train_step.py                       # full and lora, 3 timed steps x 3 repeats
    python bench/bench_train_step.py --kinds lora --steps 2
Prints medians and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time


def batch(tokenizer, size: int):
    from harness import prompting
    from harness.tasks import load_task

    task = load_task("ticket-routing")
    texts = [
        prompting.render(tokenizer, prompting.messages(task, e)) + e.output + tokenizer.eos_token
        for e in task.train[:size]
    ]
    tokenizer.padding_side = "right"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {**encoded, "labels": encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)}


def model_for(kind: str, model_id: str):
    import torch
    from peft import get_peft_model

    from harness import models
    from harness.config import ModelSpec
    from harness.techniques.finetune import LoraSettings, lora_config

    model, tokenizer = models.load(ModelSpec(id=model_id), "cpu", torch.float32)  # weights train in fp32
    if kind == "lora":
        model = get_peft_model(model, lora_config(LoraSettings()))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    return model, tokenizer, optimizer


def step_seconds(model, optimizer, inputs, precision: str, steps: int) -> float:
    import torch

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    start = time.perf_counter()
    for _ in range(steps):
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--kinds", nargs="+", default=["full", "lora"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    for kind in args.kinds:
        model, tokenizer, optimizer = model_for(kind, args.model)
        inputs = batch(tokenizer, args.batch_size)
        step_seconds(model, optimizer, inputs, "bf16", 1)  # first steps pay set-up (optimizer state, kernels)
        step_seconds(model, optimizer, inputs, "fp32", 1)
        seconds = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for precision in seconds:
                seconds[precision].append(step_seconds(model, optimizer, inputs, precision, args.steps))
        fp32, bf16 = statistics.median(seconds["fp32"]), statistics.median(seconds["bf16"])
        print(
            f"{kind}: batch {tuple(inputs['input_ids'].shape)} seconds/step fp32 {fp32:.2f}, bf16 autocast {bf16:.2f} "
            f"(medians of {args.repeats}); bf16/fp32 {bf16 / fp32:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
