"""`harness export RUN --technique NAME --to adapter|merged|gguf OUT`: a technique as a deployable artifact.

- adapter: what the technique adds to its base model. A peft-trained technique's adapter folder as the
  run saved it (adapter_config.json names the base model: `AutoPeftModelForCausalLM.from_pretrained(OUT)`
  or `PeftModel.from_pretrained(base, OUT)`); a prompt or RAG technique's system message, shots and
  retrieval settings with its corpus chunks (the base model is unchanged).
- merged: a standalone model folder in the HF layout (weights, tokenizer with its chat template,
  generation_config.json with the run's greedy decoding and answer length), loadable with
  `AutoModelForCausalLM.from_pretrained(OUT)`: LoRA merged into the base as the run scored it, a full
  checkpoint as saved, the base model itself for prompt and RAG techniques (plus what they add).
- gguf: llama.cpp's convert_hf_to_gguf run on the merged folder, where it can be imported. No registry
  package ships that converter (the `gguf` package has the file format, not the HF-to-GGUF conversion),
  so without a llama.cpp checkout on PYTHONPATH the export says so.

Every export writes harness-deploy.json: the technique, the run, the base model, the conversation the
technique adds (system message, shots), retrieval settings and the generation settings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import kinds, prompting
from harness.deploy import loader
from harness.yamlconfig import ConfigError

FORMATS = ("adapter", "merged", "gguf")
MANIFEST = "harness-deploy.json"
CHUNKS = "chunks.jsonl"
GGUF_CONVERTER = "convert_hf_to_gguf"  # llama.cpp's converter module (its repository's top folder)
GGUF_TYPE = "q8_0"


@dataclass(frozen=True)
class Exported:
    folder: Path
    format: str
    files: list[str]


def export(run_dir: str | Path, technique: str, to: str, out: str | Path, device: str | None = None) -> Exported:
    """Write the technique's `to` artifact into `out` (which must not hold files already)."""
    if to not in FORMATS:
        raise ConfigError(f"--to {to!r}: one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; export into a new folder")
    store = loader.open_run(run_dir)
    spec, ctx = loader.context(store, technique, device)
    refusal = cannot_export(spec, ctx, technique, to)
    if refusal:
        raise ConfigError(refusal)
    out.mkdir(parents=True, exist_ok=True)
    if to == "adapter":
        write_adapter(spec, ctx, technique, out)
    elif to == "merged":
        write_merged(loader.load(run_dir, technique, device), out)
    else:
        write_gguf(loader.load(run_dir, technique, device), out)
    write_manifest(spec, ctx, store, technique, to, out)
    return Exported(out, to, sorted(p.name for p in out.iterdir()))


def cannot_export(spec, ctx, technique: str, to: str) -> str | None:
    """Why the technique cannot be exported `to` that format; None when it can."""
    if to == "gguf" and not gguf_converter_available():
        return (
            "--to gguf needs llama.cpp's HF-to-GGUF converter (convert_hf_to_gguf.py), which no registry package "
            "ships (pip's `gguf` has the file format only): clone https://github.com/ggml-org/llama.cpp, put it on "
            f"PYTHONPATH and export again, or export --to merged and run `python convert_hf_to_gguf.py OUT "
            f"--outtype {GGUF_TYPE}` yourself"
        )
    if not kinds.trained(spec.kind):
        return None
    folder = loader.trained_artifact(ctx, technique)
    if to == "adapter" and not loader.is_adapter(folder):
        return f"technique {technique!r} ({spec.kind}) trained every weight: it has no adapter; export --to merged"
    if to in ("merged", "gguf") and loader.is_adapter(folder):
        if loader.quantization(spec, ctx) is not None:
            return (
                f"technique {technique!r} trained on a 4-bit base: merging would dequantize and re-quantize every "
                "weight, so the merged model would not be the one scored; export --to adapter and load it on the "
                "4-bit base"
            )
        peft_type = json.loads((folder / "adapter_config.json").read_text()).get("peft_type")
        if peft_type != "LORA":
            return (
                f"technique {technique!r} trained a {peft_type} adapter, which the harness does not merge into the "
                "base weights (it scored it unmerged); export --to adapter"
            )
    return None


def gguf_converter_available() -> bool:
    from importlib.util import find_spec

    return find_spec(GGUF_CONVERTER) is not None


def write_adapter(spec, ctx, technique: str, out: Path) -> None:
    """A trained adapter's folder as saved by the run; a prompt or RAG technique's additions (the manifest)."""
    if kinds.trained(spec.kind):
        shutil.copytree(loader.trained_artifact(ctx, technique), out, dirs_exist_ok=True)
    retrieval = getattr(spec, "retrieval", None)
    if retrieval is not None:  # the index's passages; the retriever is rebuilt from them (bm25) or re-embeds them
        chunks = ctx.index(retrieval).chunks
        (out / CHUNKS).write_text("".join(json.dumps({"doc_id": c.doc_id, "text": c.text}) + "\n" for c in chunks))


def write_merged(served: loader.Served, out: Path) -> None:
    """A standalone HF model folder: weights (LoRA merged), tokenizer and chat template, generation config."""
    from peft import PeftModel

    model = served.model
    if isinstance(model, PeftModel):  # the run scored it unmerged (merge_adapters: false); merged here
        model = model.merge_and_unload(safe_merge=True)
    model.generation_config = generation_config(served)
    model.save_pretrained(out)
    served.tokenizer.save_pretrained(out)
    if getattr(served.spec, "retrieval", None) is not None:  # the passages it retrieves from
        write_adapter(served.spec, served.ctx, served.name, out)


def generation_config(served: loader.Served):
    """Greedy decoding of the run's answer length, stopping where the run stopped."""
    from transformers import GenerationConfig

    tokenizer, model = served.tokenizer, served.model
    stops = {tokenizer.eos_token_id, *_as_list(getattr(model.generation_config, "eos_token_id", None))} - {None}
    return GenerationConfig(
        do_sample=False,
        max_new_tokens=served.settings.max_new_tokens,
        eos_token_id=sorted(stops),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        bos_token_id=getattr(model.config, "bos_token_id", None),
    )


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def write_gguf(served: loader.Served, out: Path) -> None:
    """The merged model converted by llama.cpp's converter (only where it can be imported)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as merged:
        write_merged(served, Path(merged))
        target = out / f"model-{GGUF_TYPE}.gguf"
        command = [sys.executable, "-m", GGUF_CONVERTER, merged, "--outfile", str(target), "--outtype", GGUF_TYPE]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"llama.cpp's converter failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        served.tokenizer.save_pretrained(out)  # the chat template, for a server that reads it beside the file


def write_manifest(spec, ctx, store, technique: str, to: str, out: Path) -> None:
    retrieval = getattr(spec, "retrieval", None)
    manifest = {
        "technique": technique,
        "kind": spec.kind,
        "format": to,
        "run": str(store.run_dir),
        "task": ctx.task.name,
        "base_model": ctx.recipe.model.id,
        "dtype": ctx.recipe.model.dtype,
        # the conversation the technique adds around a client's messages (deploy/loader.Served.conversation)
        "system": ctx.task.spec.prompt.system,
        "shots": prompting.shot_turns(
            ctx.task, prompting.draw_shots(ctx.task, getattr(spec, "shots", 0), ctx.recipe.seed)
        ),
        "user_template": ctx.task.spec.prompt.template,
        "retrieval": None if retrieval is None else retrieval.model_dump(mode="json") | {"chunks": CHUNKS},
        "generation": {"do_sample": False, "max_new_tokens": ctx.recipe.eval.heldout.max_new_tokens},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def load_exported(folder: str | Path, device: str = "cpu"):
    """(model, tokenizer) from an exported folder, loaded as a user would: AutoModelForCausalLM for a merged
    model, AutoPeftModelForCausalLM for an adapter (its base named in adapter_config.json), in the dtype
    the export recorded; None for an export that holds no model (a prompt or RAG technique's adapter)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    dtype = "auto" if manifest.get("dtype") in (None, "auto") else getattr(torch, manifest["dtype"])
    if (folder / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=dtype)
    elif (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    else:
        return None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"  # batched generation pads on the left
    return model.to(device).eval(), tokenizer
