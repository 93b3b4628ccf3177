"""Command line: harness run | validate | report | models | tasks."""

from __future__ import annotations

import functools
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

# Every progress display is rich's; libraries' tqdm bars (weight loading, lm-eval requests) would tear
# the live table. tqdm reads TQDM_* defaults when it is imported, so this comes before any import of it.
os.environ.setdefault("TQDM_DISABLE", "1")

import click  # noqa: E402
from rich.console import Console
from rich.table import Table

from harness.config import ConfigError, Recipe, load_recipe
from harness.models import ALIASES, RANDOM_ARCHITECTURES, ModelResolutionError, check_resolvable, describe

console = Console()
USER_ERRORS = (ConfigError, ModelResolutionError, FileNotFoundError)


def user_errors(command):
    """Turn known user mistakes into a one-paragraph message and exit code 2, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(2)

    return wrapper


@click.group()
@click.version_option(metadata.version("adapt-harness"), prog_name="harness")
def main():
    """Compare prompt-only, RAG, full fine-tuning, LoRA and QLoRA on one model and task."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes warns on every CPU import that it cannot fetch an optional kernel from the hub;
    # offline that is expected, and it falls back to its built-in kernel.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@main.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Finish an interrupted run: skip techniques already done.")
@user_errors
def run(recipe, overrides, resume_dir):
    """Run RECIPE (YAML), with optional key=value OVERRIDES, e.g. seed=1 eval.heldout.limit=50."""
    from harness import pipeline
    from harness.results import RunStore

    if resume_dir:
        if overrides:
            raise ConfigError("--resume reuses the stored recipe; overrides would mix settings within one run")
        stored = RunStore.open(resume_dir).meta
        spec = Recipe.model_validate(stored["recipe"])
        pipeline.run(spec, run_dir=Path(resume_dir), recipe_path=stored.get("recipe_path"), console=console)
        return
    if not recipe:
        raise click.UsageError("give a RECIPE file, or --resume RUN_DIR")
    spec = _validated(recipe, overrides)
    store = pipeline.run(spec, recipe_path=recipe, console=console)
    console.print(f"results: {store.results_path}\nreport:  {store.run_dir / 'REPORT.md'}")
    if any(r["status"] == "failed" for r in store.rows):
        console.print(f"[red]some techniques failed[/]; tracebacks in {store.run_dir / 'logs'}")
        sys.exit(1)


def _validated(recipe_path: str, overrides) -> Recipe:
    """Parse the recipe and resolve every name it uses, loading no model."""
    from harness.prompting import draw_shots
    from harness.tasks import load_task

    spec = load_recipe(recipe_path, overrides)
    check_resolvable(spec.model.id)
    task = load_task(spec.task)
    for technique in spec.techniques:
        try:
            draw_shots(task, getattr(technique, "shots", 0), spec.seed)
        except ValueError as exc:
            raise ConfigError(f"{recipe_path}: technique {technique.name!r}: {exc}") from None
    return spec


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, help="key=value override, as for `run`.")
@user_errors
def validate(recipes, overrides):
    """Check RECIPES: schema, names, task data and model resolution; no model is loaded."""
    for path in recipes:
        spec = _validated(path, overrides)
        kinds = ", ".join(f"{t.name} ({t.kind})" for t in spec.techniques)
        console.print(f"[green]ok[/] {path}: {spec.model.id} on {spec.task}; {kinds}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@user_errors
def report(run_dir):
    """Re-render the table and REPORT.md of RUN_DIR from its stored results."""
    from harness.report import terminal_table, write_markdown
    from harness.results import RunStore

    store = RunStore.open(run_dir)
    write_markdown(store)
    console.print(terminal_table(store))
    console.print(f"report: {store.run_dir / 'REPORT.md'}")


@main.command()
def models():
    """List model aliases and random-init architectures, and where each resolves."""
    table = Table("spec", "resolves to", header_style="bold")
    for alias in ALIASES:
        table.add_row(alias, describe(alias))
    for arch in RANDOM_ARCHITECTURES:
        table.add_row(f"random:{arch}", "random-initialised (for benchmarks and smoke tests)")
    table.add_row("random:<path>/config.json", "random-initialised from that config")
    table.add_row("<dir> | <file>.gguf | <org>/<name>", "local directory, GGUF file, or hub id")
    console.print(table)


@main.command()
@user_errors
def tasks():
    """List bundled tasks with their sizes and metric."""
    from harness.tasks import list_task_dirs, load_task

    table = Table("task", "train", "test", "metric", "labels", "description", header_style="bold")
    for folder in list_task_dirs():
        task = load_task(str(folder))
        table.add_row(task.name, str(len(task.train)), str(len(task.test)), task.spec.metric,
                      str(len(task.labels)) if task.labels else "–", task.spec.description)
    console.print(table)


if __name__ == "__main__":
    main()
