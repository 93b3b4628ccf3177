"""The Ray executor (`executor.kind: ray`): each job is a Ray task on a cluster (`ray start --head`, an
existing cluster or KubeRay), in a worker process of its own (max_calls=1: the process exits after the
job, so memory peaks and crashes stay the cell's own, as on the local executor).

Ray places the task where its CPUs and GPUs are free (it sets CUDA_VISIBLE_DEVICES) and runs it again
when its worker or node is lost (`max_retries`); a retried job skips the cells its first attempt
finished. Workers must see the run folder at the same path (executor.storage) and have the harness
installed.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import Future
from typing import Literal

from harness import executors
from harness.executors.base import (
    ExecutorError,
    ExecutorSettings,
    Job,
    JobEnd,
    after_retries,
    cell_env,
    job_gpus,
    log_tail,
    require,
    technique_gpus,
)


class RaySettings(ExecutorSettings):
    """pip install 'adapt-harness[ray]'; the cluster's workers must see the run folder (storage)."""

    kind: Literal["ray"] = "ray"
    # auto (the cluster `ray start` started here), host:6379, ray://host:10001, or local (a one-machine
    # cluster started for this run and stopped with it)
    address: str = "auto"


class RayExecutor:
    kind = "ray"

    def __init__(self, spec: RaySettings, device: str, techniques, jobs: int | None):
        ray = require("ray", self.kind)  # only now: validating a recipe that names ray does not import it
        self.ray, self.spec, self.techniques = ray, spec, {t.name: t for t in techniques}
        self.started = not ray.is_initialized()  # a caller's own ray.init is left to it
        if self.started:
            connect(ray, spec.address)
        self.refs: dict[str, object] = {}  # job id -> its task, while in flight
        self.lock = threading.Lock()
        resources = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.device = device if device != "auto" else ("cuda" if any(r.get("GPU", 0) for r in resources) else "cpu")
        self.cpus = spec.cpus_per_cell or 1
        try:
            check_fits(self.techniques.values(), spec, self.device, self.cpus, resources, spec.address)
        except ExecutorError:
            self.shutdown()
            raise
        most_gpus = max(technique_gpus(spec, t, self.device) for t in self.techniques.values())
        self.jobs = jobs or capacity(resources, self.cpus, most_gpus)
        from harness import worker

        self.task = ray.remote(max_calls=1)(worker.job_main)

    def submit(self, job: Job) -> Future[JobEnd]:
        gpus = job_gpus(self.spec, self.techniques, job, self.device)
        ref = self.task.options(
            num_cpus=self.cpus,
            num_gpus=gpus,
            max_retries=self.spec.max_retries,
            retry_exceptions=False,
            name=f"harness-{job.id}",
        ).remote(job.payload(self.kind), str(job.log_path), cell_env(self.cpus))
        with self.lock:
            self.refs[job.id] = ref
        ended: Future = Future()

        def done(result: Future) -> None:
            with self.lock:
                self.refs.pop(job.id, None)
            try:
                result.result()
                ended.set_result(JobEnd(0, None))
            except BaseException as exc:  # noqa: BLE001 — every way a task can end badly becomes a reason
                ended.set_result(JobEnd(1, self._reason(exc) + log_tail(job.log_path)))

        ref.future().add_done_callback(done)
        return ended

    def _reason(self, exc: BaseException) -> str:
        errors = self.ray.exceptions
        if isinstance(exc, errors.RayTaskError):
            return f"the job raised on its Ray worker: {str(exc.cause or exc).strip().splitlines()[-1]}"
        if isinstance(exc, errors.TaskCancelledError):
            return "cancelled (the driver stopped)"
        lost = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"Ray lost the cell's worker ({type(exc).__name__}) {after_retries(self.spec.max_retries)}: {lost}"

    def shutdown(self) -> None:
        """Cancel the jobs in flight (Ctrl-C): their finished cells are already on disk."""
        with self.lock:
            refs = list(self.refs.values())
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 — already finished or gone
                pass
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def connect(ray, address: str) -> None:
    """Join the cluster at `address` (`local`: start a one-machine cluster for this run)."""
    quiet = {"log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address not in ("local", "auto"):
            probe(address)  # ray.init retries an unreachable address for minutes
        if address == "local":
            ray.init(include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (OSError, RuntimeError, ValueError) as exc:  # ConnectionError and TimeoutError are OSErrors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExecutorError(
            f"cannot reach a Ray cluster at executor.address={address!r}: {first}. Start one with "
            "`ray start --head` (then address=auto), give its address (host:6379 or ray://host:10001), or set "
            "executor.address=local to start one for this run"
        ) from None


def probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at host:port (a ray:// client address or a GCS address)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port or ray://host:port, got {address!r}")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def check_fits(techniques, spec, device: str, cpus: int, resources: list[dict], address: str) -> None:
    """A cell that asks for more CPUs or GPUs than any node has would wait forever: refuse it now."""
    most_gpus = max((r.get("GPU", 0) for r in resources), default=0)
    most_cpus = max((r.get("CPU", 0) for r in resources), default=0)
    for technique in techniques:
        gpus = technique_gpus(spec, technique, device)
        if gpus > most_gpus:
            raise ExecutorError(
                f"technique {technique.name!r} asks for {gpus:g} GPU(s) per cell (executor.gpus_per_cell) but the "
                f"largest node of the Ray cluster at {address!r} has {most_gpus:g}"
            )
    if cpus > most_cpus:
        raise ExecutorError(
            f"executor.cpus_per_cell={cpus} but the largest node of the Ray cluster at "
            f"{address!r} has {most_cpus:g} CPUs"
        )


def capacity(resources: list[dict], cpus: int, gpus: float) -> int:
    """How many cells the cluster runs at once (the search asks that many trials together)."""
    total = 0
    for node in resources:
        fits = node.get("CPU", 0) // cpus
        if gpus:
            fits = min(fits, node.get("GPU", 0) // gpus)
        total += int(fits)
    return max(1, total)


executors.register(
    executors.ExecutorKind("ray", RaySettings, RayExecutor, "each job a Ray task on a cluster, retried when lost")
)
