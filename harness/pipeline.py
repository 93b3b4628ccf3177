"""run(recipe) -> results: every technique on the same base model and task, one stored row each."""

from __future__ import annotations

import ctypes
import gc
import platform
import subprocess
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from harness import report
from harness.config import Recipe
from harness.measure import cost_usd, device_name
from harness.results import RunStore, make_row
from harness.tasks import load_task
from harness.techniques import TECHNIQUES, Outcome, RunContext

LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "lm_eval", "accelerate", "scikit-learn", "pandas")
SHARES_BASE_MODEL = {"prompt", "rag"}  # kinds that only read the base model, so one loaded copy serves them all


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("recipe asks for device: cuda but no CUDA device is visible; set device: auto or cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def new_run_dir(recipe: Recipe) -> Path:
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(recipe.output_dir) / recipe.name / run_id
    suffix = 1
    while path.exists():  # two runs in the same second
        path = path.with_name(f"{run_id}-{suffix}")
        suffix += 1
    return path


def run(recipe: Recipe, run_dir: Path | None = None, recipe_path: str | None = None,
        console: Console | None = None) -> list[RunStore]:
    """Run every technique not yet finished on each of the recipe's tasks (resuming when run_dir holds
    results). One task: results in run_dir; several: one sub-run per task, run_dir/<task>/, and a
    combined REPORT.md in run_dir."""
    console = console or Console()
    device = resolve_device(recipe.device)
    run_dir = Path(run_dir) if run_dir else new_run_dir(recipe)
    if len(recipe.tasks) == 1:
        return [run_task(recipe, recipe.task, run_dir, recipe_path, device, console)]
    stores = [run_task(recipe, task, run_dir / Path(task).name, recipe_path, device, console, run_id=run_dir.name)
              for task in recipe.tasks]
    report.write_report(stores, run_dir)
    return stores


def run_task(full_recipe: Recipe, task_ref: str, run_dir: Path, recipe_path: str | None, device: str,
             console: Console, run_id: str | None = None) -> RunStore:
    recipe = full_recipe.for_task(task_ref)
    task = load_task(task_ref)
    if (run_dir / "results.json").is_file():
        store = RunStore.open(run_dir)
    else:
        store = RunStore(run_dir, _meta(full_recipe, task_ref, recipe_path, run_id or run_dir.name, device, task))
        store.save()
    console.print(f"[bold]{recipe.name}[/]: {len(recipe.techniques)} technique(s) on {recipe.model.id} / "
                  f"{task.name} ({len(task.train)} train, {len(task.test)} test) on {device} -> {store.run_dir}")
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    ctx = RunContext(recipe=recipe, task=task, device=device, run_dir=store.run_dir, progress=progress)
    if _base_model_still_needed(recipe, store):
        ctx.base_model()  # loaded once, outside every technique's wall time (the report states the load time)
    try:
        with Live(Group(report.terminal_table(store), progress), console=console, refresh_per_second=8) as live:
            for spec in recipe.techniques:
                if store.finished(spec.name):
                    console.print(f"[dim]{spec.name}: already finished, skipped (resume)[/]")
                    continue
                row, predictions = run_technique(spec, ctx)
                store.record(row, predictions)
                if not _base_model_still_needed(recipe, store):
                    ctx.release_base_model()
                release_memory()  # so the next technique's peak is not inflated by this one's leftovers
                live.update(Group(report.terminal_table(store), progress))
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished techniques are saved; continue with "
                      f"`harness run --resume {store.run_dir}`")
        raise
    finally:
        if ctx.base_load_seconds is not None:
            store.meta["model_load_seconds"] = ctx.base_load_seconds
            store.save()
        report.write_report([store])
    return store


def run_technique(spec, ctx: RunContext) -> tuple[dict, list[dict]]:
    """One technique, never raising (but for Ctrl-C): a failure becomes a row with its reason."""
    from transformers import set_seed

    set_seed(ctx.recipe.seed)
    if needs_corpus(spec) and ctx.task.corpus_path is None:
        reason = f"task {ctx.task.name!r} has no corpus to retrieve from"
        return make_row(spec.name, spec.kind, "skipped", error=reason, device=ctx.device), []
    start = time.perf_counter()
    try:
        outcome = TECHNIQUES.get(spec.kind)(spec, ctx)
        status, error = "ok", None
    except Exception as exc:  # noqa: BLE001 — any failure is recorded, the other techniques still run
        outcome, status, error = Outcome({}), "failed", f"{type(exc).__name__}: {exc}"
        _save_traceback(ctx.run_dir, spec.name)
    wall = time.perf_counter() - start
    values = outcome.values
    peaks = [values.get(k) for k in ("train_peak_memory_bytes", "eval_peak_memory_bytes", "lm_eval_peak_memory_bytes")]
    row = make_row(
        spec.name, spec.kind, status, **values, error=error, wall_seconds=wall, device=ctx.device,
        peak_memory_bytes=max((p for p in peaks if p is not None), default=None),
        cost_usd=cost_usd(wall, ctx.device, ctx.recipe.cost.usd_per_hour) if status == "ok" else None,
    )
    return row, outcome.predictions


def needs_corpus(spec) -> bool:
    return spec.kind == "rag" or getattr(spec, "retrieval", None) is not None


def _base_model_still_needed(recipe: Recipe, store: RunStore) -> bool:
    """Whether a technique that reads the shared base model has yet to finish."""
    return any(t.kind in SHARES_BASE_MODEL and not store.finished(t.name) for t in recipe.techniques)


def release_memory() -> None:
    """Free what a finished technique left: Python garbage, CUDA cache, and (glibc) freed heap pages."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed pages to the OS, so RSS peaks stay per technique
    except (OSError, AttributeError):
        pass


def _save_traceback(run_dir: Path, technique: str) -> None:
    path = run_dir / "logs" / f"{technique}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(traceback.format_exc())


def _meta(recipe: Recipe, task_ref: str, recipe_path: str | None, run_id: str, device: str, task) -> dict:
    return {
        "recipe": recipe.model_dump(mode="json"),  # all its tasks: `--resume` of the parent folder runs them all
        "task_ref": task_ref,  # this run's task, as the recipe names it
        "recipe_path": recipe_path,
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": recipe.seed,
        "device": device,
        "device_name": device_name(device),
        "task": {"name": task.name, "path": str(task.path), "n_train": len(task.train), "n_test": len(task.test),
                 "metric": task.spec.metric, "labels": task.labels},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "git_commit": _git_commit(),
        "usd_per_hour": dict(recipe.cost.usd_per_hour),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
