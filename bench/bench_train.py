"""Training benchmark: harness overhead vs a plain TRL script, memory of full/LoRA/QLoRA, bf16 vs fp32.

Each measurement runs in a fresh subprocess (so process-RSS peaks do not carry over) and the
A/B pairs alternate (A B A B ...) so drift on a shared machine hits both sides alike.

    python bench/bench_train.py                       # default model, CPU
    python bench/bench_train.py --model random:qwen2.5-0.5b --steps 20 --repeats 3   # e.g. on a GPU
Prints medians and ratios; nothing is asserted (goals live here, not in timed tests). bench/gpu/prove.py
runs the same children (run_child) on a GPU, on a long-text task that fills --max-length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", bias="none", task_type="CAUSAL_LM")


def settings(args, precision):
    from harness.config import TrainSettings

    return TrainSettings(
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        warmup_ratio=0.05,
        precision=precision,
        logging_steps=args.steps,
        max_length=args.max_length,
    )


def one_harness(args, kind: str, precision: str) -> dict:
    import torch

    from harness import models, train
    from harness.config import ModelSpec
    from harness.measure import device_name
    from harness.tasks import load_task
    from harness.techniques.finetune import LoraSettings, QuantSettings, bnb_config, lora_config, parameter_counts

    device = args.device
    task = load_task(args.task)
    quant = bnb_config(QuantSettings(), precision) if kind == "qlora" else None
    model, tokenizer = models.load(ModelSpec(id=args.model), device, torch.float32, quant)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_config = lora_config(LoraSettings()) if kind in ("lora", "qlora") else None
    trained, stats, method = train.train(
        model, tokenizer, task, settings(args, precision), kind, device=device, seed=0, peft_config=peft_config
    )
    trainable, total = parameter_counts(trained)
    return {
        "tokens_per_second": stats.tokens_per_second,
        "seconds": stats.seconds,
        "tokens": stats.tokens,
        "steps": stats.steps,
        "peak_bytes": stats.peak_bytes,
        "method": method,
        "trainable": trainable,
        "total": total,
        "device": device_name(device),
        "mfu": mfu(
            stats.tokens_per_second,
            total,
            device,
            kind,
            trained.config,
            stats.tokens / max(stats.steps, 1) / args.batch_size,
        ),
        **stats.gpu,  # on CUDA: train_reserved_peak_bytes, and with NVML train_device_peak_bytes, train_energy_wh
    }


def one_plain(args, precision: str) -> dict:
    """What a user would write by hand with TRL: same model files, data, LoRA and trainer settings."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from harness import models
    from harness.config import ModelSpec
    from harness.tasks import load_task

    task = load_task(args.task)
    # Loading is not timed; the same loader keeps both sides on identical weights and tokenizer.
    model, tokenizer = models.load(ModelSpec(id=args.model), args.device, torch.float32)
    system, template = task.spec.prompt.system, task.spec.prompt.template
    labels = ", ".join(task.labels or ())
    records = [
        {
            "prompt": [
                {"role": "system", "content": system},
                {"role": "user", "content": template.format(input=e.input, labels=labels)},
            ],
            "completion": [{"role": "assistant", "content": e.output}],
        }
        for e in task.train
    ]
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-4,
            warmup_steps=0.05,
            bf16=precision == "bf16",
            use_cpu=args.device == "cpu",
            logging_steps=args.steps,
            save_strategy="no",
            report_to=[],
            max_length=args.max_length,
            completion_only_loss=True,
            include_num_input_tokens_seen="non_padding",
            seed=0,
            data_seed=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=LoraConfig(**LORA),
        )
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    return {"tokens_per_second": tokens / seconds, "seconds": seconds, "tokens": tokens}


# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets; the first name found in
# torch.cuda.get_device_name wins, so the more specific names come first.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "GH200": 989e12,
    "H200": 989e12,
    "H100": 989e12,  # SXM ("NVIDIA H100 80GB HBM3")
    "A100": 312e12,
    "L40S": 362e12,
}


def peak_bf16_flops(device_name: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16_FLOPS.items() if name in device_name), None)


def training_flops_per_token(params: int, config, seq_len: float) -> float:
    """Full fine-tuning's model FLOPs per token: 6 x params (forward 2, backward 4) + attention's score and
    value products, 12 x layers x hidden x sequence length (PaLM's appendix B; causal masking not halved)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return 6 * params + 12 * text.num_hidden_layers * text.hidden_size * seq_len


def mfu(tokens_per_second, total: int, device: str, kind: str, config=None, seq_len: float = 0) -> float | None:
    """Model FLOPs utilisation of full fine-tuning on CUDA: training FLOPs per token x tokens/s over the GPU's
    dense bf16 peak (PEAK_BF16_FLOPS); None elsewhere or for a GPU not in the table."""
    if kind != "full" or not device.startswith("cuda") or not tokens_per_second:
        return None
    import torch

    peak = peak_bf16_flops(torch.cuda.get_device_name(device))
    per_token = training_flops_per_token(total, config, seq_len) if config is not None else 6 * total
    return per_token * tokens_per_second / peak if peak else None


def run_child(args, *job: str, timeout: float | None = None) -> dict:
    """One measurement in a fresh process (`job`: harness KIND PRECISION, or plain PRECISION); its result."""
    cmd = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--task",
        args.task,
        "--max-length",
        str(args.max_length),
        "--child",
        *job,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"{' '.join(job)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--task", default="ticket-routing", help="a bundled task's name or a task folder")
    parser.add_argument("--max-length", type=int, default=512, help="train.max_length")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        what = args.child
        result = one_plain(args, what[1]) if what[0] == "plain" else one_harness(args, what[1], what[2])
        print(json.dumps(result))
        return

    from harness import models, train
    from harness.config import TrainSettings

    fast = train.precision(TrainSettings(), args.device)
    print(f"model {args.model}, device {args.device}, {args.steps} steps x batch {args.batch_size}, precision {fast}")
    harness_runs, plain_runs = [], []
    for _ in range(args.repeats):  # A B A B
        harness_runs.append(run_child(args, "harness", "lora", fast))
        plain_runs.append(run_child(args, "plain", fast))
    h, p = median(harness_runs, "tokens_per_second"), median(plain_runs, "tokens_per_second")
    print(
        f"\nLoRA train tokens/s, median of {args.repeats}: harness {h:.1f}, plain TRL {p:.1f}; "
        f"harness/plain = {h / p:.3f} (goal >= 0.97)"
    )
    print("  harness runs:", [round(r["tokens_per_second"], 1) for r in harness_runs])
    print("  plain runs:  ", [round(r["tokens_per_second"], 1) for r in plain_runs])

    print(f"\nPeak memory while training ({harness_runs[0]['method']}):")
    memory = {"lora": harness_runs[0]}
    for kind in ("full", "qlora"):
        memory[kind] = run_child(args, "harness", kind, fast)
    for kind in ("full", "lora", "qlora"):
        r = memory[kind]
        mfu_text = f", MFU {r['mfu']:.1%}" if r.get("mfu") else ""
        print(
            f"  {kind:6s} {r['peak_bytes'] / 2**20:8.0f} MiB  {r['tokens_per_second']:8.1f} tok/s  "
            f"trainable {r['trainable'] / 1e6:.2f}M of {r['total'] / 1e6:.1f}M{mfu_text}"
        )
    print(
        f"  ratios: lora/full {memory['lora']['peak_bytes'] / memory['full']['peak_bytes']:.2f}, "
        f"qlora/full {memory['qlora']['peak_bytes'] / memory['full']['peak_bytes']:.2f}"
    )

    if fast != "fp32":
        fp32 = [run_child(args, "harness", "lora", "fp32") for _ in range(args.repeats)]
        f = median(fp32, "tokens_per_second")
        print(f"\nLoRA {fast} vs fp32 train tokens/s, median of {args.repeats}: {h:.1f} vs {f:.1f} = {h / f:.2f}x")
    print(f"\ndevice: {harness_runs[0]['device']}; CPU has native bf16: {models.cpu_has_bf16()}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
