"""A worker process: `python -m harness.worker JOB_FILE` runs one job's cells and writes each cell's
result file (cells/<cell id>.json) atomically as it finishes.

A job is one or more cells that share this process: base-model readers (prompt, rag) share one
loaded model; every other cell runs alone, so its memory peak, crash or OOM kill is its own. The
worker never writes results.json: the driver (pipeline.py) merges the cell files.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from harness import measure

if TYPE_CHECKING:
    from harness.rows import Row

# Progress goes to the job's log as plain lines (the driver shows the latest); tqdm bars would flood it.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAULT_ENV = "HARNESS_FAULT_KILL_CELL"  # fault injection for tests: the cell of this id SIGKILLs its process
# fault injection for tests: the cell of this id waits at its start until <run>/faults/<cell id>.release
# exists, so that a test can kill its process (a lost cluster worker) while the cell runs
HOLD_ENV = "HARNESS_FAULT_HOLD_CELL"
HOLD_SECONDS = 300


class LineProgress:
    """The part of rich's Progress API the techniques use, printed as one line per change (at most one
    a second per bar) so the driver can show the latest line of each running job's log."""

    def __init__(self, stream=sys.stdout, interval: float = 1.0):
        self.stream, self.interval = stream, interval
        self.bars: dict[int, dict] = {}
        self._next = 0

    def add_task(self, description: str, total: float | None = None, **_) -> int:
        self._next += 1
        self.bars[self._next] = {"description": description, "total": total, "completed": 0, "printed": 0.0}
        self._print(self._next, force=True)
        return self._next

    def update(
        self,
        job: int,
        completed: float | None = None,
        description: str | None = None,
        advance: float | None = None,
        **_,
    ) -> None:
        bar = self.bars[job]
        if completed is not None:
            bar["completed"] = completed
        if advance:
            bar["completed"] += advance
        if description is not None:
            bar["description"] = description
        self._print(job)

    def advance(self, job: int, amount: float = 1) -> None:
        self.update(job, advance=amount)

    def remove_task(self, job: int) -> None:
        self.bars.pop(job, None)

    def _print(self, job: int, force: bool = False) -> None:
        bar, now = self.bars[job], time.monotonic()
        if not force and now - bar["printed"] < self.interval:
            return
        bar["printed"] = now
        done = f" {bar['completed']:.0f}/{bar['total']:.0f}" if bar["total"] else ""
        print(f"[progress] {bar['description']}{done}", file=self.stream, flush=True)


def run_cell(spec, ctx) -> tuple[Row, list[dict]]:
    """One cell, never raising (but for Ctrl-C): a failure becomes a row with its reason."""
    from transformers import set_seed

    from harness import kinds
    from harness.analysis.ownership import energy_figures, run_costs
    from harness.evaluate.judge import judges
    from harness.rows import make_row, undeclared
    from harness.techniques import Outcome

    set_seed(ctx.recipe.seed)
    reason = kinds.inapplicable(spec, ctx.task, ctx.recipe)
    if reason is not None:  # does not apply to this task: skipped with the reason, which is no failure
        return make_row(spec.name, spec.kind, "skipped", error=reason, device=ctx.device), []
    start = time.perf_counter()
    try:
        outcome = kinds.get(spec.kind).run(spec, ctx)
        status, error = "ok", None
    except Exception as exc:  # noqa: BLE001 — any failure is recorded, the other cells still run
        outcome, status, error = Outcome({}), "failed", f"{type(exc).__name__}: {exc}"
        save_traceback(ctx.run_dir, ctx.cell.id)
    wall = time.perf_counter() - start
    values = dict(outcome.values)
    if (
        status == "ok" and judges(ctx) and kinds.generates(spec.kind)
    ):  # after the wall time: the judge's time is its own
        values |= judge(ctx, outcome.predictions, values.get("metric"))
    if status == "ok" and scored_by_reward_model(spec, ctx, outcome.predictions):  # likewise
        values |= reward_score(ctx, outcome.predictions)
    peaks = [values.get(k) for k in ("train_peak_memory_bytes", "eval_peak_memory_bytes", "lm_eval_peak_memory_bytes")]
    row = make_row(
        spec.name,
        spec.kind,
        status,
        **values,
        error=error,
        wall_seconds=wall,
        device=ctx.device,
        peak_memory_bytes=max((p for p in peaks if p is not None), default=None),
        model_load_seconds=ctx.shared.base_load_seconds,
    )
    if status == "ok":  # the run's cost less lm-eval, lm-eval's own line, training once, serving per request
        row |= run_costs(row, ctx.recipe.cost.usd_per_hour) | energy_figures(row, ctx.recipe.cost.usd_per_kwh)
    if status == "ok" and kinds.get(spec.kind).trained:  # the plan beside the measurement, checked by every run
        row |= planned(ctx, spec)
    unknown = undeclared(row)
    if unknown:  # a figure no report can label: the kind's file must declare it
        error = (
            f"kind {spec.kind!r} returned row keys that nothing declares: {', '.join(unknown)}; fix: list them "
            "in its Kind(figures=...) (numbers) or Kind(fields=...) (anything else)"
        )
        return make_row(spec.name, spec.kind, "failed", error=error, device=ctx.device), []
    return row, outcome.predictions


def follow(spec, ctx, node) -> None:
    """A node other than node 0 of a cell across machines: the cell's code up to training, its ranks'
    share of training, then nothing (distributed.NodeDone); a failure is logged here and named by node 0."""
    from harness import distributed, kinds

    if kinds.inapplicable(spec, ctx.task, ctx.recipe) is not None:
        return  # node 0 writes the skipped row
    try:
        kinds.get(spec.kind).run(spec, ctx)
    except distributed.NodeDone:
        print(f"[node {node.rank}] trained; node 0 evaluates the cell", flush=True)
    except Exception:  # noqa: BLE001 — node 0 writes the cell's failed row; this node's log keeps why
        save_traceback(ctx.run_dir, f"{ctx.cell.id}.node{node.rank}")


def planned(ctx, spec) -> dict:
    """The memory plan's estimate for this cell (harness/planner.py); none where the plan cannot read the
    model (a warning in the cell's log), since the measured row stands without it."""
    from harness import planner

    try:
        return planner.estimate_row(ctx.recipe, spec, ctx.device, ctx.task)
    except Exception as exc:  # noqa: BLE001 — an estimate must never cost a result
        print(f"[plan] no estimate for this cell: {type(exc).__name__}: {exc}", flush=True)
        return {}


def judge(ctx, predictions: list[dict], metric: str | None) -> dict:
    """The recipe's LLM judge on the cell's answers (evaluate/judge.judge_heldout), once the technique's
    own model is freed. A judge that fails leaves the technique's row ok, with `judge_error` saying why."""
    from harness.evaluate.judge import judge_heldout

    measure.release_memory()  # a trained model the runner dropped: gone before the judge loads
    try:
        return judge_heldout(ctx, predictions, metric)
    except Exception as exc:  # noqa: BLE001 — the technique's own results stand without the judge's
        save_traceback(ctx.run_dir, f"{ctx.cell.id}.judge")
        for prediction in predictions:  # no half-judged answers
            for key in ("judge_score", "judge_reason"):
                prediction.pop(key, None)
        return {"judge_error": f"{type(exc).__name__}: {exc}"}
    finally:
        ctx.shared.drop_judge()  # a judge is per cell: it must not sit in the next cell's memory peak


def scored_by_reward_model(spec, ctx, predictions: list[dict]) -> bool:
    """Whether `eval.reward_model` scores this cell's answers: a technique that answers, in the
    configuration its row reports (search trials and smaller learning-curve sizes are not scored)."""
    from harness import kinds

    return bool(ctx.recipe.eval.reward_model and predictions and kinds.generates(spec.kind) and ctx.final)


def reward_score(ctx, predictions: list[dict]) -> dict:
    """The recipe's reward model (eval.reward_model) on the cell's answers (evaluate/reward.reward_heldout).
    One that cannot (it failed, or errs here) leaves the technique's row ok, with `reward_error` saying why."""
    from harness.evaluate.reward import reward_heldout
    from harness.techniques.finetune import trained_source

    name = ctx.recipe.eval.reward_model
    measure.release_memory()
    try:
        return reward_heldout(ctx, name, trained_source(ctx, name, "eval.reward_model"), predictions)
    except Exception as exc:  # noqa: BLE001 — the technique's own results stand without the reward model's
        save_traceback(ctx.run_dir, f"{ctx.cell.id}.reward")
        for prediction in predictions:
            prediction.pop("reward_score", None)
        return {"reward_error": f"{type(exc).__name__}: {exc}"}


OBJECTIVE_FIGURES = {  # a search objective -> the validation row's figure it reads
    "validation_score": "score",
    "validation_loss": "validation_loss",
    "validation_macro_f1": "score_macro_f1",
}


def objective_value(cell, row) -> float | None:
    """A search trial's objective: its validation row's score, loss or macro-F1."""
    if cell.objective is None or row["status"] != "ok":
        return None
    return row.get(OBJECTIVE_FIGURES[cell.objective])


def trial_pruning(run_dir: Path, spec, cell):
    """The pruning callback of a validation-loss search trial (see search.pruning_callback), else None."""
    if cell.trial is None or cell.objective != "validation_loss" or not spec.search.pruning:
        return None
    from harness.search import pruning_callback

    return pruning_callback(run_dir, spec, cell.trial)


def save_traceback(run_dir: Path, name: str) -> None:
    """Appended, not written over: logs/<cell id>.log is also the job's own log when the cell ran alone,
    and its earlier lines (what the cell was doing when it failed) must stay."""
    path = Path(run_dir) / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with path.open("a") as log:
        log.write(traceback.format_exc())


def cell_spec(recipe, cell):
    """The technique's spec as this cell runs it: the cell's params applied, and its training-set size."""
    from harness.searchspace import apply_params

    spec = apply_params(recipe.technique(cell.technique), cell.params)
    if cell.train_size is not None:  # the first N train examples: subsets of one order nest
        spec = apply_params(spec, {"train.limit": min(cell.train_size, spec.train.limit or cell.train_size)})
    return spec


def hold(release: Path) -> None:
    print(f"[fault] holding until {release} exists", flush=True)
    deadline = time.monotonic() + HOLD_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def run_job(job: dict) -> None:
    from harness import datasources, distributed, tracking
    from harness.config import stored_recipe
    from harness.executors.base import train_ranks
    from harness.planning import Cell, cell_path, finished, read_result
    from harness.results import RunStore, to_json, write_atomic
    from harness.screening import as_screened
    from harness.tasks import load_task, with_validation
    from harness.techniques import RunContext
    from harness.techniques.base import Shared

    run_dir = Path(job["run_dir"])
    node = distributed.Node.current()  # set where a cell runs across machines: this process is one node of it
    meta = RunStore.open(run_dir).meta  # the driver's resolved recipe: every process runs the same one
    recipe = stored_recipe(meta["recipe"]).for_task(meta["task_ref"])
    # the test examples the driver excluded for leakage (eval.leakage: exclude), dropped here too
    task = as_screened(with_validation(load_task(meta["task_ref"]), recipe.eval.validation), meta.get("leakage"))
    datasources.check_unchanged(meta["task"].get("data") or {}, task.sources, str(run_dir))
    shared, progress = Shared(), LineProgress()
    ran = False
    for data in job["cells"]:
        cell = Cell.from_dict(data)
        if finished(read_result(run_dir, cell)):  # a retried job (its worker was lost) redoes nothing
            continue
        if ran:  # the cell before it in this process left garbage (a job's last cell leaves it to the exit)
            measure.release_memory()
        ran = True
        print(f"[cell] {cell.id} (pid {os.getpid()} on {platform.node()})", flush=True)
        if os.environ.get(FAULT_ENV) == cell.id:
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get(HOLD_ENV) == cell.id:
            hold(run_dir / "faults" / f"{cell.id}.release")
        spec = cell_spec(recipe, cell)
        pruning = trial_pruning(run_dir, spec, cell)
        ctx = RunContext(
            recipe=recipe.model_copy(update={"seed": cell.seed}),
            task=task,
            device=job["device"],
            run_dir=run_dir,
            progress=progress,
            cell=cell,
            shared=shared,
            callbacks=[pruning] if pruning else [],
            ranks=train_ranks(spec),
        )
        if node is not None and node.rank > 0:
            follow(spec, ctx, node)  # node 0 evaluates, tracks and writes the row
            continue
        try:
            with tracking.cell(recipe, meta, spec, cell) as tracked:  # trained cells: curves to the recipe's trackers
                row, predictions = run_cell(spec, ctx)
                tracked.finish(row)
        finally:
            if node is not None:
                distributed.close(node)  # the other nodes stop waiting for a rendezvous that will not come
        row |= {
            "objective": objective_value(cell, row),
            "executor": job.get("executor", "local"),
            "node": platform.node(),
        } | ({} if pruning is None else {"pruned": pruning.pruned})
        result = {"cell": cell.to_dict(), "row": row.as_dict(), "predictions": predictions}
        write_atomic(cell_path(run_dir, cell), to_json(result))


def preload() -> None:
    """Import what every cell needs (about 10 s of torch, transformers, peft, TRL): done once in the
    fork server, so each cell's fresh process starts in well under a second."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # offline kernel-fetch warning
    # What the runners import when a cell runs: the libraries themselves and the harness modules that
    # wrap them (the kind modules import these inside functions so that validation stays light).
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from sklearn.model_selection import train_test_split  # noqa: F401  (tasks.stratified_split: ~0.7 s a cell)
    from trl import SFTConfig, SFTTrainer  # noqa: F401  (trl loads its trainers lazily)

    import harness.techniques  # noqa: F401  (the kinds; light by design, so the heavy libraries come next)
    from harness import models, train  # noqa: F401
    from harness.evaluate import heldout, lmeval  # noqa: F401


def child_main(job: dict, log_path: str, env: dict[str, str]) -> None:
    """Entry point of a forked cell process: output to the job's log, the executor's environment, the job."""
    # appended: a job run again (resumed, or retried after its worker was lost) keeps the earlier attempt's lines
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log, stream.fileno())
    for key in [k for k in os.environ if k.startswith("HARNESS_") and k not in env]:
        del os.environ[key]  # the fork server's environment is from when it started; the driver's is now
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:  # the library is loaded already: tell it too
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    run_job(job)
    sys.stdout.flush()
    sys.stderr.flush()


def job_main(job: dict, log_path: str, env: dict[str, str]) -> None:
    """Entry point of a job on a cluster worker (Ray task, Slurm job): a fresh process, libraries not yet imported."""
    preload()
    child_main(job, log_path, env)


def node_main(job: dict, log_path: str, env: dict[str, str], node) -> None:
    """One node's process of a cell across machines (`node`: the distributed.Node a cluster executor made
    for it): the job as on one machine, with the node's place in its environment and a log of its own."""
    from harness.executors.base import node_log

    job_main(job, node_log(log_path, node.rank), env | node.env())


def main(argv: list[str]) -> int:
    preload()
    run_job(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
