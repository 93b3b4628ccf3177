"""The Slurm executor (`executor.kind: slurm`), through submitit: each job is a Slurm job (sbatch) that
runs the same entry point as a local cell process; `cluster: local` uses submitit's one-machine stand-in
(tests, dry runs).

The driver waits on each job from a thread; a job that ends without a result (node lost, preempted,
killed, out of memory, over its time limit) is submitted again up to `max_retries` times, and the
retry skips the cells its earlier attempt finished. A cell across machines (train.distributed.nodes > 1)
is one job of a task per node (harness/distributed.py does the rest). submitit's own files (sbatch script, pickles,
stdout/stderr) go to <run>/slurm/.
"""

from __future__ import annotations

import difflib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness import executors
from harness.executors.base import (
    ExecutorError,
    ExecutorSettings,
    Job,
    JobEnd,
    after_retries,
    cell_env,
    job_gpus,
    job_nodes,
    log_tail,
    rendezvous_file,
    require,
)

if TYPE_CHECKING:
    from submitit import Job as SubmititJob

CELLS_IN_FLIGHT = 8  # default cells asked of Slurm at once (search trials asked together) without --jobs


class SlurmSettings(ExecutorSettings):
    """pip install 'adapt-harness[slurm]', on a login node; the nodes must see the run folder (storage)."""

    kind: Literal["slurm"] = "slurm"
    partition: str | None = None
    account: str | None = None
    timeout_min: int = Field(240, ge=1)  # a cell's wall-clock limit on Slurm (and submitit's local cluster)
    mem_gb: float | None = Field(None, gt=0)
    # more sbatch settings for submitit, e.g. {qos: high, constraint: a100}; checked against submitit's
    # own list when the executor is made (not in validate: that would import submitit)
    slurm: dict[str, str | int | float | bool] = {}
    cluster: Literal["slurm", "local"] = "slurm"  # local: submitit's one-machine stand-in for Slurm (tests, dry runs)


class SlurmExecutor:
    kind = "slurm"

    def __init__(self, spec: SlurmSettings, device: str, techniques, jobs: int | None):
        submitit = require("submitit", self.kind)  # only now: validating a recipe that names slurm does not import it
        self.submitit, self.spec, self.techniques = submitit, spec, {t.name: t for t in techniques}
        # the driver often runs on a login node without GPUs: the cells' device follows gpus_per_cell
        self.device = (
            device
            if device != "auto"
            else ("cuda" if any(spec.gpus_for(t.kind, t.name, "cpu") > 0 for t in techniques) else "cpu")
        )
        check_slurm_keys(spec.slurm)
        self.jobs = jobs or CELLS_IN_FLIGHT
        self.pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="harness-slurm")
        self.running: dict[str, SubmititJob[Any]] = {}  # job id -> its submitit job
        self.lock = threading.Lock()
        self.stopped = False

    def submit(self, job: Job) -> Future[JobEnd]:
        return self.pool.submit(self._run, job)

    def _run(self, job: Job) -> JobEnd:
        from harness import worker

        data, gpus = job.payload(self.kind), int(round(job_gpus(self.spec, self.techniques, job, self.device)))
        nodes = job_nodes(self.techniques, job)
        executor = self._executor(job.run_dir, job.id, gpus, nodes)
        for _ in range(self.spec.max_retries + 1):
            if self.stopped:
                return JobEnd(1, "cancelled (the driver stopped)")
            env = cell_env(self.spec.cpus_per_cell)
            if nodes > 1:  # one task per node, each the cell's process there (node 0 writes the row)
                submitted = executor.submit(node_task, data, str(job.log_path), env, str(rendezvous_file(job)))
            else:
                submitted = executor.submit(worker.job_main, data, str(job.log_path), env)
            with self.lock:
                self.running[job.id] = submitted
            try:
                submitted.results()  # every task's end: node 0's row is written when its task ends
                return JobEnd(0, None)
            except self.submitit.core.utils.FailedJobError as exc:  # the job raised: running it again would too
                return JobEnd(
                    1, f"the job raised on Slurm (job {submitted.job_id}): {last_line(exc)}" + log_tail(job.log_path)
                )
            except self.submitit.core.utils.UncompletedJobError:
                lost = f"Slurm job {submitted.job_id} ended without a result (state {job_state(submitted)})"
            finally:
                with self.lock:
                    self.running.pop(job.id, None)
        return JobEnd(1, f"{lost}, {after_retries(self.spec.max_retries)}" + log_tail(job.log_path))

    def _executor(self, run_dir: Path, name: str, gpus: int, nodes: int):
        spec = self.spec
        executor = self.submitit.AutoExecutor(folder=run_dir / "slurm" / "%j", cluster=spec.cluster)
        # a cell across machines is one job of `nodes` tasks, one per node; submitit's local stand-in has
        # one node, so there its tasks stand for the nodes (the tests' two-node cell)
        local = spec.cluster == "local"
        params = {
            "name": f"harness-{name}",
            "timeout_min": spec.timeout_min,
            "gpus_per_node": gpus * (nodes if local else 1),
            "cpus_per_task": spec.cpus_per_cell or 1,
            "nodes": 1 if local else nodes,
            "tasks_per_node": nodes if local else 1,
        }
        if spec.mem_gb:
            params["mem_gb"] = spec.mem_gb
        slurm = {"partition": spec.partition, "account": spec.account, **spec.slurm}
        params |= {f"slurm_{key}": value for key, value in slurm.items() if value is not None}
        executor.update_parameters(**params)
        return executor

    def shutdown(self) -> None:
        """Cancel the jobs in flight (Ctrl-C): their finished cells are already on disk."""
        self.stopped = True
        with self.lock:
            jobs = list(self.running.values())
        for submitted in jobs:
            try:
                submitted.cancel(check=False)
            except Exception:  # noqa: BLE001 — already finished or gone
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)


def node_task(job: dict, log_path: str, env: dict[str, str], rendezvous: str) -> None:
    """One node's task of a cell across machines: its place from submitit's task environment (Slurm's
    node list), then the job as on one machine (harness/distributed.py does the rest)."""
    import socket

    import submitit

    from harness import worker
    from harness.distributed import Node

    task = submitit.JobEnvironment()
    worker.node_main(job, log_path, env, Node(task.global_rank, task.num_tasks, socket.gethostname(), Path(rendezvous)))


def check_slurm_keys(settings: dict) -> None:
    """executor.slurm's keys are sbatch settings that submitit knows: a typo is an error now, not at sbatch."""
    from submitit.slurm.slurm import _get_default_parameters

    known = set(_get_default_parameters())
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
            raise ExecutorError(f"executor.slurm: unknown sbatch setting {key!r}{hint}")


def job_state(submitted) -> str:
    try:
        return str(submitted.state)
    except Exception:  # noqa: BLE001 — sacct unreachable: the state is only for the message
        return "unknown"


def last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


executors.register(
    executors.ExecutorKind(
        "slurm", SlurmSettings, SlurmExecutor, "each job a Slurm job through submitit, resubmitted when lost"
    )
)
