"""The GPU proof (issue 21) in one call: every kind on CUDA, memory and energy per phase as GPU users read
them, the Llama-3.2-1B-shaped benchmark (tokens/s and MFU of full fine-tuning, LoRA and QLoRA memory as
fractions of full, the harness against a plain TRL script), and the memory plan against each measured peak.

    bash bench/gpu/run.sh                          # on the GPU machine: installs the carried wheels, runs this
    python bench/gpu/prove.py --dry-run            # here: the same steps on the CPU with a tiny model
    python bench/gpu/prove.py --dry-run --steps memory plan --budget memory=300

Steps (each in its own process, under its own time budget: one that fails or runs out of time is recorded
with its reason, and the others still run):
  tests   `pytest -m gpu tests/test_gpu.py`: every kind on CUDA (skipped on a CPU)
  memory  `harness run` of prompt, full, lora and qlora on the random-initialised model: per phase the
          allocator peak, the reserved peak, NVML's device-level peak and the energy (Wh, priced per kWh)
  bench   a measured matmul FLOP/s; full, LoRA and QLoRA training at a batch and sequence length that fill
          the GPU (tokens/s, MFU, peaks); harness vs plain TRL LoRA, A B A B (bench/bench_train.py's children)
  plan    the memory plan (harness/planner.py, as `harness plan` computes it) beside every measured peak,
          and for the Llama-3.1-8B shape
The parent process never touches CUDA (a CUDA context here would count in every NVML device-level peak).
Results: gpu-<card>.json and gpu-<card>.md in --out (default: $OUT, else bench/results); commit the .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the checkout's harness (light: harness.models imports no torch at import)
from harness.models import RANDOM_ARCHITECTURES  # noqa: E402

STEPS = ("tests", "memory", "bench", "plan")

# Llama-3.2-1B's and Llama-3.1-8B's shapes (their config.json), random-initialised here: weights do not travel.
# The harness's own `random:` architectures (harness/models.py) with the real vocabulary and positions: the
# embeddings of a 128k vocabulary are a quarter of the 1B model's parameters.
LLAMA_1B = RANDOM_ARCHITECTURES["llama-1b"] | dict(
    vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0
)
LLAMA_8B = LLAMA_1B | dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, vocab_size=128256, tie_word_embeddings=False
)
TINY = RANDOM_ARCHITECTURES["tiny-llama"] | dict(vocab_size=1024, max_position_embeddings=2048)
# torchtune's published peak memory of Llama-3.2-3B fine-tuning, as fractions of full fine-tuning's.
TORCHTUNE_RATIOS = {"lora": 0.33, "qlora": 0.18}


@dataclass(frozen=True)
class Profile:
    """What the steps run: the GPU's settings, or the dry run's (the CPU, a tiny model, tiny budgets)."""

    device: str
    shape: dict
    big_shape: dict  # planned only, and its LoRA measured if the bench step has time left
    budgets: dict[str, float]  # seconds per step
    seq_len: int  # tokens per training sequence (every example fills it)
    batches: tuple[int, ...]  # the batch sizes tried for the bench, largest first (the plan picks; OOM halves)
    train_steps: int  # optimizer steps per bench measurement
    repeats: int  # harness/plain A B pairs
    matmul: int  # n of the n x n x n matmul
    memory_steps: int  # training steps per technique in the memory step
    device_fraction: float = 0.8  # of the GPU's memory the bench's planned full peak may take
    notes: list[str] = field(default_factory=list)


GPU = Profile(
    device="cuda",
    shape=LLAMA_1B,
    big_shape=LLAMA_8B,
    budgets={"tests": 140, "memory": 110, "bench": 220, "plan": 30},
    seq_len=2048,
    batches=(16, 8, 4, 2, 1),
    train_steps=20,
    repeats=2,
    matmul=8192,
    memory_steps=4,
)
DRY = Profile(
    device="cpu",
    shape=TINY,
    big_shape=TINY | dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, tie_word_embeddings=False),
    budgets={"tests": 120, "memory": 240, "bench": 300, "plan": 60},
    seq_len=64,
    batches=(2,),
    train_steps=2,
    repeats=1,
    matmul=256,
    memory_steps=1,
    notes=["dry run: the CPU and a tiny model; the figures test the plumbing, not the hardware"],
)


# --- the parent: run the steps, write the results -------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    profile = DRY if args.dry_run else GPU
    profile = replace(
        profile, budgets=profile.budgets | {k: float(v) for k, v in (b.split("=", 1) for b in args.budget)}
    )
    if args.call:  # a function in a process of its own (isolated)
        print(json.dumps(globals()[args.call](*json.loads(args.call_args))))
        return {}
    if args.step:  # a child: one step, its result as JSON in the work folder
        result = STEP_FUNCTIONS[args.step](profile, Path(args.work))
        save(Path(args.work), args.step, result)
        return result
    # the children import the harness from this checkout, read no hub, and print as they go
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.environ["PYTHONUNBUFFERED"] = "1"
    out = Path(args.out or os.environ.get("OUT") or REPO / "bench/results")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-prove-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python bench/gpu/prove.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "dry_run": args.dry_run,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "profile": asdict(profile),
        "environment": environment(profile, work, args.dry_run),
        "steps": {},
    }
    card = card_slug(results["environment"], args.dry_run)
    for name in args.steps:
        print(f"== step {name} (budget {profile.budgets[name]:.0f}s)", flush=True)
        results["steps"][name] = run_step(name, args, work, profile.budgets[name], out / "steps.log")
        print(f"   {results['steps'][name]['status']} in {results['steps'][name]['seconds']:.1f}s", flush=True)
        write_results(out, card, results)  # after every step: a later failure keeps the earlier ones
    write_results(out, card, results)
    print(f"results: {out / f'gpu-{card}.md'} and .json", flush=True)
    return results


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the CPU and a tiny model, tiny budgets")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--budget", action="append", default=[], metavar="STEP=SECONDS", help="a step's time budget")
    parser.add_argument("--out", help="where the results go (default: $OUT, else bench/results)")
    parser.add_argument("--work", help="scratch folder: models, runs (default: a new temporary one)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # run one step (the parent's children)
    parser.add_argument("--call", help=argparse.SUPPRESS)  # run one function (isolated)
    parser.add_argument("call_args", nargs="?", default="[]", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_step(name: str, args: argparse.Namespace, work: Path, budget: float, log: Path) -> dict:
    """One step in a child process, killed with everything it started once over its budget; its output
    appended to `log`."""
    command = [sys.executable, __file__, "--step", name, "--work", str(work), *(["--dry-run"] if args.dry_run else [])]
    command += [f"--budget={b}" for b in args.budget]
    result_file = work / f"{name}.json"
    result_file.unlink(missing_ok=True)
    start = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = child.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        seconds = time.perf_counter() - start
        append(log, f"== {name}: timed out\n{output}")
        partial = json.loads(result_file.read_text()) if result_file.is_file() else {}
        return {
            "status": "timed out",
            "reason": f"over its budget of {budget:.0f}s",
            "seconds": seconds,
            **partial,
            "log_tail": tail(output),
        }
    seconds = time.perf_counter() - start
    append(log, f"== {name}: exit code {child.returncode}\n{output}")
    if child.returncode or not result_file.is_file():
        return {
            "status": "failed",
            "reason": f"exit code {child.returncode}",
            "seconds": seconds,
            "log_tail": tail(output),
        }
    return {"status": "ok", "seconds": seconds, **json.loads(result_file.read_text())}


def append(log: Path, text: str) -> None:
    with log.open("a") as file:
        file.write(text.rstrip() + "\n")


def tail(text: str | None, lines: int = 25) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def environment(profile: Profile, work: Path, dry_run: bool) -> dict:
    """The machine, read in a child (this process holds no CUDA context): nvidia-smi, torch and its CUDA,
    the card, and whether the carried bitsandbytes has the library for that CUDA; the packages' versions."""
    from importlib import metadata

    env: dict = {"python": sys.version.split()[0], "versions": {}}
    for package in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "lm_eval", "nvidia-ml-py"):
        try:
            env["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            env["versions"][package] = None
    env["image_requirements_unmet"] = unmet_requirements(REPO / "bench/gpu/wheels/image-requirements.txt")
    if dry_run:
        env["device_name"] = "cpu (dry run)"
        return env
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["nvidia_smi"] = f"not available: {exc}"
    probe = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True, timeout=120)
    env |= (
        json.loads(probe.stdout.strip().splitlines()[-1])
        if probe.returncode == 0
        else {"probe_error": tail(probe.stderr)}
    )
    return env


def unmet_requirements(manifest: Path) -> list[str]:
    """What the carried wheels need of the image's packages (bench/gpu/wheels.sh wrote `manifest`) and the
    installed versions do not give: a reason to re-pin a carried package before the steps fail on it."""
    from importlib import metadata

    from packaging.requirements import Requirement

    if not manifest.is_file():
        return []
    unmet = []
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        text, _, needed_by = line.partition("#")
        requirement = Requirement(text.strip())
        try:
            have = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or not requirement.specifier.contains(have, prereleases=True):
            unmet.append(f"{needed_by.strip()} needs {requirement}, the machine has {have or 'none'}")
    return unmet


CUDA_PROBE = """
import json, pathlib, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info |= {"device_name": props.name, "device_memory_bytes": props.total_memory,
             "multiprocessors": props.multi_processor_count, "bf16": torch.cuda.is_bf16_supported()}
try:
    import bitsandbytes
    wanted = f"libbitsandbytes_cuda{(torch.version.cuda or '').replace('.', '')}.so"
    carried = sorted(p.name for p in pathlib.Path(bitsandbytes.__file__).parent.glob("libbitsandbytes_*.so"))
    info |= {"bitsandbytes_libraries": carried, "bitsandbytes_library_matches": wanted in carried,
             "bitsandbytes_wanted": wanted}
except Exception as exc:
    info["bitsandbytes_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(info))
"""


def card_slug(env: dict, dry_run: bool) -> str:
    if dry_run:
        return "cpu-dry-run"
    name = str(env.get("device_name") or "unknown").lower().removeprefix("nvidia ")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown"


def write_results(out: Path, card: str, results: dict) -> None:
    (out / f"gpu-{card}.json").write_text(json.dumps(results, indent=1, default=str))
    (out / f"gpu-{card}.md").write_text(render(results))


# --- the steps (each runs in its own process) ------------------------------------------------------------


def step_tests(profile: Profile, work: Path) -> dict:
    """pytest -m gpu on tests/test_gpu.py; the counts and each failure's message."""
    import xml.etree.ElementTree as ElementTree

    junit = work / "junit.xml"
    command = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-o", "addopts=", "-q", "-rs"]
    command += ["-p", "no:cacheprovider", f"--junitxml={junit}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    cases = ElementTree.parse(junit).getroot().iter("testcase") if junit.is_file() else []
    outcome: dict = {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skip_reasons": set()}
    for case in cases:
        name = case.get("name")
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            outcome["failed"] += 1
            outcome["failures"].append({"test": name, "message": (problem.get("message") or "")[:600]})
        elif case.find("skipped") is not None:
            outcome["skipped"] += 1
            outcome["skip_reasons"].add(case.find("skipped").get("message"))
        else:
            outcome["passed"] += 1
    outcome["skip_reasons"] = sorted(r for r in outcome["skip_reasons"] if r)
    return outcome | {"exit_code": done.returncode, "summary": tail(done.stdout, 3)}


def step_memory(profile: Profile, work: Path) -> dict:
    """`harness run` of prompt, full, lora and qlora on the random-initialised model (ticket-routing); per
    trained row and phase the four memory readings, seconds and energy, and the plan's estimate."""
    model = prepared_model(work / "model", profile.shape)
    train = f"{{max_steps: {profile.memory_steps}, batch_size: 4, max_length: 256, logging_steps: 1}}"
    recipe = work / "memory.yaml"
    recipe.write_text(
        f"""name: gpu-memory
model: {model}
task: ticket-routing
device: {profile.device}
output_dir: {work / "runs"}
cost: {{usd_per_kwh: 0.15}}
techniques:
  - {{name: zero, kind: prompt}}
  - {{name: full, kind: full, train: {train}}}
  - {{name: lora, kind: lora, train: {train}}}
  - {{name: qlora, kind: qlora, train: {train}}}
eval:
  heldout: {{limit: 12, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200, latency_samples: 0}}
"""
    )
    done = subprocess.run(harness_cli("run", recipe), cwd=REPO, capture_output=True, text=True)
    runs = sorted((work / "runs" / "gpu-memory").glob("*/results.json"))
    if not runs:
        raise RuntimeError(f"harness run wrote no results (exit {done.returncode}):\n{tail(done.stdout + done.stderr)}")
    rows = json.loads(runs[-1].read_text())["rows"]
    keep = ("technique", "kind", "status", "error", "dtype", "peak_memory_method", "planned_peak_memory_bytes")
    keep += ("energy_wh", "energy_cost_usd", "train_seconds", "eval_seconds", "train_tokens_per_second")
    phases = ("train", "eval")
    figures = ("peak_memory_bytes", "reserved_peak_bytes", "device_peak_bytes", "energy_wh")
    keep += tuple(f"{phase}_{figure}" for phase in phases for figure in figures)
    return {"rows": [{k: row.get(k) for k in keep} for row in rows if row.get("kind") != "baseline"]}


def step_bench(profile: Profile, work: Path) -> dict:
    """The measured matmul rate, then bench/bench_train.py's children on the long-text task: full (the batch
    the plan picks, halved on running out of memory), LoRA and plain TRL alternating, QLoRA; then, with time
    left, LoRA on the 8B shape (random init, built on the device)."""
    sys.path.insert(0, str(REPO / "bench"))
    import bench_train

    deadline = time.monotonic() + profile.budgets["bench"] - 15
    facts = isolated(device_facts, profile.device, profile.matmul)
    result: dict = {"matmul": facts["matmul"]}
    save(work, "bench", result)
    model = prepared_model(work / "model", profile.shape)
    task = long_text_task(work / "long-text", profile.seq_len)
    fast = facts["precision"]
    fitting = planned_batch(profile, model, fast, facts["device_memory_bytes"])
    batches = [b for b in profile.batches if b <= fitting] or [profile.batches[-1]]
    args = argparse.Namespace(model=str(model), steps=profile.train_steps, batch_size=batches[0], device=profile.device)
    args.task, args.max_length = str(task), profile.seq_len
    result |= {"precision": fast, "seq_len": profile.seq_len, "model": str(model), "runs": {}}

    def child(label: str, *job: str) -> dict | None:
        left = deadline - time.monotonic()
        if left < 10:
            result["runs"][label] = {"error": "no time left in the step's budget"}
            return None
        try:
            measured = bench_train.run_child(args, *job, timeout=left)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            measured = {"error": str(exc)[-1500:]}
        result["runs"][label] = measured | {"batch_size": args.batch_size}
        save(work, "bench", result)
        return None if "error" in measured else measured

    for batch in batches:  # full fine-tuning at the largest batch that fits
        args.batch_size = result["batch_size"] = batch
        full = child("full", "harness", "full", fast)
        if full is not None or "OutOfMemory" not in result["runs"]["full"].get("error", ""):
            break
    for repeat in range(profile.repeats):  # A B A B: drift on the machine hits both sides alike
        child(f"lora-{repeat + 1}", "harness", "lora", fast)
        child(f"plain-{repeat + 1}", "plain", fast)
    child("qlora", "harness", "qlora", fast)
    big = prepared_config(work / "model-8b", profile.big_shape, pad_tokenizer=True)
    args.model, args.batch_size = (
        f"random:{big / 'config.json'}",
        1,
    )  # random init on the device: 8B weights never saved
    child("lora-8b", "harness", "lora", fast)
    return result | summary(result, profile)


def step_plan(profile: Profile, work: Path) -> dict:
    """The plan's peak for every measured training (the memory step's rows carry theirs; the bench's are
    planned here at the same settings), and for the 8B shape's full, LoRA and QLoRA."""
    lines = []
    memory = load(work, "memory")
    for row in memory.get("rows", []):
        if row.get("train_peak_memory_bytes") and row.get("planned_peak_memory_bytes"):
            lines.append(plan_line(f"memory step: {row['technique']}", row["planned_peak_memory_bytes"], row, "train_"))
    bench = load(work, "bench")
    model = str(prepared_config(work / "model", profile.shape))  # the plan reads configs only
    big = f"random:{prepared_config(work / 'model-8b', profile.big_shape, pad_tokenizer=True) / 'config.json'}"
    fast = bench.get("precision") or train_precision(profile.device)
    for label, run in bench.get("runs", {}).items():
        kind = label.split("-")[0]
        if "error" in run or kind == "plain":
            continue
        source = big if label.endswith("8b") else model
        planned = planned_peak(source, kind, run["batch_size"], bench["seq_len"], fast, profile.device)
        lines.append(plan_line(f"bench: {label}", planned, run, "train_", allocator_key="peak_bytes"))
    batch = bench.get("batch_size") or profile.batches[-1]
    plan_only = {
        kind: planned_peak(big, kind, batch, profile.seq_len, fast, profile.device)
        for kind in ("full", "lora", "qlora")
    }
    command = (
        f"harness plan --model random:<work>/model-8b/config.json --device {profile.device} --batch-size {batch} "
        f"--max-length {profile.seq_len} --precision {fast}"
    )
    return {"lines": lines, "big_shape_plan": plan_only, "big_shape_batch": batch, "big_shape_command": command}


STEP_FUNCTIONS = {"tests": step_tests, "memory": step_memory, "bench": step_bench, "plan": step_plan}


# --- helpers of the steps --------------------------------------------------------------------------------


def harness_cli(*args) -> list[str]:
    return [sys.executable, "-c", "from harness.cli import main; main()", *map(str, args)]


def save(work: Path, step: str, result: dict) -> None:
    """A step's result so far (a step killed at its budget keeps what it had measured)."""
    (work / f"{step}.json").write_text(json.dumps(result, indent=1, default=str))


def load(work: Path, step: str) -> dict:
    path = work / f"{step}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def prepared_config(folder: Path, shape: dict, pad_tokenizer: bool = False) -> Path:
    """A folder with the shape's config.json (its vocabulary: Llama 3's 128,256) and the tiny BPE tokenizer
    (tests/conftest.py). A saved model keeps its config's vocabulary, and ids its tokenizer lacks decode to
    nothing; a `random:<folder>/config.json` model takes its tokenizer's vocabulary (harness/models.py), so
    for one the tokenizer is padded with added tokens to the shape's (loading 128k added tokens takes
    seconds in every process: only where needed)."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoConfig

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_tiny_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    if pad_tokenizer:
        tokenizer.add_tokens([f"<pad_{i}>" for i in range(shape["vocab_size"] - len(tokenizer))])
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    AutoConfig.for_model(**shape, **ids).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prepared_model(folder: Path, shape: dict) -> Path:
    """A saved random-initialised model of `shape` with its tokenizer, built once per work folder (in a
    process of its own: see isolated). Saved weights, because QLoRA quantizes them on load."""
    if not (folder / "done").is_file():
        isolated(build_model, str(folder), shape)
    return folder


def build_model(folder: str, shape: dict) -> str:
    """Random-initialised bf16 weights of `shape`, built on the GPU where there is one, saved with the
    tokenizer in `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    prepared_config(Path(folder), shape)
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    (Path(folder) / "done").write_text("")
    return folder


def isolated(function, *args):
    """function(*args) in a fresh process; its JSON result. A step's own process must hold no CUDA context
    nor cached blocks while its measured children run: NVML's device-level peak counts every process."""
    command = [sys.executable, __file__, "--call", function.__name__, json.dumps(args)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{function.__name__} failed:\n{tail(done.stderr)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def long_text_task(folder: Path, seq_len: int, examples: int = 160) -> Path:
    """A task whose every training example is longer than `seq_len` tokens (truncated there), so each batch
    is batch x seq_len tokens: a short prompt, a long completion of words from the ticket messages."""
    import random

    if (folder / "task.yaml").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(
        {w for line in (REPO / "tasks/ticket-routing/data.jsonl").open() for w in json.loads(line)["message"].split()}
    )
    rng = random.Random(0)
    with (folder / "data.jsonl").open("w") as data:
        for i in range(examples):
            text = " ".join(rng.choice(words) for _ in range(seq_len))  # >= 1 token a word
            data.write(json.dumps({"id": f"t{i}", "input": f"document {i}", "output": text}) + "\n")
    (folder / "task.yaml").write_text(
        "name: long-text\ndescription: Synthetic long completions for throughput (bench/gpu/prove.py).\n"
        "data: {train: data.jsonl, test_fraction: 0.1, split_seed: 0}\nfields: {id: id, input: input, output: output}\n"
        "metric: exact_match\nprompt: {system: Continue the document., template: 'Title: {input}'}\n"
    )
    return folder


def train_precision(device: str) -> str:
    from harness import train
    from harness.config import TrainSettings

    return train.precision(TrainSettings(), device)


def planned_peak(model_id: str, kind: str, batch: int, seq_len: int, precision: str, device: str) -> int:
    """The memory plan's peak for `kind` at this batch and sequence length (what `harness plan` prints)."""
    from harness import kinds, planner
    from harness.analysis import memory_plan

    spec = kinds.get(kind).settings.model_validate(
        {"name": kind, "kind": kind, "train": {"batch_size": batch, "max_length": seq_len, "precision": precision}}
    )
    model = planner.read_model(model_id)
    setup = planner.setup_for(spec, model, "cuda" if device.startswith("cuda") else "cpu", seq_len)
    return int(memory_plan.estimate(model.shape, setup).total)


def planned_batch(profile: Profile, model: Path, precision: str, device_bytes: int | None) -> int:
    """The largest of the profile's batches whose planned full fine-tuning peak fits device_fraction of the
    GPU (the dry run: the profile's one batch)."""
    if not device_bytes or not profile.device.startswith("cuda"):
        return profile.batches[0]
    memory = device_bytes * profile.device_fraction
    fitting = [
        b
        for b in profile.batches
        if planned_peak(str(model), "full", b, profile.seq_len, precision, profile.device) <= memory
    ]
    return max(fitting, default=profile.batches[-1])


def device_facts(device: str, n: int) -> dict:
    """The training precision `auto` gives, the GPU's memory, and the FLOP/s of an n x n x n matmul (bf16 on
    CUDA, fp32 on the CPU: the mean of 10 after 3 warm-ups)."""
    import torch

    cuda = device.startswith("cuda")
    memory = torch.cuda.get_device_properties(0).total_memory if cuda else None
    return {"precision": train_precision(device), "device_memory_bytes": memory, "matmul": matmul_rate(device, n)}


def matmul_rate(device: str, n: int) -> dict:
    import torch

    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 10
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_second": 2 * n**3 / seconds}


def summary(result: dict, profile: Profile) -> dict:
    """MFU beside the peak used and the measured matmul; LoRA/QLoRA peaks over full's; harness/plain."""
    runs = {k: v for k, v in result["runs"].items() if "error" not in v}
    out: dict = {}
    full = runs.get("full")
    if full:
        sys.path.insert(0, str(REPO / "bench"))
        import bench_train

        name = full.get("device", "")
        out["peak_flops_used"] = bench_train.peak_bf16_flops(name)
        out["mfu"] = full.get("mfu")
        if full.get("mfu") and out["peak_flops_used"]:
            achieved = full["mfu"] * out["peak_flops_used"]
            out["achieved_flops_per_second"] = achieved
            out["share_of_measured_matmul"] = achieved / result["matmul"]["flops_per_second"]
        for kind in ("lora", "qlora"):
            run = runs.get(kind) or runs.get(f"{kind}-1")
            if run:
                out[f"{kind}_over_full"] = {
                    key: run[key] / full[key]
                    for key in ("peak_bytes", "train_reserved_peak_bytes", "train_device_peak_bytes")
                    if run.get(key) and full.get(key)
                }
    harness = [r["tokens_per_second"] for k, r in runs.items() if k.startswith("lora-") and k != "lora-8b"]
    plain = [r["tokens_per_second"] for k, r in runs.items() if k.startswith("plain-")]
    if harness and plain:
        out["harness_over_plain"] = statistics.median(harness) / statistics.median(plain)
    return out


def plan_line(label: str, planned: float, measured: dict, prefix: str, allocator_key: str | None = None) -> dict:
    readings = {
        "allocator": measured.get(allocator_key or f"{prefix}peak_memory_bytes"),
        "reserved": measured.get(f"{prefix}reserved_peak_bytes"),
        "device": measured.get(f"{prefix}device_peak_bytes"),
    }
    return {
        "label": label,
        "planned_bytes": planned,
        "measured_bytes": readings,
        "planned_over_measured": {k: planned / v for k, v in readings.items() if v},
    }


# --- the results file ------------------------------------------------------------------------------------


def gib(value) -> str:
    return "–" if value is None else f"{value / 2**30:.2f} GiB"


def wh(value) -> str:
    return "–" if value is None else f"{value:.3g} Wh"


def ratio(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def render(results: dict) -> str:
    env, steps = results["environment"], results["steps"]
    lines = [
        f"# GPU proof: {env.get('device_name', 'unknown device')}",
        "",
        f"Produced by `{results['command']}` (through `bash bench/gpu/run.sh` on the GPU machine), "
        f"started {results['started']}.",
        "",
        f"- torch {env.get('torch') or env['versions'].get('torch')}, CUDA {env.get('cuda', '–')}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "torch" and v),
    ]
    if "bitsandbytes_library_matches" in env:
        lines.append(
            f"- bitsandbytes: carried {', '.join(env['bitsandbytes_libraries'])}; needs {env['bitsandbytes_wanted']}: "
            + ("present" if env["bitsandbytes_library_matches"] else "**MISSING**")
        )
    lines += [f"- **unmet**: {problem}" for problem in env.get("image_requirements_unmet", [])]
    lines += [f"- {note}" for note in results["profile"].get("notes", [])]
    lines += ["", "| step | status | seconds | note |", "| --- | --- | --- | --- |"]
    for name, step in steps.items():
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.0f} | {step.get('reason', '')} |")
    for name, step in steps.items():
        lines += ["", *SECTIONS[name](step)]
        if step["status"] != "ok" and step.get("log_tail"):
            lines += ["", "<details><summary>log tail</summary>", "", "```", step["log_tail"], "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def tests_section(step: dict) -> list[str]:
    lines = ["## 1. `pytest -m gpu` (tests/test_gpu.py)", ""]
    if "passed" not in step:
        return lines + ["No result."]
    lines.append(f"{step['passed']} passed, {step['failed']} failed, {step['skipped']} skipped.")
    lines += [f"- skipped: {reason}" for reason in step.get("skip_reasons", [])]
    lines += [f"- **failed** `{f['test']}`: {f['message']}" for f in step.get("failures", [])]
    return lines


def memory_section(step: dict) -> list[str]:
    lines = [
        "## 2. Memory and energy per phase (`harness run`, random-initialised model, ticket-routing)",
        "",
        "The report leads with the allocator peak (max_memory_allocated: the tensors; what the plan estimates); "
        "reserved = max_memory_reserved (the tensors and the allocator's cached blocks); device = NVML's used "
        "memory at its sampled peak (what nvidia-smi shows: the CUDA context and every process on the GPU).",
        "",
        "| technique | phase | seconds | allocator | reserved | device (NVML) | energy | planned |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in step.get("rows", []):
        if row["status"] != "ok":
            lines.append(f"| {row['technique']} | – | – | {row['status']}: {row.get('error')} | | | | |")
            continue
        for phase in ("train", "eval"):
            if row.get(f"{phase}_peak_memory_bytes") is None:
                continue
            energy = row.get(f"{phase}_energy_wh")
            planned = gib(row.get("planned_peak_memory_bytes")) if phase == "train" else ""
            lines.append(
                f"| {row['technique']} | {phase} | {ratio(row.get(f'{phase}_seconds'), '.1f')} | "
                f"{gib(row.get(f'{phase}_peak_memory_bytes'))} | {gib(row.get(f'{phase}_reserved_peak_bytes'))} | "
                f"{gib(row.get(f'{phase}_device_peak_bytes'))} | {wh(energy)} | {planned} |"
            )
    costs = [
        f"{r['technique']} {r['energy_wh']:.3f} Wh = ${r['energy_cost_usd']:.5f}"
        for r in step.get("rows", [])
        if r.get("energy_cost_usd") is not None
    ]
    if costs:
        lines += ["", "Energy cost at $0.15/kWh (cost.usd_per_kwh): " + "; ".join(costs) + "."]
    return lines


def bench_section(step: dict) -> list[str]:
    lines = ["## 3. Benchmark (bench/bench_train.py's children, long-text task)", ""]
    matmul = step.get("matmul")
    if matmul:
        lines.append(
            f"Measured matmul: {matmul['n']}³ {matmul['dtype']} at {matmul['flops_per_second'] / 1e12:.3g} TFLOP/s."
        )
    if "runs" not in step:
        return lines
    lines += [
        "",
        f"Sequence length {step['seq_len']}, precision {step['precision']}, "
        f"{step.get('batch_size')} sequences a batch.",
        "",
        "| run | batch | tokens/s | MFU | allocator | reserved | device (NVML) | energy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, run in step["runs"].items():
        if "error" in run:
            lines.append(
                f"| {label} | {run.get('batch_size', '–')} | failed: {run['error'].splitlines()[-1][:200]} | | | | | |"
            )
            continue
        lines.append(
            f"| {label} | {run.get('batch_size')} | {run['tokens_per_second']:.0f} | {ratio(run.get('mfu'), '.1%')} | "
            f"{gib(run.get('peak_bytes'))} | {gib(run.get('train_reserved_peak_bytes'))} | "
            f"{gib(run.get('train_device_peak_bytes'))} | {wh(run.get('train_energy_wh'))} |"
        )
    if step.get("mfu") is not None:
        lines += [
            "",
            f"MFU of full fine-tuning: {step['mfu']:.1%} of the dense bf16 peak "
            f"{step['peak_flops_used'] / 1e12:.0f} TFLOP/s "
            f"(6 x params + 12 x layers x hidden x sequence FLOPs a token; goal >= 45%); "
            f"{ratio(step.get('share_of_measured_matmul'), '.1%')} of the measured matmul rate.",
        ]
    lines.append("")
    for kind in ("lora", "qlora"):
        if step.get(f"{kind}_over_full"):
            ratios = ", ".join(f"{k.replace('train_', '')} {v:.2f}x" for k, v in step[f"{kind}_over_full"].items())
            lines.append(
                f"- {kind} peak / full peak: {ratios} (torchtune, Llama-3.2-3B: {TORCHTUNE_RATIOS[kind]:.2f}x)"
            )
    if step.get("harness_over_plain") is not None:
        lines.append(
            f"- harness / plain TRL LoRA tokens/s (medians, A B A B): {step['harness_over_plain']:.3f} (goal >= 0.97)"
        )
    return lines


def plan_section(step: dict) -> list[str]:
    lines = [
        "## 4. The memory plan (`harness plan`) vs each measured peak",
        "",
        "| training | planned | allocator | reserved | device (NVML) | planned / allocator | / reserved | / device |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for line in step.get("lines", []):
        measured, over = line["measured_bytes"], line["planned_over_measured"]
        lines.append(
            f"| {line['label']} | {gib(line['planned_bytes'])} | {gib(measured['allocator'])} | "
            f"{gib(measured['reserved'])} | {gib(measured['device'])} | {ratio(over.get('allocator'))} | "
            f"{ratio(over.get('reserved'))} | {ratio(over.get('device'))} |"
        )
    if step.get("big_shape_plan"):
        planned = ", ".join(f"{kind} {gib(v)}" for kind, v in step["big_shape_plan"].items())
        lines += [
            "",
            f"Llama-3.1-8B shape, planned at batch {step['big_shape_batch']}: {planned} "
            f"(`{step['big_shape_command']}`).",
        ]
    return lines


SECTIONS = {"tests": tests_section, "memory": memory_section, "bench": bench_section, "plan": plan_section}


if __name__ == "__main__":
    main()
