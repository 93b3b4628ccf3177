"""Will it fit? Peak memory per device and time of a training cell, from the model's shape alone.

Pure arithmetic: config numbers in (`ModelShape`, counted by harness/planner.py from the model's config on
the meta device), a training setup in (`Setup`: what trains, batch, sequence length, precision, the
distributed strategy), estimates out (`Estimate`, `TechniquePlan`). No torch, no model, no files.

What a trained cell holds at its peak, per device, as this harness trains (harness/train.py, TRL):

- weights: loaded in fp32 (finetune.starting_model; mixed precision is autocast), except a 4-bit (NF4)
  base for QLoRA: 0.5 byte per quantized parameter plus its quantization constants (one fp32 absmax per
  64 weights, or with double quantization one byte per 64 and one fp32 per 256 blocks), the embeddings,
  norms and the output layer in fp32. DeepSpeed under bf16/fp16 keeps 16-bit weights and an fp32 master
  copy in the optimizer (accelerate's DeepSpeed integration).
- gradients: one per trainable parameter, in the weights' dtype.
- optimizer: AdamW's two fp32 moments per trainable parameter (+ the fp32 master under 16-bit weights);
  its step (torch's foreach implementation) makes one more fp32 temporary of the trainable size.
- activations: what autograd saves for backward, per token and decoder layer. The coefficients were
  measured with torch.autograd.graph.saved_tensors_hooks on HF Llama layers (SDPA attention, SwiGLU MLP;
  transformers 5, peft 0.21), varying h, I, heads and KV heads one at a time; they reproduce the
  measured bytes exactly on those models (bench/bench_memory_plan.py --saved prints the comparison):
      full, fp32:          32h + 16I + 8·kv·d + 4a + 8          16-bit autocast: 30h + 8I + 4·kv·d + 4a + 8
      frozen base, fp32:   24h + 16I + 8·kv·d + 4a + 8 + 4rm    16-bit:          24h + 8I + 4·kv·d + 4a + 8 + 2rm
      LoRA dropout > 0:    + 6 (fp32) / 4 (16-bit) bytes per input element of each adapted module
  (h hidden, I intermediate, a heads, kv KV heads, d head dim, r rank, m adapted modules per layer; the
  norms and the residual stream stay fp32 under autocast, which is why h barely shrinks). A QLoRA
  layer saves what a LoRA layer saves. A non-gated MLP saves half the I terms. Under 16-bit autocast the
  16-bit cast of every linear weight is kept for backward (2 bytes per linear parameter). Gradient
  checkpointing keeps each layer's input (h fp32 values per token) and one layer's activations.
  This is Korthikanti et al.'s per-layer sbh(34 + 5as/h) in spirit, for this implementation: SDPA keeps
  no s x s scores (its flash kernels save a logsumexp per head), which is why there is no 5as/h term.
- logits: TRL's fused LM head never holds the (b, s, vocab) logits: it projects tiles of at most 4096
  tokens x 32768 vocabulary entries. On a CPU (no Triton) each tile is processed with torch ops, whose
  temporaries (logits, scaled, exp, probabilities, gradient) peak at about 8 tile copies in fp32
  (measured: 8.25, bench/bench_memory_plan.py --logits); on CUDA the Triton kernel works in the tile (2 copies
  are counted). A trainable output layer also gets an fp32 gradient buffer of its size in that backward.

The peak is the larger of two moments: forward/backward (weights + optimizer states of earlier steps +
activations + logits, + gradients when they accumulate over micro-batches) and the optimizer step
(weights + gradients + states + the step's temporary). On the CPU the measured peak is the process's
RSS: the idle worker (Python, torch, transformers, peft, TRL imported; `CPU_PROCESS_BASELINE`) plus
the training, plus the allocator's slack (freed blocks glibc keeps mapped; `CPU_ALLOCATOR_SLACK`).
On CUDA the measured peak is torch's allocator peak (max_memory_allocated), which holds no baseline.

Strategies (train.distributed): DDP replicates everything and adds its gradient buckets (a gradient-
sized copy); ZeRO-2 shards gradients and optimizer states over the world size; ZeRO-3 and FSDP (full
shard) shard the weights too, and hold two decoder layers' full weights at a time (the one computing
and the one prefetched). Offload to the CPU moves the optimizer states (and, under ZeRO-3/FSDP, the
weights) to host memory. Activations are per micro-batch, so per device whatever the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

GiB = 2**30
MiB = 2**20

# RSS of an idle cell process: Python + torch + transformers + peft + TRL + datasets imported (what the local
# executor's fork server preloads, harness/worker.preload; a cell is forked from it), measured on this
# machine: 527 MiB. At training's start a cell holds ~35 MiB more (task, tokenizer, tokenized dataset, the
# Trainer): the tiny model's trained cells peaked at 565-597 MiB in all. 560 MiB is the baseline counted.
# (Since the fork server also preloads sklearn, which every cell imported anyway, an idle cell holds 569 MiB;
# what a cell holds at training's start is unchanged.)
CPU_PROCESS_BASELINE = 560 * MiB
# glibc keeps freed blocks of the training's churn mapped: the measured RSS peaks ran 10-25% above the live
# bytes (mallinfo2) at the same moment (SmolLM2-135M full, LoRA, QLoRA; 2 CPU cores).
CPU_ALLOCATOR_SLACK = 0.15
# What of a GPU's memory a cell may plan to use: the CUDA context, cuBLAS workspaces and the caching
# allocator's fragmentation take the rest (the allocator peak the harness measures excludes them).
CUDA_USABLE_FRACTION = 0.9

TOKEN_TILE = 4096  # TRL's fused LM head: tokens per tile (trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE)
VOCAB_TILE = 32768  # ... and vocabulary entries per tile (trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE)
LOGIT_TILE_COPIES = {"cpu": 8.0, "cuda": 2.0}

# Effective training throughput when no earlier run of the same model on the same device kind says
# better. CPU: the demo's SmolLM2-135M full fine-tuning, fp32, 2 cores: 113 tokens/s x 6 x 134.5M
# parameters = 0.09 TFLOP/s (reports/demo-example, 2026-12; LoRA's 115 tokens/s gives 0.07). CUDA: 100
# TFLOP/s, a third of an H100's bf16 dense peak: a stated guess, not a measurement, replaced by the first
# run's own figure.
DEFAULT_FLOPS_PER_SECOND = {"cpu": 0.09e12, "cuda": 100e12}

Strategy = Literal["single", "ddp", "zero2", "zero3", "fsdp"]
Trains = Literal["full", "adapter"]


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic reads of a model: its config's sizes and its parameters counted exactly."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    params: int  # every parameter (tied embeddings once)
    linear_params: int  # in the decoder's linear layers: what 4-bit quantizes and LoRA's all-linear adapts
    embedding_params: int  # the input embeddings, and an untied output layer
    gated_mlp: bool = True  # SwiGLU (gate, up, down) rather than up/down

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> float:
        """One decoder layer's linear weights (what FSDP/ZeRO-3 gather at a time)."""
        return self.linear_params / self.layers


@dataclass(frozen=True)
class Setup:
    """How a cell trains: what is trainable, the micro-batch, precision and strategy."""

    kind: str  # the technique kind (for the table)
    trains: Trains  # every weight, or adapters on a frozen base
    trainable: int  # trainable parameters
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = 8  # examples per device step
    seq_len: int = 512  # tokens of the longest padded sequence in a batch
    sequences_per_example: int = 1  # DPO: chosen and rejected
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    quantized: bool = False  # a 4-bit base (QLoRA, peft with quantize_4bit)
    double_quant: bool = True
    adapter_rank: int = 0  # LoRA's r (0: not LoRA-like; the rank term is left out)
    adapted_modules: int = 0  # adapted linear modules per decoder layer
    adapted_inputs: int = 0  # the summed input features of those modules (for LoRA dropout's copies)
    adapter_dropout: bool = False
    reference_copy: bool = False  # DPO training every weight keeps a frozen copy of the model
    strategy: Strategy = "single"
    world_size: int = 1
    offload: bool = False

    @property
    def tokens(self) -> int:
        """Tokens in one device's micro-batch (padded)."""
        return self.batch_size * self.seq_len * self.sequences_per_example

    @property
    def weights_16bit(self) -> bool:
        """DeepSpeed under mixed precision keeps 16-bit weights (fp32 master in the optimizer); elsewhere the
        harness trains fp32 weights under autocast."""
        return self.strategy in ("zero2", "zero3") and self.precision != "fp32"

    @property
    def describe_strategy(self) -> str:
        name = {"single": "single", "ddp": "ddp", "zero2": "zero-2", "zero3": "zero-3", "fsdp": "fsdp"}[self.strategy]
        return f"{name}{' +offload' if self.offload else ''} x{self.world_size}"


@dataclass(frozen=True)
class Estimate:
    """Bytes per device at the training peak, by what holds them."""

    weights: float
    grads: float
    optimizer: float
    activations: float  # saved activations, and under autocast the 16-bit weight casts kept for backward
    logits: float  # the LM head's tiles and their temporaries
    overhead: float  # CPU: the process baseline and allocator slack; CUDA: 0 (the measured peak has neither)
    total: float  # the peak: the larger of forward/backward and the optimizer step, + overhead
    host: float = 0.0  # offloaded to host memory, per process

    def as_row(self) -> dict[str, int]:
        return {"planned_peak_memory_bytes": int(round(self.total))}


def nf4_bytes_per_param(double_quant: bool) -> float:
    """4-bit weights and their quantization constants (blocks of 64; double quantization: 8-bit absmax
    with an fp32 constant per 256 blocks)."""
    return 0.5 + (1 / 64 + 4 / (64 * 256) if double_quant else 4 / 64)


def activation_bytes_per_token_layer(shape: ModelShape, setup: Setup) -> float:
    """What autograd saves for backward per token and decoder layer (see the module docstring)."""
    wide = setup.precision == "fp32"  # under autocast the matmul outputs are 16-bit
    h, i, kvd, a = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim, shape.heads
    mlp = (16 if wide else 8) * i * (1 if shape.gated_mlp else 0.5)
    attention = (8 if wide else 4) * kvd + 4 * a + 8
    if setup.trains == "full":
        return (32 if wide else 30) * h + mlp + attention
    per_layer = 24 * h + mlp + attention + (4 if wide else 2) * setup.adapter_rank * setup.adapted_modules
    if setup.adapter_dropout:
        per_layer += (6 if wide else 4) * setup.adapted_inputs
    return per_layer


def activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """Saved activations of one micro-batch, with the 16-bit weight casts autocast keeps for backward."""
    per_layer = activation_bytes_per_token_layer(shape, setup) * setup.tokens
    casts = 0.0  # a layer's linear weights (and adapters) cast to 16 bits, held for backward
    if setup.precision != "fp32" and not setup.weights_16bit and not setup.quantized:
        casts = 2 * (shape.layer_params + (setup.trainable / shape.layers if setup.trains == "adapter" else 0))
    if setup.gradient_checkpointing:  # each layer's input kept (fp32 residual), one layer recomputed at a time
        return shape.layers * setup.tokens * shape.hidden * 4 + per_layer + casts
    return shape.layers * (per_layer + casts)


def logits_bytes(shape: ModelShape, setup: Setup) -> float:
    tile = min(setup.tokens, TOKEN_TILE) * min(shape.vocab, VOCAB_TILE) * 4
    head_grad = shape.vocab * shape.hidden * 4 if setup.trains == "full" else 0.0  # the fp32 grad_weight buffer
    return LOGIT_TILE_COPIES[setup.device] * tile + head_grad


def weights_bytes(shape: ModelShape, setup: Setup) -> float:
    adapters = setup.trainable * 4 if setup.trains == "adapter" else 0.0
    if setup.quantized:
        rest = shape.params - shape.linear_params
        return shape.linear_params * nf4_bytes_per_param(setup.double_quant) + rest * 4 + adapters
    copies = 2 if setup.reference_copy else 1
    return shape.params * (2 if setup.weights_16bit else 4) * copies + adapters


def estimate(shape: ModelShape, setup: Setup) -> Estimate:
    """Peak bytes per device of one training process."""
    n = max(setup.world_size, 1)
    weights = weights_bytes(shape, setup)
    grads = float(setup.trainable * (2 if setup.weights_16bit else 4))
    optimizer = float(setup.trainable * (12 if setup.weights_16bit else 8))
    sharded = setup.strategy in ("zero2", "zero3", "fsdp")
    step_temp = setup.trainable * 4 / (n if sharded else 1)
    extra = 0.0  # strategy buffers
    host = 0.0
    if setup.strategy == "ddp" and n > 1:
        extra = grads  # the reducer's buckets hold a copy of the gradients
    if sharded:
        grads, optimizer = grads / n, optimizer / n
    if setup.strategy in ("zero3", "fsdp"):
        layer = shape.layer_params * (2 if setup.weights_16bit else 4)
        weights = weights / n + 2 * layer  # the shard, and two layers gathered (computing + prefetched)
    if setup.offload:
        host += optimizer + step_temp
        optimizer = step_temp = 0.0
        if setup.strategy in ("zero3", "fsdp"):
            shard = weights - 2 * shape.layer_params * (2 if setup.weights_16bit else 4)
            host += shard
            weights -= shard
    activations = activation_bytes(shape, setup)
    logits = logits_bytes(shape, setup)
    carried = grads if setup.gradient_accumulation > 1 else 0.0
    forward_backward = weights + optimizer + activations + logits + carried + extra
    step = weights + grads + optimizer + step_temp + extra
    peak = max(forward_backward, step)
    overhead = 0.0
    if setup.device == "cpu":
        overhead = CPU_PROCESS_BASELINE + CPU_ALLOCATOR_SLACK * peak
    return Estimate(weights, grads, optimizer, activations, logits, overhead, peak + overhead, host)


def fits(total: float, device_bytes: float | None, device: str) -> bool | None:
    """Whether `total` bytes fit a device of `device_bytes` (None: unknown)."""
    if device_bytes is None:
        return None
    usable = device_bytes * (CUDA_USABLE_FRACTION if device == "cuda" else 1.0)
    return total <= usable


# --- what would make it fit ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A change to a technique's settings, as the recipe would say it, and the setup it gives."""

    text: str
    setup: Setup


def changes(shape: ModelShape, setup: Setup, gpus: int, qlora_trainable: int | None) -> list[Change]:
    """Single changes, smallest first: settings only, then more devices of the kind at hand, then another technique."""
    out: list[Change] = []
    if not setup.gradient_checkpointing:
        out.append(Change("train.gradient_checkpointing: true", replace(setup, gradient_checkpointing=True)))
    batch = setup.batch_size
    while batch > 1:
        batch //= 2
        factor = setup.batch_size // batch
        out.append(
            Change(
                f"train.batch_size: {batch}, gradient_accumulation: {setup.gradient_accumulation * factor}",
                replace(setup, batch_size=batch, gradient_accumulation=setup.gradient_accumulation * factor),
            )
        )
    if setup.device == "cuda":
        # the fewest GPUs first (those at hand among them), ZeRO-2 before FSDP at each count
        counts = sorted({2, 4, 8, 16, 32, 64} | ({gpus} if gpus > 1 else set()))
        for count in counts:
            for strategy, label in (("zero2", "deepspeed, zero_stage: 2"), ("fsdp", "fsdp")):
                if count > setup.world_size or (count == setup.world_size and _stronger(strategy, setup.strategy)):
                    out.append(
                        Change(
                            f"train.distributed: {{strategy: {label}, processes: {count}}}",
                            replace(setup, strategy=strategy, world_size=count),  # type: ignore[arg-type]
                        )
                    )
        if setup.strategy in ("zero2", "zero3", "fsdp") and not setup.offload:
            out.append(Change("train.distributed.offload: cpu", replace(setup, offload=True)))
    if not setup.quantized and qlora_trainable is not None and setup.kind in ("full", "lora"):
        out.append(
            Change(
                "kind: qlora (4-bit base, LoRA adapters)",
                replace(
                    setup,
                    kind="qlora",
                    trains="adapter",
                    trainable=qlora_trainable,
                    quantized=True,
                    adapter_rank=setup.adapter_rank or 16,
                    adapted_modules=setup.adapted_modules or 7,
                    adapted_inputs=setup.adapted_inputs or 6 * shape.hidden + shape.intermediate,
                    adapter_dropout=True,
                    reference_copy=False,
                ),
            )
        )
    return out


def _stronger(strategy: str, than: str) -> bool:
    order = ["single", "ddp", "zero2", "zero3", "fsdp"]
    return order.index(strategy) > order.index(than) and not (strategy == "fsdp" and than == "zero3")


def suggest(
    shape: ModelShape,
    setup: Setup,
    device_bytes: float | None,
    gpus: int = 1,
    qlora_trainable: int | None = None,
) -> tuple[str, Estimate] | None:
    """The first single change (in `changes`' order) after which the cell fits; else the first pair of
    changes; None when nothing tried fits or the device's memory is unknown."""
    if device_bytes is None:
        return None
    candidates = changes(shape, setup, gpus, qlora_trainable)
    for change in candidates:
        found = estimate(shape, change.setup)
        if fits(found.total, device_bytes, setup.device):
            return change.text, found
    for first in candidates:
        for second in changes(shape, first.setup, gpus, qlora_trainable):
            if second.text.split(":")[0] == first.text.split(":")[0]:
                continue
            found = estimate(shape, second.setup)
            if fits(found.total, device_bytes, setup.device):
                return f"{first.text} and {second.text}", found
    return None


# --- time ----------------------------------------------------------------------------------------


def flops_per_token(shape: ModelShape, setup: Setup) -> float:
    """Training FLOPs per token: 6 x params when every weight trains (forward 2, backward 4); a frozen base
    needs its input gradients only: 4 x params + 6 x trainable. Gradient checkpointing runs the forward twice."""
    if setup.trains == "full":
        flops = 6.0 * shape.params
    else:
        flops = 4.0 * shape.params + 6.0 * setup.trainable
    if setup.reference_copy or (setup.sequences_per_example > 1 and setup.trains == "adapter"):
        flops += 2.0 * shape.params  # DPO's reference forward (the frozen copy, or the adapter-free model)
    if setup.gradient_checkpointing:
        flops += 2.0 * shape.params
    return flops


def train_seconds(shape: ModelShape, setup: Setup, tokens: float, flops_per_second: float) -> float:
    """Seconds to train on `tokens` (over every device of the world) at an effective FLOP rate per device."""
    return tokens * flops_per_token(shape, setup) / (flops_per_second * max(setup.world_size, 1))


def eval_seconds(shape: ModelShape, tokens: float, flops_per_second: float) -> float:
    """Seconds to process `tokens` of evaluation (prompts and generated answers): 2 x params per token."""
    return tokens * 2.0 * shape.params / flops_per_second


def estimate_for_row(
    shape: ModelShape,
    setup: Setup,
    train_tokens: float | None = None,
    flops_per_second: float | None = None,
) -> dict[str, float]:
    """The figures a trained row records beside its measurements: `planned_peak_memory_bytes` (this
    setup's peak per device, comparable with `train_peak_memory_bytes`) and, given the tokens the cell
    trains on, `planned_seconds` (comparable with `train_seconds`; at `flops_per_second`, else the
    device's default rate)."""
    row: dict[str, float] = dict(estimate(shape, setup).as_row())
    if train_tokens is not None:
        rate = flops_per_second or DEFAULT_FLOPS_PER_SECOND[setup.device]
        row["planned_seconds"] = train_seconds(shape, setup, train_tokens, rate)
    return row


# --- a recipe's plan -----------------------------------------------------------------------------


@dataclass
class TechniquePlan:
    """One trained technique's line of the plan."""

    technique: str
    setup: Setup
    estimate: Estimate
    device_bytes: float | None  # per device: a GPU's memory, or the host's available RAM
    fits: bool | None
    suggestion: str | None = None
    suggested: Estimate | None = None
    cells: int = 1  # test cells (seeds x train sizes) + search trials
    train_tokens: float | None = None  # per cell that trains on the whole split (tokens x epochs, all ranks)
    total_train_tokens: float | None = None  # over every cell
    seconds: float | None = None  # every cell: training and evaluation
    note: str = ""


@dataclass
class Plan:
    """A recipe's (or a model's) plan for one task: the model, the device, one line per trained technique."""

    model: str
    shape: ModelShape
    device: str  # cpu | cuda
    device_label: str  # e.g. "1 x 79.1 GiB (NVIDIA H100)", "8 x 80 GiB (--gpus)", "cpu: 18.2 GiB available"
    task: str | None = None
    techniques: list[TechniquePlan] = field(default_factory=list)
    untrained_cells: int = 0  # cells of the techniques that do not train (prompt, rag, ...)
    untrained_seconds: float | None = None
    flops_per_second: float = 0.0
    throughput_source: str = ""  # where the rate came from: an earlier run, or the default
    tokens_source: str = ""  # how tokens were counted: the model's tokenizer, or an estimate from characters
    notes: list[str] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return self.untrained_cells + sum(t.cells for t in self.techniques)

    @property
    def seconds(self) -> float | None:
        parts = [t.seconds for t in self.techniques] + [self.untrained_seconds]
        known = [p for p in parts if p is not None]
        return sum(known) if known else None


def parse_gpus(text: str) -> tuple[int, float]:
    """`8x80GB` -> (8, 80 GiB in bytes); `80GB` -> (1, ...). GB and GiB both read as GiB (a GPU's "80 GB"
    is what it reports in GiB, give or take the driver's reserve)."""
    import re

    match = re.fullmatch(r"\s*(?:(\d+)\s*[xX*]\s*)?(\d+(?:\.\d+)?)\s*(GB|GiB|G|gb|gib|g)?\s*", text)
    if not match:
        raise ValueError(f"--gpus takes COUNTxSIZE, e.g. 8x80GB or 1x24GB (got {text!r})")
    count = int(match.group(1) or 1)
    if count < 1:
        raise ValueError(f"--gpus: the count must be at least 1 (got {text!r})")
    return count, float(match.group(2)) * GiB
