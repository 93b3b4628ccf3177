"""The memory plan (harness/analysis/memory_plan.py) against measurements: where its constants come from.

    python bench/bench_memory_plan.py --saved     # activation coefficients vs the bytes autograd saves
    python bench/bench_memory_plan.py --logits    # TRL's fused LM head: tile copies at the peak (CPU)
    python bench/bench_memory_plan.py --run smollm2-135m-instruct --steps 4 --batch-size 8
        # full, lora and qlora cells through `harness run` (fp32, CPU): the plan's estimate vs each row's
        # train_peak_memory_bytes and train_seconds

--saved builds HF Llama models of several shapes (2 and 4 layers; the difference is one layer's share),
wraps them as the plan's modes do, and records every tensor autograd saves (unique storages, parameters
excluded) through torch.autograd.graph.saved_tensors_hooks; 16-bit autocast is measured at two token
counts to separate the per-token bytes from the per-layer weight casts. --logits measures the live heap
(glibc mallinfo2, sampled every 5 ms) of a forward and backward through TRL's fused LM head at two batch
sizes of a model whose logits dominate (vocabulary 49152, hidden 64). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

SHAPES = [(128, 352, 4, 2), (256, 352, 4, 2), (128, 704, 4, 2), (128, 352, 4, 4), (128, 352, 8, 2)]


def llama(h: int, inter: int, heads: int, kv: int, layers: int, vocab: int, mode: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=h,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if mode != "full":
        dropout = 0.0 if mode == "lora-no-dropout" else 0.05
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model.train()


def saved_bytes(model, batch: int, seq: int, vocab: int, autocast: bool) -> int:
    import torch

    from harness.measure import saved_activation_bytes

    return saved_activation_bytes(model, torch.randint(0, vocab, (batch, seq)), autocast)


def saved(args) -> None:
    from harness.analysis import memory_plan as mp

    vocab = 256
    for precision in ("fp32", "bf16"):
        for mode in ("full", "lora", "lora-no-dropout"):
            for h, inter, heads, kv in SHAPES:

                def per_layer(batch, seq, h=h, inter=inter, heads=heads, kv=kv, mode=mode, precision=precision):
                    two, four = (
                        saved_bytes(llama(h, inter, heads, kv, n, vocab, mode), batch, seq, vocab, precision == "bf16")
                        for n in (2, 4)
                    )
                    return (four - two) / 2

                small, large = per_layer(2, 64), per_layer(4, 128)
                per_token = (large - small) / (512 - 128)  # the weight casts are per layer, not per token
                shape = mp.ModelShape("t", h, 2, heads, kv, inter, vocab, 0, 0, 0)
                setup = mp.Setup(
                    mode,
                    "full" if mode == "full" else "adapter",
                    0,
                    precision=precision,  # type: ignore[arg-type]
                    adapter_rank=16,
                    adapted_modules=7,
                    adapted_inputs=6 * h + inter,
                    adapter_dropout=mode == "lora",
                )
                formula = mp.activation_bytes_per_token_layer(shape, setup)
                where = f"{precision} {mode:16s} h={h} I={inter} a={heads} kv={kv}"
                print(
                    f"{where}: measured {per_token:8.0f} B/token/layer, formula {formula:8.0f} "
                    f"({formula / per_token:.3f}); per-layer casts {small - per_token * 128:.0f} B"
                )


def logits(args) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    class Mallinfo(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo

    def live() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    vocab, seq = 49152, 100
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer does
    peaks = {}
    for batch in (4, 8, 4, 8):
        ids = torch.randint(0, vocab, (batch, seq))
        libc.malloc_trim(0)
        start, peak, stop = live(), [0], threading.Event()

        def sample(peak=peak, stop=stop):
            while not stop.wait(0.005):
                peak[0] = max(peak[0], live())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        out = model(input_ids=ids, labels=ids, fused_lm_head=True)
        out.loss.backward()
        stop.set()
        thread.join()
        model.zero_grad(set_to_none=True)
        del out
        peaks[batch] = peak[0] - start
    tile = (8 - 4) * seq * min(vocab, 32768) * 4
    print(f"live heap over the step: batch 4 {peaks[4] / 2**20:.0f} MiB, batch 8 {peaks[8] / 2**20:.0f} MiB")
    print(f"fp32 tile copies per extra token at the peak: {(peaks[8] - peaks[4]) / tile:.2f}")


RECIPE = """
name: bench-plan
model: {model}
task: ticket-routing
device: cpu
output_dir: {out}
techniques:
  - {{name: full, kind: full, train: {{max_steps: {steps}, batch_size: {batch}, precision: fp32}}}}
  - {{name: lora, kind: lora, train: {{max_steps: {steps}, batch_size: {batch}, precision: fp32}}}}
  - {{name: qlora, kind: qlora, train: {{max_steps: {steps}, batch_size: {batch}, precision: fp32}}}}
eval:
  heldout: {{limit: 4, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 100, latency_samples: 0}}
"""


def run(args) -> None:
    from harness import planner
    from harness.config import load_recipe

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(
            RECIPE.format(model=args.run, out=Path(folder) / "out", steps=args.steps, batch=args.batch_size)
        )
        subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path)], check=True, stdout=subprocess.DEVNULL)
        (results,) = (Path(folder) / "out" / "bench-plan").glob("*/results.json")
        rows = {r["technique"]: r for r in json.loads(results.read_text())["rows"]}
        (plan,) = planner.plan_recipe(load_recipe(path))  # after the run: its throughput is the measured one
    for line in plan.techniques:
        row = rows[line.technique]
        measured, estimated = row["train_peak_memory_bytes"], line.estimate.total
        seconds, rate = row["train_seconds"], row["train_tokens_per_second"]
        print(
            f"{line.technique:6s} peak measured {measured / 2**30:.2f} GiB, planned {estimated / 2**30:.2f} GiB, "
            f"ratio {measured / estimated:.2f}; train {seconds:.1f}s at {rate:.0f} tokens/s "
            f"({line.setup.batch_size} x {line.setup.seq_len} tokens per step planned)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saved", action="store_true")
    parser.add_argument("--logits", action="store_true")
    parser.add_argument("--run", metavar="MODEL", help="a model spec: alias, directory, random:<arch>")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if args.saved:
        saved(args)
    if args.logits:
        logits(args)
    if args.run:
        run(args)
    if not (args.saved or args.logits or args.run):
        parser.print_help()


if __name__ == "__main__":
    main()
