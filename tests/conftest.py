"""Shared fixtures: a tiny random Llama and a tokenizer trained in about a second, saved to a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One torch thread per process: the tiny model's ops take microseconds, so synchronising threads costs more
# than it saves, and the suite often runs a driver, cells and a Ray cluster at once on few cores (measured:
# tests/test_run.py took 1.7x as long with 2 threads as with 1 on this 2-core machine under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:  # submitit configures its loggers when imported, bound to the sys.stdout of that moment: import it before
    # any test swaps the streams (click's CliRunner), or its handlers keep a stream that is closed afterwards
    import submitit  # noqa: F401
except ImportError:
    pass

REPO = Path(__file__).resolve().parent.parent
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A 400-token byte-level BPE tokenizer trained on the ticket-routing messages, with a ChatML chat
    template (the tiny model's; bench/gpu/prove.py's random-initialised models' too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [json.loads(line)["message"] for line in (REPO / "tasks/ticket-routing/data.jsonl").open()]
    texts += ["billing shipping technical account returns feedback Team: Message: Teams:"] * 20
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<unk>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_model(folder: Path, tied: bool = True) -> Path:
    """A 2-layer Llama (hidden 64) with the tiny tokenizer (build_tiny_tokenizer). Tied embeddings make a
    random model repeat its input's last token (after a chat prompt: newlines, so empty answers); an untied
    one (`tied=False`) writes varied text, for tests that compare answers (tests/test_deploy.py)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tied,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def lively_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its weights (but the norms) scaled up 6x. The random tiny model answers every
    prompt with newlines (empty once stripped), so "the same answers" would prove nothing; scaled, its
    answers differ from prompt to prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("lively-model")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.mul_(6)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def once_per_session(name: str, compute, tmp_path_factory, worker_id: str):
    """compute()'s (picklable) value, computed once per test session: under pytest-xdist the first worker to
    ask computes it into the session's shared folder while any other waits for it and reads it."""
    import pickle

    from filelock import FileLock

    if worker_id == "master":
        return compute()
    shared = tmp_path_factory.getbasetemp().parent / f"{name}.pickle"  # this session's root, for all workers
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_bytes(pickle.dumps(compute()))
        return pickle.loads(shared.read_bytes())


@pytest.fixture(scope="module")
def local_study(tiny_model_dir, tmp_path_factory, worker_id):
    """The executor tests' reference: their study on the local executor (tests/executor_study.py), shared
    by the Slurm and the Ray test files, which xdist runs on two workers."""
    from executor_study import run_local_study

    return once_per_session(
        "local-study", lambda: run_local_study(tiny_model_dir, tmp_path_factory), tmp_path_factory, worker_id
    )


TRAINED_KINDS = """\
  - {name: full, kind: full, train: {max_steps: 3, batch_size: 4}}
  - {name: lora, kind: lora, train: {max_steps: 3, batch_size: 4}, lora: {rank: 2, alpha: 4}}
  - {name: broken, kind: lora, train: {max_steps: 3}, lora: {target_modules: [input_layernorm]}}
  - {name: qlora, kind: qlora, train: {max_steps: 3, batch_size: 4}, lora: {rank: 2, alpha: 4}}
"""


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory, worker_id):
    """One `harness run` of every trained kind on the tiny model (and a LoRA whose target modules fail in
    its cell), as a user runs it: (recipe path, the run's exit code, its output, its run folder). Shared by
    tests/test_training.py and tests/test_memory_plan.py."""

    def run():
        folder = tmp_path_factory.mktemp("trained-run")
        recipe = folder / "r.yaml"
        recipe.write_text(tiny_recipe(tiny_model_dir, folder / "out", TRAINED_KINDS))
        result = run_cli("run", recipe)
        return recipe, result.exit_code, result.output, only_run_dir(folder / "out")

    return once_per_session("trained-run", run, tmp_path_factory, worker_id)


@pytest.fixture
def write(tmp_path):
    """write('name.yaml', text) -> path: a file under the test's temporary folder."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


def tiny_recipe(model_dir: Path, output_dir: Path, techniques: str, extra: str = "") -> str:
    return f"""
name: tiny
model: {model_dir}
task: ticket-routing
seed: 0
device: cpu
output_dir: {output_dir}
techniques:
{techniques}
eval:
  heldout: {{limit: 12, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200}}
{extra}
"""


def tiny_study(model_dir: Path, output_dir: Path, techniques: str, study: str) -> str:
    """tiny_recipe with its `eval:` section replaced by a study's settings (seeds, search, eval, ...)."""
    return tiny_recipe(model_dir, output_dir, techniques).split("eval:")[0] + study


def run_cli(*args):
    """`harness ARGS...` in this process; exceptions other than the CLI's own exits propagate."""
    from click.testing import CliRunner

    from harness.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def only_run_dir(out: Path) -> Path:
    """The one run folder a tiny recipe wrote under `out`."""
    (run_dir,) = (out / "tiny").iterdir()
    return run_dir


def run_rows(write, recipe_text: str, out: Path) -> tuple[Path, dict]:
    """Write the recipe, `harness run` it (it must succeed), and return its run folder and rows by technique."""
    result = run_cli("run", write("r.yaml", recipe_text))
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    return run_dir, {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}


@pytest.fixture(scope="session")
def deploy_run_dir(tmp_path_factory) -> Path:
    """A finished tiny run (few-shot, rag, lora, full) for the deploy tests: tests/deploy_run.py, on an untied
    tiny model, whose answers are text to compare (the tied one answers newlines: empty answers)."""
    from deploy_run import run_deploy_recipe

    folder = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(folder / "cache"))
        return run_deploy_recipe(build_tiny_model(folder / "model", tied=False), folder)
