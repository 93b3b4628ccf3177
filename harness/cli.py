"""Command line: harness run | validate | report | view | compare | check | calibrate | plan | models | tasks |
task | kinds | export | serve | loadtest."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import signal
import sys
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Every progress display is rich's; libraries' tqdm bars (weight loading, lm-eval requests) would tear
# the live table. tqdm reads TQDM_* defaults when it is imported, so this comes before any import of it.
os.environ.setdefault("TQDM_DISABLE", "1")

import click  # noqa: E402
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Only light modules here: `--help`, validate, report, compare, check, calibrate, tasks and models must not import torch
# or transformers (a CI runner for the gate has neither; tests/test_cli_light.py holds this). A command
# imports what it needs in its own body.
from harness.yamlconfig import ConfigError, ConfigWarning

if TYPE_CHECKING:  # the CLI stays light: config imports pydantic models only when a command needs them
    from harness.config import Recipe

console = Console()
SET_HELP = "An override, as a KEY=VALUE word after the recipe is (repeatable; applied after those words)."


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are user mistakes (imported when an exception is being handled, not at start)."""
    from harness.executors.base import ExecutorError
    from harness.models import ModelResolutionError

    return ConfigError, ModelResolutionError, FileNotFoundError, ExecutorError


def user_errors(command):
    """Turn known user mistakes into a one-paragraph message and exit code 2, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except user_error_types() as exc:  # evaluated only when an exception propagates
            # [brackets] are text; soft_wrap: one line per line of the message, whatever the terminal's width
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None, _python=warnings.showwarning):
    """A ConfigWarning (input that works, but likely not as meant) as one line; others as Python shows them."""
    if issubclass(category, ConfigWarning):
        console.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python(message, category, filename, lineno, file, line)


@main.command()
@click.argument("words", nargs=-1, metavar="RECIPE [KEY=VALUE]...")
@click.option("--set", "set_overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    help="Finish an interrupted run: skip cells already done.",
)
@click.option(
    "--jobs",
    "-j",
    default=None,
    type=click.IntRange(min=1),
    help="Cells run at once, each in its own process (on CUDA: at most one per visible GPU). "
    "Default: 1 locally; on ray/slurm executors, as many as the cluster fits.",
)
@user_errors
def run(words, set_overrides, resume_dir, jobs):
    """Run RECIPE (YAML), with optional KEY=VALUE overrides, e.g. seed=1 eval.heldout.limit=50."""
    from harness import pipeline
    from harness.config import load_recipe, stored_recipe
    from harness.report.terminal import verdict_lines
    from harness.results import open_runs, report_folder

    recipes, overrides = recipes_and_overrides(words, set_overrides)
    if len(recipes) > 1:
        raise click.UsageError(f"one RECIPE at a time (got {', '.join(recipes)}); `harness validate` takes several")
    recipe = recipes[0] if recipes else None
    if resume_dir:
        if recipe:
            raise click.UsageError("give a RECIPE file or --resume RUN_DIR, not both")
        if overrides:
            raise ConfigError("--resume reuses the stored recipe; overrides would mix settings within one run")
        stores = open_runs(resume_dir)
        meta = stores[0].meta
        spec = stored_recipe(meta["recipe"])
        if (Path(resume_dir) / "results.json").is_file() and len(spec.tasks) > 1:
            spec = spec.for_task(meta["task_ref"])  # one task's folder of a multi-task run
        run_dir, recipe = Path(resume_dir), meta.get("recipe_path")
    else:
        if not recipe:
            raise click.UsageError("give a RECIPE file, or --resume RUN_DIR")
        spec, run_dir = load_recipe(recipe, overrides), None  # pipeline.run starts with the pre-flight
    with stop_like_ctrl_c():
        stores = pipeline.run(spec, run_dir=run_dir, recipe_path=recipe, console=console, jobs=jobs)
    folder = report_folder(stores)
    for line in verdict_lines(stores):
        console.print(line, soft_wrap=True)
    console.print(f"results: {', '.join(str(s.results_path) for s in stores)}\nreport:  {folder / 'REPORT.md'}")
    if any(r["status"] == "failed" for s in stores for r in s.rows):
        console.print(
            "[red]some techniques failed[/]; reasons in REPORT.md, logs in "
            + ", ".join(str(s.run_dir / "logs") for s in stores)
        )
        sys.exit(1)


@contextlib.contextmanager
def stop_like_ctrl_c():
    """`kill` and a closed terminal stop a run as Ctrl-C does: the cells in flight are cancelled (a
    killed driver would leave them running) and finished cells stay on disk for --resume."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        names = []
    before = {name: signal.signal(getattr(signal, name), interrupt) for name in names}
    try:
        yield
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)


def recipes_and_overrides(words, set_overrides) -> tuple[list[str], list[str]]:
    """Split the words after `run` or `validate`: a word with '=' that names no file is a KEY=VALUE override
    (validate takes several recipes, so position cannot tell), the rest are recipes. Both commands split
    alike and hand the overrides to the same parser, so they accept and reject the same ones."""
    is_override = [("=" in word and not Path(word).is_file()) for word in words]
    recipes = [word for word, override in zip(words, is_override) if not override]
    return recipes, [word for word, override in zip(words, is_override) if override] + list(set_overrides)


def _validated(recipe_path: str, overrides) -> Recipe:
    """Parse the recipe and run the pre-flight checks (harness/preflight.py), loading no model."""
    from harness import preflight
    from harness.config import load_recipe

    spec = load_recipe(recipe_path, overrides)
    preflight.check(spec, recipe_path)
    return spec


IMPORT_PLUGINS = click.option(
    "--import-plugins",
    is_flag=True,
    help="Import the plugins the recipe or run names, which runs their code (docs/trust.md); "
    "without it they are only checked to exist, and what they register is unknown.",
)


@contextlib.contextmanager
def plugins_imported_if(asked: bool):
    """Run the block importing plugins only if `asked`; else a recipe's plugins are checked, not imported,
    and an error says so (a kind, executor or tracker a plugin registers is unknown without it)."""
    from harness import plugins

    if asked:
        yield
        return
    with plugins.not_imported() as skipped:
        try:
            yield
        except ConfigError as exc:
            if not skipped:
                raise
            raise ConfigError(
                f"{exc}\n(the plugins {', '.join(skipped)} were checked, not imported: what they register is "
                "unknown here; add --import-plugins to import them, which runs their code)"
            ) from None


@main.command()
@click.argument("words", nargs=-1, required=True, metavar="RECIPE... [KEY=VALUE]...")
@click.option("--set", "set_overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@IMPORT_PLUGINS
@user_errors
def validate(words, set_overrides, import_plugins):
    """Check each RECIPE, with optional KEY=VALUE overrides (as for `run`): schema, names, task data and
    model resolution; no model is loaded, and no code from the recipe runs unless --import-plugins."""
    from harness.tasks import task_label

    recipes, overrides = recipes_and_overrides(words, set_overrides)
    if not recipes:
        raise click.UsageError("give at least one RECIPE file (every KEY=VALUE word is an override)")
    for path in recipes:
        with plugins_imported_if(import_plugins):
            spec = _validated(path, overrides)
        kinds = ", ".join(f"{t.name} ({t.kind})" for t in spec.techniques)
        console.print(f"[green]ok[/] {path}: {spec.model.id} on {', '.join(map(task_label, spec.tasks))}; {kinds}")
        for note in _skipped_when_run(spec):
            console.print(f"  [yellow]skipped when run:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _skipped_when_run(spec: Recipe) -> list[str]:
    """Each technique that does not apply to one of the recipe's tasks, and why (its rows will say so)."""
    from harness import kinds
    from harness.tasks import load_task

    return [
        f"{technique.name} on {task.name}: {reason}"
        for task in map(load_task, spec.tasks)
        for technique in spec.techniques
        if (reason := kinds.inapplicable(technique, task, spec)) is not None
    ]


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md", "json", "csv", "pr"]),
    default="table",
    help="table: re-render REPORT.md and print the table(s); md/json/csv: print that format to stdout; "
    "pr: write PR.md (a short summary for a pull-request comment) and print it.",
)
@click.option(
    "--link",
    default=None,
    help="With --format pr: where its REPORT.md link points (e.g. a CI artifact's URL); default: the report's path.",
)
@IMPORT_PLUGINS
@user_errors
def report(run_dir, fmt, link, import_plugins):
    """Re-render REPORT.md, plots and exports of RUN_DIR from its stored results, or print it as md/json/csv/pr."""
    with plugins_imported_if(import_plugins):
        _report(run_dir, fmt, link)


def _report(run_dir, fmt, link):
    from harness.report import render, terminal_table, write_report
    from harness.report.pr import write_pr
    from harness.report.terminal import verdict_lines
    from harness.results import open_runs, report_folder

    stores = open_runs(run_dir)
    folder = report_folder(stores)
    if fmt == "pr":
        click.echo(write_pr(stores, folder, link)[1], nl=False)
        return
    if fmt != "table":
        click.echo(render(stores, fmt, folder), nl=False)
        return
    path = write_report(stores, folder)
    for store in stores:
        console.print(terminal_table(store))
    for line in verdict_lines(stores):
        console.print(line, soft_wrap=True)
    console.print(f"report: {path}")


@main.command()
@click.argument("run_a", type=click.Path(exists=True))
@click.argument("run_b", type=click.Path(exists=True))
@user_errors
def compare(run_a, run_b):
    """Side-by-side deltas per technique and metric (B - A), with a paired test on the score (McNemar
    under a 0/1 metric, Wilcoxon under a continuous one) where both runs scored the same examples."""
    from harness.report.compare_table import compare_table

    console.print(compare_table(run_a, run_b))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; open no browser.")
@user_errors
def view(runs, port, no_browser):
    """Serve the runs' REPORT.html (written first where missing) on 127.0.0.1 and open it in a browser;
    several runs: an index page linking each, with `harness compare`'s deltas for two. Ctrl-C stops."""
    from harness.report.serve import serve

    server, url = serve(list(runs), port)
    console.print(f"serving {url} (Ctrl-C to stop)", soft_wrap=True)
    if not no_browser and _has_display():
        import webbrowser

        webbrowser.open(url)
    try:
        wait_for_ctrl_c()
    finally:
        server.shutdown()
        server.server_close()


def wait_for_ctrl_c() -> None:
    """Block until Ctrl-C (a server runs in its own thread meanwhile)."""
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _has_display() -> bool:
    """A graphical browser can open: without a display, Python's webbrowser falls back to a text browser
    (lynx, w3m) that would take over this terminal."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ThresholdCommand(click.Command):
    """`--max-increase peak_memory_bytes=10% cost_usd=20%`: the METRIC=AMOUNT words that follow a threshold
    flag's value belong to that flag too (click gives an option one value per flag)."""

    FLAGS = ("--max-drop", "--max-increase")

    def parse_args(self, ctx, args):
        spread, flag, value_next = [], None, False
        for token in args:
            if value_next:  # the flag's own value
                spread.append(token)
                value_next = False
            elif token in self.FLAGS:
                flag, value_next = token, True
                spread.append(token)
            elif flag and not token.startswith("-") and re.match(r"^[A-Za-z_][\w:.-]*=", token):
                spread += [flag, token]  # one more METRIC=AMOUNT for the same flag
            else:
                flag = token.split("=")[0] if token.split("=")[0] in self.FLAGS else None  # --max-drop=score=0.02
                spread.append(token)
        return super().parse_args(ctx, spread)


@main.command(cls=ThresholdCommand)
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--baseline", required=True, type=click.Path(exists=True), help="A committed results.json or run folder.")
@click.option(
    "--max-drop",
    multiple=True,
    help="METRIC=AMOUNT or METRIC=N% (several after one flag, or the flag "
    "repeated): how far a figure may fall, e.g. score=0.02.",
)
@click.option(
    "--max-increase",
    multiple=True,
    help="METRIC=N% or METRIC=AMOUNT (several after one flag, or the flag "
    "repeated): how far it may rise, e.g. peak_memory_bytes=10% cost_usd=20%.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="A score drop over its threshold fails only when the paired test on the same examples gives "
    "p < ALPHA (default: the recipe's check.alpha, else 0.05).",
)
@click.option(
    "--significance/--no-significance",
    default=None,
    help="--no-significance: a score drop over its threshold fails whatever the paired test says.",
)
@click.option(
    "--noise-from",
    "noise_from",
    multiple=True,
    type=click.Path(exists=True),
    help="A repeated run of the baseline's recipe (give 2 or more): `harness calibrate`'s thresholds "
    "for every figure no --max-drop/--max-increase (or recipe check:) names.",
)
@user_errors
def check(run_dir, baseline, max_drop, max_increase, alpha, significance, noise_from):
    """CI gate: exit 0 when RUN_DIR is within thresholds of BASELINE, else 1 with a table of regressions.

    Thresholds come from the flags, else the recipe's `check:` section, then --noise-from's measured
    spread, else score=0.02. A score drop over its threshold fails only when significant (p < alpha)."""
    from harness import calibrate, gate
    from harness.results import open_runs

    meta = open_runs(run_dir)[0].meta
    noise = calibrate.noise_thresholds(noise_from, baseline) if noise_from else ([], [])
    drops, rises = gate.thresholds_from(meta, max_drop, max_increase, noise)
    alpha = gate.alpha_from(meta, alpha, significance)
    outcomes, checked = gate.check(run_dir, baseline, drops, rises, alpha)
    rules = ", ".join([f"{t.metric} may drop {t}" for t in drops] + [f"{t.metric} may rise {t}" for t in rises])
    rules += f"; a score drop over its threshold must be significant, p < {alpha:g}" if alpha else ""
    failed = [o for o in outcomes if o.failed]
    console.print(f"thresholds: {rules}", soft_wrap=True)
    fixed = gate.load_dependent([t for t in [*drops, *rises] if t not in [*noise[0], *noise[1]]])
    if fixed:  # opted in, but not measured: say what it risks
        console.print(
            f"[yellow]note:[/] {', '.join(fixed)}: time and cost move with the machine's load (a re-run of one "
            "commit on a shared CPU can take twice as long), so a fixed threshold may fail an unchanged commit; "
            "measure their spread with `harness calibrate` and use its thresholds (or --noise-from)",
            soft_wrap=True,
        )
    _print_wide(_outcome_table(outcomes, f"{len(failed)} regression(s)" if failed else "no regression"))
    if failed:
        sys.exit(1)
    console.print(f"[green]check passed[/]: {checked} technique(s) within thresholds")


def _outcome_table(outcomes, title: str) -> Table:
    from harness import figures

    table = Table(
        "task", "technique", "metric", "baseline", "run", "threshold", "p", "", "why", header_style="bold", title=title
    )
    for o in outcomes:
        figure = figures.get(o.metric)
        show = figure.format if figure else _figure
        verdict = "[red]FAIL[/]" if o.failed else "[green]pass[/]"
        p = "–" if o.p_value is None else f"{o.p_value:.2g}"
        table.add_row(
            o.task, o.technique, o.metric, show(o.baseline), show(o.value), o.threshold, p, verdict, escape(o.reason)
        )
    return table


def _print_wide(table: Table) -> None:
    """A table at the terminal's width, or 200 columns in a CI log (rich's default 80 would fold every
    reason over several lines, and a log does not wrap)."""
    (console if console.is_terminal else Console(width=200)).print(table)


def _figure(value) -> str:
    return "–" if value is None else f"{value:.4g}"


@main.command()
@click.argument("runs", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--write", "write_to", type=click.Path(dir_okay=False), help="Also write the `check:` block to this file."
)
@user_errors
def calibrate(runs, write_to):
    """Measure the spread of repeated runs of one recipe (other seeds, other machines) and suggest
    `check:` thresholds from it: per task, technique and figure the mean, std and range, then a
    ready-to-paste `check:` block (`harness check --noise-from RUN...` uses it directly)."""
    from harness import calibrate as noise
    from harness.results import write_atomic

    found = noise.spreads(runs)
    table = Table(
        "task",
        "technique",
        "metric",
        "runs",
        "mean",
        "std",
        "min – max",
        "allowance",
        header_style="bold",
        title=f"run-to-run spread over {len(runs)} runs",
    )
    for spread in found:
        table.add_row(*_spread_row(spread))
    _print_wide(table)
    block = noise.check_block(noise.suggest(found), len(runs))
    click.echo(block, nl=False)
    if write_to:
        write_atomic(Path(write_to), block)
        console.print(f"written: {write_to}")


def _spread_row(spread) -> list[str]:
    from harness import figures

    figure = figures.get(spread.metric)
    show = figure.format if figure else (lambda value: f"{value:.4g}")  # lm-eval columns have no entry
    allowance = spread.allowance()
    shown = f"{allowance:.1%}" if spread.relative else f"{allowance:.3f}"
    values = spread.values
    return [
        spread.task,
        spread.technique,
        spread.metric,
        str(len(values)),
        show(spread.mean),
        show(spread.std),
        f"{show(min(values))} – {show(max(values))}",
        "– (0 in some runs only)" if math.isinf(allowance) else shown,
    ]


PLAN_KINDS = ("full", "lora", "qlora")


@main.command()
@click.argument("words", nargs=-1, metavar="[RECIPE] [KEY=VALUE]...")
@click.option("--set", "set_overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option(
    "--model",
    "model_id",
    help="Plan for a model without a recipe: an alias, a local directory, a config.json, a cached hub id or "
    "random:<arch>.",
)
@click.option(
    "--gpus",
    help="The GPUs of each node to plan for, COUNTxSIZE, e.g. 8x80GB (default: this machine's GPUs, else its RAM).",
)
@click.option(
    "--kind",
    "kind_names",
    multiple=True,
    help=f"With --model: a trained kind to plan (repeatable; default: {', '.join(PLAN_KINDS)}).",
)
@click.option("--strategy", type=click.Choice(["ddp", "fsdp", "deepspeed"]), help="train.distributed.strategy")
@click.option("--processes", type=click.IntRange(min=1), help="train.distributed.processes (per node)")
@click.option("--nodes", type=click.IntRange(min=1), help="train.distributed.nodes")
@click.option("--zero-stage", type=click.Choice(["2", "3"]), help="train.distributed.zero_stage (deepspeed)")
@click.option("--offload", type=click.Choice(["none", "cpu"]), help="train.distributed.offload")
@click.option("--batch-size", type=click.IntRange(min=1), help="train.batch_size")
@click.option("--max-length", type=click.IntRange(min=8), help="train.max_length")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="train.gradient_checkpointing")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp16", "fp32"]), help="train.precision")
@click.option(
    "--device",
    "device_kind",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="With --model: the device.",
)
@user_errors
def plan(words, set_overrides, model_id, gpus, kind_names, device_kind, **train_flags):
    """Will it fit? Peak memory per device of each trained technique of RECIPE (or of --model), from the
    model's config alone (no weights loaded), with the smallest change that makes one fit; and for a
    recipe, its cells, training tokens and an estimated time. The train.* flags apply to every trained
    technique, e.g. `harness plan --model cfg.json --gpus 8x80GB --kind full --strategy fsdp --processes 8`."""
    from harness import planner
    from harness.config import load_recipe
    from harness.report.plan_table import plan_tables

    recipes, overrides = recipes_and_overrides(words, set_overrides)
    if (len(recipes) == 1) == bool(model_id) or len(recipes) > 1:
        raise click.UsageError("give one RECIPE, or --model MODEL (with --kind, --gpus, ...)")
    if model_id and overrides:
        raise click.UsageError("KEY=VALUE overrides apply to a RECIPE; with --model use the flags (--batch-size, ...)")
    if recipes and (kind_names or device_kind):
        raise click.UsageError("--kind and --device go with --model; a recipe names its techniques and device")
    if recipes:
        recipe = load_recipe(recipes[0], overrides)
        recipe = recipe.model_copy(update={"techniques": [_plan_flags(t, train_flags) for t in recipe.techniques]})
        plans = planner.plan_recipe(recipe, gpus)
    else:
        specs = [_plan_flags(_bare_technique(name), train_flags) for name in kind_names or PLAN_KINDS]
        plans = [planner.plan_model(model_id, specs, gpus, device_kind or "auto")]
    for found in plans:
        for table in plan_tables(found):
            _print_wide(table)
        for line in found.techniques:
            if line.fits is False:
                fix = f"; smallest change that fits: {line.suggestion}" if line.suggested is not None else ""
                console.print(f"[bold red]does not fit[/]: {line.technique}{fix}", soft_wrap=True)


def _bare_technique(kind: str):
    from harness import kinds

    if not kinds.trained(kind):
        trained = [k for k in kinds.known() if kinds.trained(k)]
        raise click.UsageError(f"--kind {kind!r} is not a trained kind; plan one of: {', '.join(trained)}")
    if kind == "peft":
        raise click.UsageError("--kind peft needs a method and its settings: plan it through a recipe")
    settings: Any = kinds.get(kind).settings  # a pydantic model (kinds.Kind.settings is typed `type`)
    return settings.model_validate({"name": kind, "kind": kind})


def _plan_flags(spec, flags: dict):
    """A trained technique with the command line's train.* flags applied (others unchanged)."""
    from pydantic import ValidationError

    from harness import kinds, planner

    if not kinds.trained(spec.kind):
        return spec
    train = {
        k: v for k in ("batch_size", "max_length", "gradient_checkpointing", "precision") if (v := flags[k]) is not None
    }
    distributed = {k: v for k in ("strategy", "processes", "nodes", "offload") if (v := flags[k]) is not None} | (
        {"zero_stage": int(flags["zero_stage"])} if flags["zero_stage"] else {}
    )
    try:
        if train:
            spec = spec.model_copy(update={"train": type(spec.train).model_validate(spec.train.model_dump() | train)})
        if distributed:
            spec = planner.with_distributed(spec, **distributed)
    except ValidationError as exc:
        raise click.UsageError(f"{spec.name}: {exc.errors()[0]['msg']}") from None
    return spec


@main.command()
def models():
    """List model aliases and random-init architectures, and where each resolves."""
    from harness.models import ALIASES, RANDOM_ARCHITECTURES, describe

    # Not a table: a table cell cuts or breaks a long path, and these paths are here to be copied whole.
    # soft_wrap: each line is printed in full, whatever the terminal's width (the terminal wraps it).
    entries = [(alias, describe(alias)) for alias in ALIASES]
    entries += [
        (f"random:{arch}", "random-initialised (for benchmarks and smoke tests)") for arch in RANDOM_ARCHITECTURES
    ]
    entries += [
        ("random:<path>/config.json", "random-initialised from that config"),
        ("<dir> | <file>.gguf | <org>/<name>", "local directory, GGUF file, or hub id"),
    ]
    for spec, resolution in entries:
        console.print(f"[bold]{escape(spec)}[/]", highlight=False, soft_wrap=True)
        for line in resolution.splitlines():
            console.print(f"  {escape(line.strip())}", highlight=False, soft_wrap=True)


@main.command()
@user_errors
def tasks():
    """List bundled tasks with their sizes and metric, then the bundled lm-eval tasks."""
    from harness.evaluate.lmeval_tasks import bundled_lm_eval_tasks
    from harness.tasks import list_task_dirs, load_task

    table = Table(
        "task", "train", "test", "metric", "labels", "description", header_style="bold", title="held-out tasks"
    )
    for folder in list_task_dirs():
        task = load_task(str(folder))
        table.add_row(
            task.name,
            str(len(task.train)),
            str(len(task.test)),
            task.spec.metric,
            str(len(task.labels)) if task.labels else "–",
            task.spec.description,
        )
    console.print(table)
    lm_eval = Table(
        "lm-eval task",
        "docs",
        "metrics",
        "what it measures",
        header_style="bold",
        title="lm-eval tasks (a recipe's eval.lm_eval.tasks)",
    )
    for found in bundled_lm_eval_tasks():
        lm_eval.add_row(
            found.name, "–" if found.docs is None else str(found.docs), ", ".join(found.metrics), found.description
        )
    console.print(lm_eval)


@main.group()
def task():
    """Make and check a task folder: `task init` writes one from a data file, `task check` vets one."""


@task.command("init")
@click.argument("source")
@click.option("--name", required=True, help="The task's name (also its folder's, under tasks/, without --out).")
@click.option("--out", type=click.Path(file_okay=False), help="The folder to write (default: tasks/NAME).")
@click.option(
    "--test",
    "test_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A separate test file (default: 20%% of SOURCE held out).",
)
@click.option("--config", help="With a dataset: its configuration (subset), when it has several.")
@user_errors
def task_init(source, name, out, test_file, config):
    """Write a task folder from SOURCE: a .jsonl, .json, .csv or .parquet file, a dataset folder (hub-shaped
    data files or save_to_disk's output), or a hub dataset id. The data is copied in (a hub id is named), and
    task.yaml's fields, labels, metric and prompt are inferred from the records, each choice commented."""
    from harness.task_init import init_from_dataset, init_from_file, summary

    out_folder = Path(out) if out else None
    if Path(source).is_file():
        folder = init_from_file(Path(source), name, out_folder, Path(test_file) if test_file else None)
    elif Path(source).suffix in {".jsonl", ".json", ".csv", ".parquet"}:
        raise ConfigError(f"{Path(source).resolve()} not found; fix: give the data file's path")
    elif test_file:
        raise ConfigError(f"--test goes with a data file; {source} is a dataset: its `test` split is used")
    else:
        folder = init_from_dataset(source, name, out_folder, config)
    for line in summary(folder):
        console.print(escape(line), highlight=False, soft_wrap=True)


@task.command("check")
@click.argument("task_ref", metavar="TASK")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False), help="Check under this recipe's settings.")
@user_errors
def task_check(task_ref, recipe):
    """Sizes, empty and repeated records, labels, token lengths against train.max_length, and leakage
    between the splits of TASK (a folder or a bundled name), under RECIPE's settings (its validation split,
    model's tokenizer, max lengths and eval.leakage threshold) or the defaults. No model is loaded."""
    from harness import task_check as checking
    from harness.config import load_recipe

    facts = checking.check(task_ref, load_recipe(recipe) if recipe else None)
    for part in checking.render(facts):
        if isinstance(part, str):
            console.print(part, soft_wrap=True)
        else:
            _print_wide(part)


@main.command()
def kinds():
    """List the technique kinds a recipe may use (plugins add more), the executors, trackers, metrics and
    retrievers."""
    from harness import executors, metrics, tracking
    from harness import kinds as registry
    from harness.retrieval import RETRIEVERS

    table = Table("kind", "trains", "reads base model", "default lr", "description", header_style="bold")
    for name in registry.known():
        kind = registry.get(name)
        table.add_row(
            name,
            "yes" if kind.trained else "–",
            "yes" if kind.reads_base_model else "–",
            f"{kind.default_learning_rate:g}" if kind.default_learning_rate else "–",
            kind.description,
        )
    console.print(table)
    executor_table = Table("executor.kind", "description", header_style="bold")
    for name in executors.known():
        executor_table.add_row(name, executors.get(name).description)
    console.print(executor_table)
    tracker_table = Table("tracking:", "needs", "description", header_style="bold")
    for name in tracking.known():
        backend = tracking.get(name)
        tracker_table.add_row(name, " or ".join(backend.modules), backend.description)
    console.print(tracker_table)
    console.print("metrics: " + ", ".join(metrics.METRICS.in_order()))
    console.print("retrievers: " + ", ".join(RETRIEVERS.in_order()))


# --- deploying a technique (harness/deploy/: docs/deploy.md) --------------------------------------------

RUN_ARGUMENT = click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
TECHNIQUE_OPTION = click.option("--technique", "-t", required=True, help="The technique of the run, by its name.")


@main.command("export")
@RUN_ARGUMENT
@click.argument("out", metavar="OUT", type=click.Path(file_okay=False))
@TECHNIQUE_OPTION
@click.option(
    "--to",
    "to",
    type=click.Choice(["adapter", "merged", "gguf"]),
    default="merged",
    show_default=True,
    help="adapter: what the technique adds to its base model (peft adapter; a prompt's shots, RAG's passages); "
    "merged: a standalone HF model folder; gguf: for llama.cpp/Ollama (needs llama.cpp's converter).",
)
@click.option(
    "--score",
    is_flag=True,
    help="Score the export on the held-out split, loaded as a user loads it, as a row TECHNIQUE@FORMAT of RUN "
    "with the paired comparison against the technique in memory.",
)
@user_errors
def export(run_dir, out, technique, to, score):
    """Export TECHNIQUE of the finished run RUN as a deployable artifact into the folder OUT."""
    from harness.deploy.export import export as write

    exported = write(run_dir, technique, to, out)
    console.print(f"exported {technique} ({to}) to {exported.folder}: {', '.join(exported.files)}")
    if score:
        from harness.deploy.score import score_export
        from harness.report import write_report
        from harness.results import open_runs

        row, source = score_export(run_dir, technique, exported.folder, to)
        diff, p = row.get("export_score_diff"), row.get("export_p_value")
        console.print(
            f"{row['technique']}: {row['metric']} {row['score']:.3f} against {source['score']:.3f} in memory"
            + (
                f" (paired difference {diff:+.3f}, 95% CI [{row['export_diff_ci_low']:+.3f}, "
                f"{row['export_diff_ci_high']:+.3f}], p={p:.3g})"
                if diff is not None
                else ""
            )
            + f"; {row['export_answers_changed']} of {row['n_eval']} answers changed"
        )
        console.print(f"report: {write_report(open_runs(run_dir), Path(run_dir))}")


@main.command()
@RUN_ARGUMENT
@TECHNIQUE_OPTION
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option(
    "--max-batch", type=click.IntRange(min=1), help="Largest batch of concurrent requests (recipe serving.max_batch)."
)
@click.option(
    "--batch-wait-ms", type=click.FloatRange(min=0), help="How long a batch collects requests (serving.batch_wait_ms)."
)
@click.option(
    "--engine", is_flag=True, help="Launch the recipe's serving.engine command instead of the built-in server."
)
@user_errors
def serve(run_dir, technique, port, max_batch, batch_wait_ms, engine):
    """Serve TECHNIQUE of the finished run RUN at http://127.0.0.1:PORT/v1 (OpenAI chat completions) until Ctrl-C."""
    from harness.deploy import loader, server

    serving = loader.stored_serving(run_dir)
    if engine:
        if serving.engine is None:
            raise ConfigError(f"{run_dir}: the run's recipe has no serving.engine; serve without --engine")
        template, values, ready = server.engine_command(run_dir, technique, serving)
        with stop_like_ctrl_c(), contextlib.suppress(KeyboardInterrupt):
            with server.launched(template, values, Path(run_dir) / "logs" / f"serve-{technique}.log", ready) as up:
                console.print(f"serving {technique} at {up.base_url} (engine; log {up.log}); Ctrl-C stops")
                up.process.wait()
        return
    served = loader.load(run_dir, technique)
    wait_ms = batch_wait_ms if batch_wait_ms is not None else serving.batch_wait_ms
    try:
        chat = server.ChatServer(served, port, max_batch or serving.max_batch, wait_ms)
    except OSError as exc:  # the port is taken, or not ours to bind
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port") from None
    console.print(f"serving {technique} at {chat.url} (POST /chat/completions, GET /models); Ctrl-C stops")
    with stop_like_ctrl_c(), contextlib.suppress(KeyboardInterrupt):
        chat.serve_forever()


@main.command("serve-finetune")
@click.option("--base", required=True, help="The model jobs fine-tune: an alias, local folder or hub id.")
@click.option("--name", help="The base model's name in the API (a job's `model`); default: --base.")
@click.option("--dtype", default="auto", show_default=True, help="Serving dtype (model.dtype); weights train in fp32.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1; auto: cuda where present.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--api-key-env", help="Environment variable holding the key clients must send; default: no key.")
@click.option("--train", "train_json", default="{}", help='A recipe train: as JSON, e.g. {"max_steps": 50}.')
@click.option("--lora", "lora_json", default="{}", help='A recipe lora: as JSON, e.g. {"rank": 8}.')
@click.option("--learning-rate", default=2e-4, show_default=True, type=float, help="x a job's LR multiplier.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), help="Where trained adapters are saved.")
@user_errors
def serve_finetune(base, name, dtype, device, port, api_key_env, train_json, lora_json, learning_rate, work_dir):
    """Serve the OpenAI fine-tuning API at http://127.0.0.1:PORT/v1: uploaded JSONL chat files train LoRA
    adapters of --base with the harness's own training, each then served under its fine_tuned_model."""
    import json

    from harness.config import ModelSpec, TrainSettings
    from harness.deploy.finetune_api import FineTuneServer, required_key
    from harness.techniques.finetune import LoraSettings
    from harness.yamlconfig import validate

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings: dict[str, Any] = {}
    for flag, text, model in (("--train", train_json, TrainSettings), ("--lora", lora_json, LoraSettings)):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{flag} is not JSON: {exc}") from None
        settings[flag] = validate(data, model, source=flag)
    try:
        server = FineTuneServer(
            validate({"id": base, "dtype": dtype}, ModelSpec, source="--base/--dtype"),
            name=name,
            device=device,
            port=port,
            key=None if api_key_env is None else required_key(api_key_env),
            train=settings["--train"],
            lora=settings["--lora"],
            learning_rate=learning_rate,
            work_dir=work_dir,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port") from None
    console.print(f"fine-tuning API for {server.name} at {server.url} (files, fine_tuning/jobs, chat/completions)")
    with stop_like_ctrl_c(), contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@main.command()
@RUN_ARGUMENT
@click.option("--technique", "-t", "techniques", multiple=True, help="Only this technique (repeatable); default: all.")
@click.option("--concurrency", help="Levels, comma-separated, e.g. 1,4,16 (default: the recipe's eval.serving).")
@click.option("--requests", type=click.IntRange(min=1), help="Requests per level (default: eval.serving.requests).")
@user_errors
def loadtest(run_dir, techniques, concurrency, requests):
    """Serve each finished technique of RUN and send it held-out prompts at each concurrency: requests/s,
    tokens/s, latency and time to first token p50/p95 per level into its row; its cost per request from
    served throughput."""
    from harness.deploy import loadtest as load_testing
    from harness.figures import fmt_seconds
    from harness.report import write_report
    from harness.results import open_runs

    levels = [int(level) for level in concurrency.split(",")] if concurrency else None
    load = load_testing.stored_load(run_dir, levels, requests)
    headers = ("technique", "concurrency", "requests/s", "tokens/s", "p50", "p95", "TTFT p50", "TTFT p95")
    table = Table(*headers, header_style="bold")

    def show(technique, level):
        console.print(f"{technique}: concurrency {level['concurrency']}: {level['requests_per_second']:.2f} requests/s")
        table.add_row(
            technique,
            str(level["concurrency"]),
            f"{level['requests_per_second']:.2f}",
            f"{level['tokens_per_second']:.1f}",
            *(
                fmt_seconds(level.get(f"{what}_seconds"))
                for what in ("latency_p50", "latency_p95", "ttft_p50", "ttft_p95")
            ),
        )

    rows = load_testing.load_test_run(run_dir, list(techniques) or None, load, show)
    console.print(table)
    for row in rows:
        console.print(f"{row['technique']}: cost per request {row['serving_cost_basis']}", soft_wrap=True)
    stores = open_runs(run_dir)
    console.print(f"report: {write_report(stores, stores[0].run_dir)}")
    failed = [row for row in rows if row.get("serving_error")]
    for row in failed:
        console.print(f"[red]{row['technique']}: load test stopped[/]: {escape(row['serving_error'])}", soft_wrap=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
