"""run(recipe) -> results: the driver of a study. It plans cells (technique x seed x training-set size x
search trial), runs them through an executor (each in its own process), and merges their result files
into one stored row per technique; it never loads a model itself."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from harness import datasources, kinds, models, planning, preflight, report, screening, search, tracking
from harness.analysis import floor, leakage, ownership
from harness.config import ConfigError, Recipe, stored_recipe
from harness.executors import Job, JobEnd, last_lines, make_executor
from harness.measure import device_name
from harness.results import RunStore, to_json, write_atomic
from harness.rows import Row, make_row
from harness.tasks import TaskRef, heldout_examples, load_task, task_label, with_validation

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "lm_eval",
    "accelerate",
    "scikit-learn",
    "pandas",
    "optuna",
    "ray",
    "submitit",
)


def new_run_dir(recipe: Recipe) -> Path:
    """A fresh run folder, named by the time, created here: mkdir either makes it or fails, so two runs
    started in the same second (two processes, two threads) can never both take one name (and run every
    cell twice); the later one takes the name with the next free suffix."""
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = Path(recipe.executor.storage or recipe.output_dir) / recipe.name
    parent.mkdir(parents=True, exist_ok=True)
    suffix = 0
    while True:
        path = parent / (f"{run_id}-{suffix}" if suffix else run_id)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            suffix += 1


def run(
    recipe: Recipe,
    run_dir: Path | None = None,
    recipe_path: str | None = None,
    console: Console | None = None,
    jobs: int | None = None,
) -> list[RunStore]:
    """Run every cell not yet finished on each of the recipe's tasks (resuming when run_dir holds
    results). One task: results in run_dir; several: one sub-run per task, run_dir/<task>/, and a
    combined REPORT.md in run_dir. `jobs`: cells run at once (one process each; None: 1 locally, the
    cluster's capacity on ray/slurm)."""
    console = console or Console()
    preflight.check(recipe, recipe_path)  # before any folder is made: what cannot run fails here, fast
    prepared = prepare(recipe, console)
    with preflight.citing(recipe_path):
        preflight.check_lora_targets(recipe)  # reads the (prepared) model: after the light checks
    executor = make_executor(recipe, jobs)
    try:
        announce_plan(recipe, executor.device, console)
        run_dir = Path(run_dir) if run_dir else new_run_dir(recipe)
        if len(recipe.tasks) == 1:
            return [run_task(recipe, recipe.tasks[0], run_dir, recipe_path, executor, console, prepared=prepared)]
        stores = [
            run_task(
                recipe,
                task,
                task_run_dir(run_dir, task, folder),
                recipe_path,
                executor,
                console,
                run_id=run_dir.name,
                prepared=prepared,
            )
            for task, folder in planning.task_folders(recipe.tasks)
        ]
    finally:
        executor.shutdown()
    report.write_report(stores, run_dir)
    return stores


def task_run_dir(run_dir: Path, task_ref: TaskRef, folder: str) -> Path:
    """A task's folder in a multi-task run: its name (planning.task_folders); a run started before tasks
    were keyed by name keeps the folder it named after the task's path."""
    if not isinstance(task_ref, str):  # an inline task: newer than that
        return run_dir / folder
    legacy = run_dir / Path(task_ref).name
    if legacy.name != folder and (legacy / "results.json").is_file():
        if RunStore.open(legacy).meta.get("task_ref") == task_ref:
            return legacy
    return run_dir / folder


def prepare(recipe: Recipe, console: Console) -> list[dict]:
    """One-time work the cells would otherwise do first (converting a GGUF model, once per machine), done and
    timed here before any cell starts, so that no technique's wall time, cost or peak memory includes it;
    the run's meta (`prepared`) and REPORT.md say what was excluded. A cell on another machine that does not
    share this cache folder still converts its own copy."""
    judge = recipe.eval.judge.model if recipe.eval.judge else None
    done = []
    for model_id in dict.fromkeys([recipe.model.id, *([judge.id] if judge else [])]):
        step = models.prepare(model_id)  # announces itself (a spinner, or a line outside a terminal)
        if step is not None:
            console.print(
                f"prepared before the cells, in no technique's figures: {escape(step.step)} ({step.seconds:.1f}s; "
                f"cached in {models.cache_dir() / 'models'})",
                soft_wrap=True,
            )
            done.append(step.as_dict())
    return done


def announce_plan(recipe: Recipe, device: str, console: Console) -> None:
    """The memory and time plan (`harness plan`) before any cell starts, for a recipe that trains; a plan
    that cannot be made says why in one line, and the run goes on."""
    from harness import kinds

    if not any(kinds.trained(t.kind) for t in recipe.techniques):
        return
    try:
        from harness import planner
        from harness.report.plan_table import plan_tables

        plans = planner.plan_recipe(recipe, device=device.split(":")[0])
    except Exception as exc:  # noqa: BLE001 — an estimate; the run does not depend on it
        console.print(f"[yellow]no memory plan[/]: {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)
        return
    wide = console if console.is_terminal else Console(width=200, file=console.file)  # a log does not wrap
    for plan in plans:
        for table in plan_tables(plan):
            wide.print(table)
        for line in plan.techniques:
            if line.fits is False:
                fix = f"; smallest change that fits: {line.suggestion}" if line.suggested is not None else ""
                console.print(
                    f"[bold yellow]warning:[/] {line.technique} may not fit ({escape(plan.device_label)}){escape(fix)}",
                    soft_wrap=True,
                )


def run_task(
    full_recipe: Recipe,
    task_ref: TaskRef,
    run_dir: Path,
    recipe_path: str | None,
    executor,
    console: Console,
    run_id: str | None = None,
    prepared: list[dict] | None = None,
) -> RunStore:
    """One task's study: the floor, each technique's search on validation, then every technique's
    chosen configuration on test over seeds and training-set sizes; rows merge as cells finish."""
    recipe, device = full_recipe.for_task(task_ref), executor.device
    task = with_validation(load_task(task_ref), recipe.eval.validation)
    task, leaked = screening.screen(task, recipe.eval.leakage, recipe.eval.heldout.limit)
    if (run_dir / "results.json").is_file():
        store = RunStore.open(run_dir)
        if store.meta["task"]["name"] != task.name:  # its finished cells would pass for this task's
            raise ConfigError(
                f"{run_dir} holds the results of task {store.meta['task']['name']!r}, not of {task.name!r} "
                f"({task_label(task_ref)}): resume a run with `harness run --resume RUN_DIR`, or start a new one"
            )
        datasources.check_unchanged(store.meta["task"].get("data") or {}, task.sources, str(run_dir))
        store.meta["prepared"] = store.meta.get("prepared", []) + (prepared or [])  # a resume prepared again
    else:
        store = RunStore(run_dir, _meta(full_recipe, task_ref, recipe_path, run_id or run_dir.name, device, task))
        store.meta["prepared"] = prepared or []
    store.meta["leakage"] = leaked
    store.save()
    tracking.open_run(recipe, store)  # before any cell: the cells' processes attach to what it creates
    console.print(
        f"[bold]{recipe.name}[/]: {len(recipe.techniques)} technique(s) on {recipe.model.id} / "
        f"{task.name} ({len(task.train)} train, {len(task.validation)} validation, {len(task.test)} test) "
        f"on {device} ({recipe.executor.kind} executor), {len(recipe.run_seeds)} seed(s) -> {store.run_dir}"
    )
    announce_leakage(leaked, console)
    runner = CellRunner(store, executor, device, console)
    status = "KILLED"  # what the trackers record unless every wave ran
    try:
        with runner.display():
            if not store.finished(floor.name_for(task)):
                record_floor(store, task, recipe)
            # a technique with `init_from` waits for the wave that trains its starting model
            for wave in planning.waves(recipe.techniques, recipe.eval.reward_model):
                for spec in wave:  # selection first, on the validation split only
                    if spec.search is not None and kinds.inapplicable(spec, task, recipe) is None:
                        runner.searched[spec.name] = search.tune(spec, recipe, store.run_dir, runner.run, runner.jobs)
                for spec in wave:  # then each chosen configuration on test
                    summary = (
                        planning.search_summary(
                            [planning.cell_row(r) for r in runner.searched.get(spec.name, [])], spec.search.objective
                        )
                        if spec.search
                        else {}  # searched only what has `search:`
                    )
                    runner.planned[spec.name] = (
                        spec,
                        planning.test_cells(recipe, spec, summary.get("chosen") or {}),
                        summary,
                    )
                runner.run([c for spec in wave for c in runner.planned[spec.name][1]])
        runner.refresh()
        if recipe.eval.serving is not None:  # the load test (deploy/loadtest.py), once every row is merged
            load_test(store, console)
        status = "FINISHED"
    except KeyboardInterrupt:
        executor.shutdown()
        console.print(
            f"[yellow]interrupted[/]: finished cells are saved; continue with `harness run --resume {store.run_dir}`"
        )
        raise
    finally:
        runner.refresh()
        report.write_report([store])
        tracking.close_run(recipe, store, status)  # after REPORT.md: it is one of the logged files
    return store


def announce_leakage(leaked: dict, console: Console) -> None:
    """What leaked between the task's splits, and what eval.leakage did with it (REPORT.md says it too)."""
    found = leakage.sentences(leaked)
    if found:
        done = (
            f"excluded from every technique's test split: {len(leaked['excluded_ids'])}"
            if leaked["action"] == "exclude"
            else "scored (eval.leakage: warn; exclude drops them, error stops the run)"
        )
        console.print(f"[bold yellow]leakage:[/] {escape(' '.join(found))} {done}", soft_wrap=True)


def load_test(store: RunStore, console: Console) -> None:
    """eval.serving: each finished technique served here (where `harness run` runs) and load-tested."""
    from harness.deploy.loadtest import load_test_run

    def show(technique: str, level: dict) -> None:
        console.print(
            f"load test: {technique} at concurrency {level['concurrency']}: {level['requests_per_second']:.2f} "
            f"requests/s, p95 {level['latency_p95_seconds']:.2f}s"
        )

    for row in load_test_run(store.run_dir, on_level=show, store=store):
        if row.get("serving_error"):
            console.print(f"[yellow]load test of {row['technique']} stopped[/]: {escape(row['serving_error'])}")


def record_floor(store: RunStore, task, recipe: Recipe) -> None:
    """The task's floor row (the majority label, or the echoed input; analysis/floor.py): no model,
    computed by the driver itself."""
    name, values, predictions = floor.floor(
        task,
        list(heldout_examples(task, recipe.eval.heldout.limit)),
        recipe.run_seeds,
        recipe.eval.heldout.bootstrap_samples,
        recipe.seed,
    )
    store.record(make_row(name, floor.KIND, "ok", device="none", **values), predictions)


class CellRunner:
    """Runs cells through the executor (skipping finished ones), stores each result, and merges a
    technique's row as soon as all its planned test cells have finished."""

    def __init__(self, store: RunStore, executor, device: str, console: Console):
        self.store, self.executor, self.device, self.console = store, executor, device, console
        self.jobs = executor.jobs
        self.searched: dict[str, list[dict]] = {}  # technique -> its trial results
        self.planned: dict[str, tuple] = {}  # technique -> (spec, test cells, search summary)
        self.merged: set[str] = set()
        self.kinds = {t.name: t.kind for t in stored_recipe(store.meta["recipe"]).techniques}
        self.active: dict[str, tuple] = {}  # job id -> (job, start time)
        self.spinners: dict[str, Spinner] = {}  # job id -> its spinner, kept so that it turns rather than restarts
        self.live: Live | None = None
        self.table = report.terminal_table(store)  # redrawn when a job finishes, not on every tick

    def run(self, cells) -> list[dict]:
        """Each cell's result, in order; unfinished cells run (grouped into processes, see planning.job_groups)."""
        todo = [c for c in cells if not planning.finished(planning.read_result(self.store.run_dir, c))]
        kept = [c.id for c in cells if c not in todo]
        if kept:  # a resumed run says what it does not redo
            self.console.print(f"kept {len(kept)} finished cell(s): {escape(', '.join(kept))}", soft_wrap=True)
        for cell in todo:  # a failed attempt's file goes, so a crash now cannot leave its stale reason
            planning.cell_path(self.store.run_dir, cell).unlink(missing_ok=True)
        futures: dict = {}

        def submit(group) -> None:
            job = Job(self._job_id(group), group, self.store.run_dir, self.device)
            futures[self.executor.submit(job)] = job
            self.active[job.id] = (job, time.monotonic())

        for group in planning.job_groups(todo, self.kinds):
            submit(group)
        while futures:
            done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                rest = self._finish(futures.pop(future), future.result())
                if rest:  # cells queued behind a crashed one in a shared process get a fresh process
                    submit(rest)
            self._redraw()
        results = [planning.read_result(self.store.run_dir, c) for c in cells]
        stored = [r for r in results if r is not None]
        assert len(stored) == len(cells), "every cell of a finished job has a result (_finish writes a failed one)"
        return stored

    def _job_id(self, group) -> str:
        return group[0].id + (f"+{len(group) - 1}" if len(group) > 1 else "")

    def _finish(self, job: Job, end: JobEnd) -> list:
        """After a job's process ended: the cell it died in (cells run in order) gets a failed result with
        the reason; the cells after it are returned to run again; then rows are merged."""
        self.active.pop(job.id, None)
        self.spinners.pop(job.id, None)
        unfinished = [c for c in job.cells if planning.read_result(job.run_dir, c) is None]
        if unfinished:
            reason = end.reason or "worker process ended without writing this cell's result"
            row = make_row(
                unfinished[0].technique,
                self.kinds[unfinished[0].technique],
                "failed",
                error=reason,
                device=self.device,
                executor=self.executor.kind,
            )
            write_atomic(
                planning.cell_path(job.run_dir, unfinished[0]),
                to_json(
                    {"cell": unfinished[0].to_dict(), "row": row.as_dict() | {"objective": None}, "predictions": []}
                ),
            )
        self.refresh()
        return unfinished[1:]

    def refresh(self) -> None:
        """results.json from the cell files: every cell's row, and one merged row per technique whose
        planned test cells have all finished (merged once: a finished cell does not run again)."""
        results = [json.loads(p.read_text()) for p in sorted((self.store.run_dir / "cells").glob("*.json"))]
        by_id = {planning.Cell.from_dict(r["cell"]).id: r for r in results}
        self.store.cells = [Row.model_validate(planning.cell_row(r)) for r in results]
        loads = [r["row"].get("model_load_seconds") for r in results if r["row"].get("model_load_seconds")]
        if loads:
            self.store.meta["model_load_seconds"] = max(loads)
        seeds = self.store.meta.get("seeds") or [self.store.meta["seed"]]  # runs from before seeds existed
        for name, (spec, cells, summary) in self.planned.items():
            if name not in self.merged and all(c.id in by_id for c in cells):
                merged, predictions = planning.merge(spec, [by_id[c.id] for c in cells if c.main], seeds)
                sources = [name for _, name in kinds.sources(spec)]  # merged in an earlier wave
                row = ownership.with_starting_model(
                    merged, *(next((r for r in self.store.rows if r["technique"] == s), None) for s in sources)
                )
                self.store.record({**row, **summary}, predictions)
                self.merged.add(name)
        self.store.save()
        self.table = report.terminal_table(self.store)

    @contextmanager
    def display(self):
        with Live(self._view(), console=self.console, refresh_per_second=4) as live:
            self.live = live
            try:
                yield
            finally:
                self.live = None
        if not self.console.is_terminal:  # rich ends the last frame with a newline on terminals only (CI logs)
            self.console.line()

    def _redraw(self) -> None:
        if self.live is not None:
            self.live.update(self._view())

    def _view(self):
        """The table, then a spinner per running job with its log's latest `[...]` line (a model converting,
        a training step): a cell that goes quiet for a while still shows it is alive and what it does."""
        for job, started in self.active.values():
            latest = next((line for line in reversed(last_lines(job.log_path, 5)) if line.startswith("[")), "")
            text = f"[cyan]running[/] {job.id} ({time.monotonic() - started:.0f}s) {escape(latest.partition('] ')[2])}"
            self.spinners.setdefault(job.id, Spinner("dots")).update(text=Text.from_markup(text))
        return Group(self.table, *(self.spinners[job_id] for job_id in self.active))


def _meta(recipe: Recipe, task_ref: TaskRef, recipe_path: str | None, run_id: str, device: str, task) -> dict:
    return {
        "recipe": recipe.model_dump(mode="json"),  # all its tasks: `--resume` of the parent folder runs them all
        # this run's task, as the recipe names it (an inline task: its mapping)
        "task_ref": task_ref if isinstance(task_ref, str) else task_ref.model_dump(mode="json"),
        "recipe_path": recipe_path,
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": recipe.seed,
        "seeds": recipe.run_seeds,
        "device": device,
        "device_name": device_name(device),
        "task": {
            "name": task.name,
            "path": str(task.path) if task.path else None,  # None: given inline in the recipe
            "data": task.sources,  # each split's file, or dataset (id, config, revision, commit, fingerprint)
            "n_train": len(task.train),
            "n_validation": len(task.validation),
            "n_test": len(task.test),
            "metric": task.spec.metric,
            "labels": task.labels,
            "judge": task.spec.judge.model_dump() if task.spec.judge else None,
        },
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "git_commit": _git_commit(),
        "usd_per_hour": dict(recipe.cost.usd_per_hour),
        **({} if recipe.cost.usd_per_kwh is None else {"usd_per_kwh": recipe.cost.usd_per_kwh}),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
