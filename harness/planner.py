"""The memory and time plan's runtime side: read the model's config and the recipe, hand numbers to
analysis/memory_plan.py. (planning.py plans a run's cells; this plans what they will need.)

Nothing here loads weights: the model is built on the meta device from its config (models.load_config)
to count its parameters exactly, and LoRA's trainable parameters are counted from its linear layers as
peft adds them (r x (in + out) per adapted layer). The train split is tokenized with the model's
tokenizer when it is on this machine without converting anything, else its length is estimated from
characters. Importing this module imports no torch; its functions do.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from harness import kinds, planning
from harness.analysis import memory_plan as mp
from harness.config import DistributedSettings, Recipe, TrainSettings
from harness.tasks import TaskRef

CHARS_PER_TOKEN = 4.0  # English text in a BPE vocabulary, for a train split no local tokenizer can count
TEMPLATE_TOKENS = 6  # a chat template's role markers per message, in that estimate
TOKENIZED_EXAMPLES = 2000  # the most train examples tokenized for the statistics (the longest may be missed beyond)


@dataclass(frozen=True)
class Linear:
    name: str
    inputs: int
    outputs: int


@dataclass(frozen=True)
class Model:
    """A model as the plan sees it: its shape, and its decoder's linear layers (for adapters)."""

    id: str
    shape: mp.ModelShape
    linears: tuple[Linear, ...]
    modules: tuple[str, ...] = ()  # every named module: what LoRA's target_modules may name


@functools.lru_cache(maxsize=8)
def read_model(model_id: str) -> Model:
    """Count the model's parameters on the meta device (no memory, no weights)."""
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    from harness import models

    config = models.load_config(model_id)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output = model.get_output_embeddings()
    linears = tuple(
        Linear(name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output
    )
    params = sum(p.numel() for p in model.parameters())
    linear_params = sum(
        p.numel()
        for module in model.modules()
        if isinstance(module, nn.Linear) and module is not output
        for p in module.parameters(recurse=False)
    )
    embeddings = model.get_input_embeddings().weight.numel()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        embeddings += output.weight.numel()
    text = config.get_text_config()
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    heads = _first(text, "num_attention_heads", "n_head")
    shape = mp.ModelShape(
        name=model_id,
        hidden=hidden,
        layers=_first(text, "num_hidden_layers", "n_layer"),
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        intermediate=getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * hidden,
        vocab=text.vocab_size,
        params=params,
        linear_params=linear_params,
        embedding_params=embeddings,
        gated_mlp=any(name.endswith(("gate_proj", "gate_up_proj", "w1", "w3")) for name in (x.name for x in linears)),
    )
    return Model(model_id, shape, linears, tuple(name for name, _ in model.named_modules() if name))


def _first(config, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError(f"the model config has none of {', '.join(names)}")


# --- a technique's setup ---------------------------------------------------------------------------


def adapter_of(spec) -> str:
    """'full' when a trained technique trains every weight, else 'adapter'."""
    if spec.kind == "full":
        return "full"
    return "full" if getattr(spec, "adapter", "lora") == "full" else "adapter"


def lora_counts(model: Model, lora) -> tuple[int, int, int]:
    """(trainable parameters, adapted modules per layer, their summed input features per layer) of LoRA
    `lora` (LoraSettings) on `model`: r x (in + out) per adapted linear layer (+ out for DoRA's magnitudes),
    matched as peft matches target_modules (all-linear: every linear layer but the output layer)."""
    targets = lora.target_modules

    def adapted(name: str) -> bool:
        if targets == "all-linear":
            return True
        return any(name == t or name.endswith("." + t) for t in targets)

    chosen = [x for x in model.linears if adapted(x.name)]
    trainable = sum(lora.rank * (x.inputs + x.outputs) + (x.outputs if lora.use_dora else 0) for x in chosen)
    layers = model.shape.layers
    return trainable, round(len(chosen) / layers), round(sum(x.inputs for x in chosen) / layers)


def peft_counts(model: Model, spec) -> tuple[int, int, int, int, bool]:
    """(trainable, rank, adapted modules per layer, their inputs per layer, dropout) of a `kind: peft` method,
    by wrapping the meta model with peft (its own count); LoRA-like activations where the config has a rank."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from harness import models
    from harness.techniques.peft_method import peft_config

    config = peft_config(spec.method, spec.settings, spec.train)
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(models.load_config(model.id))
    wrapped = get_peft_model(base, config)
    trainable, _ = wrapped.get_nb_trainable_parameters()
    rank = int(getattr(config, "r", 0) or 0)
    wrapped_names = {
        name.removeprefix("base_model.model.") for name, m in wrapped.named_modules() if hasattr(m, "base_layer")
    }
    chosen = [x for x in model.linears if x.name in wrapped_names]
    layers = model.shape.layers
    dropout = float(getattr(config, "lora_dropout", 0) or 0) > 0
    return trainable, rank, round(len(chosen) / layers), round(sum(x.inputs for x in chosen) / layers), dropout


def strategy_of(distributed: DistributedSettings | None) -> tuple[mp.Strategy, int, bool]:
    """(strategy, world size, offload) of train.distributed; DeepSpeed without a zero_stage is stage 2
    (accelerate's default)."""
    if distributed is None:
        return "single", 1, False
    strategy: mp.Strategy
    if distributed.strategy == "deepspeed":
        strategy = "zero3" if distributed.zero_stage == 3 else "zero2"
    else:
        strategy = distributed.strategy
    return strategy, distributed.world_size, distributed.offload == "cpu"


def train_precision(settings: TrainSettings, device: str) -> str:
    """train.precision as a cell resolves it (harness/train.precision, not imported here: it loads TRL and
    the Trainer, seconds the plan does not need); planning for a GPU this machine lacks, bf16."""
    if settings.precision != "auto":
        return settings.precision
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "bf16"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    from harness import models

    return "bf16" if models.cpu_has_amx() else "fp32"


def setup_for(spec, model: Model, device: str, seq_len: int) -> mp.Setup:
    """The Setup of trained technique `spec` on `model`, at `seq_len` tokens per padded sequence."""
    settings: TrainSettings = spec.train
    trains = adapter_of(spec)
    strategy, world, offload = strategy_of(settings.distributed)
    quantized = spec.kind == "qlora" or bool(getattr(spec, "quantize_4bit", False))
    quantization = getattr(spec, "quantization", None)
    rank = modules = inputs = 0
    dropout = False
    if trains == "full":
        trainable = model.shape.params
    elif spec.kind == "peft":
        trainable, rank, modules, inputs, dropout = peft_counts(model, spec)
    else:
        from harness.techniques.finetune import LoraSettings

        lora = getattr(spec, "lora", None) or LoraSettings()
        trainable, modules, inputs = lora_counts(model, lora)
        rank, dropout = lora.rank, lora.dropout > 0
    return mp.Setup(
        kind=spec.kind,
        trains=trains,  # type: ignore[arg-type]
        trainable=trainable,
        device="cuda" if device == "cuda" else "cpu",
        batch_size=settings.batch_size,
        seq_len=seq_len,
        sequences_per_example=2 if spec.kind == "dpo" else 1,  # chosen and rejected, one forward each
        gradient_accumulation=settings.gradient_accumulation,
        gradient_checkpointing=settings.gradient_checkpointing,
        precision=train_precision(settings, device),  # type: ignore[arg-type]
        quantized=quantized,
        double_quant=quantization.double_quant if quantization is not None else True,
        adapter_rank=rank,
        adapted_modules=modules,
        adapted_inputs=inputs,
        adapter_dropout=dropout,
        reference_copy=spec.kind == "dpo" and trains == "full",
        strategy=strategy,
        world_size=world,
        offload=offload,
    )


# --- the train split's tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStats:
    mean: float  # tokens per train example (prompt + answer, as trained)
    longest: int
    prompt_mean: float  # tokens per prompt (as scored)
    source: str  # how they were counted


def token_stats(task, model_id: str, limit: int | None, completion: str = "output") -> TokenStats:
    """Tokens per train example (prompt + answer) and per prompt, with the model's tokenizer when at hand."""
    from harness import models, prompting

    examples = list(task.train[:limit] if limit else task.train)[:TOKENIZED_EXAMPLES]
    if not examples:
        return TokenStats(0.0, 0, 0.0, "no train examples")
    tokenizer = models.tokenizer_at_hand(model_id)

    def answer(e) -> str:
        if completion == "preference":
            return max(e.chosen or "", e.rejected or "", key=len)
        return e.output

    prompts = [prompting.messages(task, e) for e in examples]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):

        def count(messages, **kwargs) -> int:
            return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])

        full = [count(p + [{"role": "assistant", "content": answer(e)}]) for p, e in zip(prompts, examples)]
        prompt = [count(p, add_generation_prompt=True) for p in prompts]
        source = f"{len(examples)} train examples tokenized with the model's tokenizer"
    else:

        def estimate(messages) -> int:
            return round(sum(len(m["content"]) / CHARS_PER_TOKEN + TEMPLATE_TOKENS for m in messages))

        full = [estimate(p + [{"role": "assistant", "content": answer(e)}]) for p, e in zip(prompts, examples)]
        prompt = [estimate(p) for p in prompts]
        source = f"estimated at {CHARS_PER_TOKEN:g} characters per token (the model's tokenizer is not on this machine)"
    return TokenStats(statistics.fmean(full), max(full), statistics.fmean(prompt), source)


def sequence_length(spec, stats: TokenStats | None) -> int:
    """The padded length of the longest batch: the longest example, cut at train.max_length."""
    settings = spec.train
    if spec.kind == "cpt":
        return spec.corpus.chunk_tokens
    if stats is None:
        return settings.max_length
    longest = stats.longest
    if getattr(spec, "retrieval", None) is not None:
        longest += spec.retrieval.context_tokens  # passages in the prompt, at most its budget
    if spec.kind == "grpo":
        longest = round(stats.prompt_mean) + spec.grpo.max_completion_tokens
    return max(1, min(settings.max_length, longest))


# --- device and throughput -----------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    kind: str  # cpu | cuda
    bytes: float | None  # per device (a GPU, or the host's available RAM)
    count: int  # GPUs at hand (1 on the CPU)
    label: str
    name: str | None = None  # the GPU's name, to match earlier runs' throughput


def device_for(recipe_device: str, gpus: str | None) -> Device:
    """The device a cell will get: --gpus COUNTxSIZE, else this machine's GPU (device cuda, or auto with
    CUDA available), else the host's available RAM."""
    import psutil

    if gpus:
        count, size = mp.parse_gpus(gpus)
        return Device("cuda", size, count, f"{count} x {size / mp.GiB:.0f} GiB (--gpus)")
    if recipe_device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            count = torch.cuda.device_count()
            return Device(
                "cuda",
                props.total_memory,
                count,
                f"{count} x {props.total_memory / mp.GiB:.1f} GiB ({props.name})",
                props.name,
            )
        if recipe_device == "cuda":
            return Device("cuda", None, 1, "cuda (no GPU on this machine: give --gpus COUNTxSIZE)")
    available = psutil.virtual_memory().available
    return Device("cpu", available, 1, f"cpu: {available / mp.GiB:.1f} GiB available")


def earlier_rows(recipe: Recipe, model: Model, device: Device) -> tuple[list[dict], Path]:
    """The finished cell rows of earlier runs of the same model on the same device kind (results.json
    under the recipe's output_dir, the newest 200 runs), and that folder."""
    folder = Path(recipe.executor.storage or recipe.output_dir)
    paths = (
        sorted(folder.glob("*/*/results.json")) + sorted(folder.glob("*/*/*/results.json")) if folder.is_dir() else []
    )
    rows: list[dict] = []
    for path in paths[-200:]:
        try:
            data = json.loads(path.read_text())
            meta = data["meta"]
        except (OSError, ValueError, KeyError):
            continue
        if (
            meta.get("recipe", {}).get("model", {}).get("id") != model.id
            or meta.get("device", "").split(":")[0] != device.kind
        ):
            continue
        if device.name is not None and meta.get("device_name") not in (None, device.name):
            continue
        rows += [row for row in data.get("cells") or data.get("rows") or [] if row.get("status") == "ok"]
    return rows, folder


def measured_eval_rate(rows: list[dict], shape: mp.ModelShape) -> float | None:
    """Effective evaluation FLOP/s (2 x params per prompt or generated token) of earlier rows that
    measured their held-out phase: evaluation runs at its own rate (no backward; bf16 generation where
    the CPU has it), not at training's."""
    rates = []
    for row in rows:
        prompt, output, n, seconds = (
            row.get(k) for k in ("prompt_tokens_mean", "output_tokens_mean", "n_eval", "eval_seconds")
        )
        if prompt and output is not None and n and seconds:
            rates.append(2.0 * shape.params * n * (prompt + output) / seconds)
    return statistics.median(rates) if rates else None


def measured_rates(rows: list[dict], folder: Path, model: Model, device: Device) -> tuple[dict[str, float], float, str]:
    """Effective training FLOP/s per device from earlier runs' `train_tokens_per_second` (`rows`, from
    `earlier_rows`: the same model on the same device kind under `folder`): the median per kind (a QLoRA step
    does more than its FLOPs: dequantization), the median of all as the rate of kinds not measured, and where
    it came from; without such runs, the device's default rate."""
    by_kind: dict[str, list[float]] = {}
    for row in rows:
        tps, trainable = row.get("train_tokens_per_second"), row.get("trainable_params")
        if not tps or not trainable:
            continue
        trains = "full" if trainable >= model.shape.params else "adapter"
        setup = mp.Setup(kind=row.get("kind", ""), trains=trains, trainable=int(trainable))  # type: ignore[arg-type]
        by_kind.setdefault(setup.kind, []).append(tps * mp.flops_per_token(model.shape, setup))
    found = [rate for rates in by_kind.values() for rate in rates]
    if found:
        rates = {kind: statistics.median(r) for kind, r in by_kind.items()}
        return rates, statistics.median(found), f"measured: {len(found)} trained cells of earlier runs under {folder}"
    rate = mp.DEFAULT_FLOPS_PER_SECOND[device.kind]
    return (
        {},
        rate,
        f"default {rate / 1e12:g} TFLOP/s per device ({device.kind}; no earlier run of this model under {folder})",
    )


# --- the plan --------------------------------------------------------------------------------------


def technique_line(spec, model: Model, device: Device, seq_len: int) -> mp.TechniquePlan:
    """Memory for one trained technique: the estimate, whether it fits, and the smallest change that would."""
    setup = setup_for(spec, model, device.kind, seq_len)
    found = mp.estimate(model.shape, setup)
    per_device = device.bytes
    nodes = spec.train.distributed.nodes if spec.train.distributed else 1
    per_node = setup.world_size // nodes  # the ranks on each machine
    if device.kind == "cpu" and per_device is not None and per_node > 1:
        per_device = per_device / per_node  # the ranks of a node share its RAM
    fit = mp.fits(found.total, per_device, device.kind)
    line = mp.TechniquePlan(spec.name, setup, found, per_device, fit)
    if device.kind == "cuda" and per_node > device.count:  # the devices at hand are one machine's
        line.note = f"needs {per_node} GPUs per node; {device.count} at hand"
    if fit is False:
        from harness.techniques.finetune import LoraSettings

        qlora = lora_counts(model, getattr(spec, "lora", None) or LoraSettings())[0]
        suggestion = mp.suggest(model.shape, setup, per_device, device.count, qlora)
        if suggestion is not None:
            line.suggestion, line.suggested = suggestion
        else:
            line.suggestion = "nothing tried fits: a smaller model, or more memory"
    return line


def examples_per_cell(settings: TrainSettings, n_train: int, train_size: int | None) -> float:
    """Train examples a cell goes through: max_steps x batch x accumulation x ranks, else epochs x examples."""
    if settings.max_steps:
        world = settings.distributed.world_size if settings.distributed else 1
        return settings.max_steps * settings.batch_size * settings.gradient_accumulation * world
    n = min(x for x in (n_train, settings.limit, train_size) if x)
    return settings.epochs * n


def tokens_per_cell(spec, task, stats: TokenStats, train_size: int | None) -> float:
    """Tokens a cell trains on (non-padding, every epoch, every rank): examples x their mean tokens; DPO
    reads each prompt twice (chosen, rejected); CPT's document phase reads corpus blocks, then its `then`."""
    if spec.kind == "cpt":
        block, settings = spec.corpus.chunk_tokens, spec.train
        if settings.max_steps:
            tokens = examples_per_cell(settings, 1, None) * block
        else:
            chars = sum(len(text) for _, text in _corpus(task))
            tokens = settings.epochs * chars / CHARS_PER_TOKEN
        if spec.then is not None:
            then = spec.then.train.model_copy(update={"limit": spec.train.limit})  # train.limit caps `then`
            tokens += examples_per_cell(then, len(task.train), train_size) * stats.mean
        return tokens
    sequences = 2 if spec.kind == "dpo" else 1
    return examples_per_cell(spec.train, len(task.train), train_size) * stats.mean * sequences


def _corpus(task) -> list[tuple[str, str]]:
    from harness import retrieval

    return retrieval.load_corpus(task.corpus_path) if task.corpus_path is not None else []


def chosen_stand_in(spec) -> dict:
    """Values a search might choose (each axis's first value, a range's low end), for counting the test
    cells: a chosen `shots: 2` makes a prompt technique seed-sensitive, so it runs once per seed."""
    values = {}
    for key, axis in spec.search.space.items():
        if isinstance(axis, list):
            values[key] = axis[0]
        else:
            values[key] = next(bound[0] for bound in (axis.log_uniform, axis.uniform, axis.int) if bound is not None)
    return values


def plan_task(recipe: Recipe, task_ref: TaskRef, device: Device, model: Model) -> mp.Plan:
    """The plan of one task of the recipe: memory per trained technique, cells and time for all."""
    from harness.tasks import load_task, with_validation

    recipe = recipe.for_task(task_ref)
    task = with_validation(load_task(task_ref), recipe.eval.validation)
    earlier, folder = earlier_rows(recipe, model, device)  # read once: training's and evaluation's rates
    rates, rate, rate_source = measured_rates(earlier, folder, model, device)
    eval_rate = measured_eval_rate(earlier, model.shape)
    if eval_rate is not None:
        rate_source += f"; evaluation at the {eval_rate / 1e12:.2g} TFLOP/s its held-out phases measured"
    eval_rate = eval_rate or rate
    plan = mp.Plan(
        model.id,
        model.shape,
        device.kind,
        device.label,
        task.name,
        flops_per_second=rate,
        throughput_source=rate_source,
    )
    heldout = len(task.test) if recipe.eval.heldout.limit is None else min(recipe.eval.heldout.limit, len(task.test))
    answer = recipe.eval.heldout.max_new_tokens
    stats_cache: dict[tuple, TokenStats] = {}
    for spec in recipe.techniques:
        reason = kinds.inapplicable(spec, task, recipe)
        if reason is not None:  # its cells are skipped rows, at once: nothing to fit or time
            plan.untrained_cells += len(planning.test_cells(recipe, spec, {}))
            plan.notes.append(f"{spec.name}: skipped on this task: {reason}")
            continue
        trained = kinds.trained(spec.kind)
        searched = spec.search is not None
        trials = (spec.search.trials or recipe.search_budget or 0) if searched else 0  # as pipeline.run_task searches
        tests = planning.test_cells(recipe, spec, chosen_stand_in(spec) if searched else {})
        key = (
            getattr(spec.train, "limit", None) if trained else None,
            "preference" if spec.kind == "dpo" else "output",
        )
        if key not in stats_cache:
            stats_cache[key] = token_stats(task, model.id, key[0], key[1])
        stats = stats_cache[key]
        plan.tokens_source = stats.source
        prompt_tokens = stats.prompt_mean + (getattr(spec, "shots", 0) or 0) * stats.mean
        if getattr(spec, "retrieval", None) is not None:
            prompt_tokens += spec.retrieval.context_tokens
        eval_tokens = heldout * (prompt_tokens + answer)
        validation_tokens = len(task.validation) * (prompt_tokens + answer)
        if not trained:
            plan.untrained_cells += len(tests) + trials
            seconds = len(tests) * mp.eval_seconds(model.shape, eval_tokens, eval_rate)
            seconds += trials * mp.eval_seconds(model.shape, validation_tokens, eval_rate)
            plan.untrained_seconds = (plan.untrained_seconds or 0.0) + seconds
            continue
        line = technique_line(spec, model, device, sequence_length(spec, stats))
        per_cell = [tokens_per_cell(spec, task, stats, cell.train_size) for cell in tests]
        per_cell += [tokens_per_cell(spec, task, stats, None)] * trials
        line.cells = len(tests) + trials
        line.train_tokens = tokens_per_cell(spec, task, stats, None)
        line.total_train_tokens = sum(per_cell)
        train_rate = rates.get(spec.kind, rate)
        seconds = sum(mp.train_seconds(model.shape, line.setup, tokens, train_rate) for tokens in per_cell)
        seconds += len(tests) * mp.eval_seconds(model.shape, eval_tokens, eval_rate)
        objective = spec.search.objective if spec.search is not None else None
        scored = validation_tokens if objective != "validation_loss" else len(task.validation) * stats.mean
        seconds += trials * mp.eval_seconds(model.shape, scored, eval_rate)
        line.seconds = seconds
        if spec.kind == "grpo":
            line.note = (line.note + "; " if line.note else "") + "time: its generation is not counted"
        plan.techniques.append(line)
    return plan


def plan_recipe(recipe: Recipe, gpus: str | None = None, device: str | None = None) -> list[mp.Plan]:
    """One plan per task of the recipe, for --gpus, else `device` (the executor's: cpu or cuda), else the
    recipe's device on this machine."""
    model = read_model(recipe.model.id)
    where = device_for(device or recipe.device, gpus)
    return [plan_task(recipe, task, where, model) for task in recipe.tasks]


def plan_model(model_id: str, specs: list, gpus: str | None = None, device_kind: str = "auto") -> mp.Plan:
    """A plan for a model without a recipe or task: every sequence as long as train.max_length."""
    model = read_model(model_id)
    device = device_for(device_kind, gpus)
    plan = mp.Plan(model.id, model.shape, device.kind, device.label)
    for spec in specs:
        plan.techniques.append(technique_line(spec, model, device, sequence_length(spec, None)))
    plan.notes.append("no task: every sequence counted at train.max_length tokens (a recipe counts its train split)")
    return plan


def estimate_row(recipe: Recipe, spec, device: str, task=None, flops_per_second: float | None = None) -> dict:
    """The plan's figures for a trained cell of `spec` (the spec as the cell runs it: its params and
    train.limit applied), to record beside its measurements: `planned_peak_memory_bytes`, and with the
    cell's `task` (its train split sets the sequence length and the tokens) `planned_seconds` at
    `flops_per_second` (else the device's default rate). Reads the model's config; loads no weights.
    Without `task`, every sequence counts train.max_length tokens and no time is given."""
    model = read_model(recipe.model.id)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if task is None:
        return mp.estimate_for_row(model.shape, setup_for(spec, model, kind, sequence_length(spec, None)))
    stats = token_stats(task, model.id, spec.train.limit, "preference" if spec.kind == "dpo" else "output")
    setup = setup_for(spec, model, kind, sequence_length(spec, stats))
    return mp.estimate_for_row(model.shape, setup, tokens_per_cell(spec, task, stats, None), flops_per_second)


def with_distributed(spec, **changes):
    """spec with train.distributed changed (the CLI's --strategy, --processes, ...)."""
    current = spec.train.distributed.model_dump() if spec.train.distributed else {}
    distributed = DistributedSettings.model_validate({**current, **changes})
    return spec.model_copy(update={"train": spec.train.model_copy(update={"distributed": distributed})})
