"""The Ray executor (`executor.kind: ray`): each job is a Ray task on a cluster (`ray start --head`, an
existing cluster or KubeRay), in a worker process of its own (max_calls=1: the process exits after the
job, so memory peaks and crashes stay the cell's own, as on the local executor).

Ray places the task where its CPUs and GPUs are free (it sets CUDA_VISIBLE_DEVICES) and runs it again
when its worker or node is lost (`max_retries`); a retried job skips the cells its first attempt
finished. Workers must see the run folder at the same path (executor.storage) and have the harness
installed. A cell across machines (train.distributed.nodes > 1) is a placement group of one bundle per
node with a task in each (harness/distributed.py does the rest).
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
    job_nodes,
    log_tail,
    node_gpus,
    rendezvous_file,
    require,
    train_nodes,
)

FOLLOWERS_GRACE_SECONDS = 60  # how long the other nodes of a cell may take to stop once node 0 has ended


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
        self.refs: dict[str, object] = {}  # job id -> its task (a list: one per node), while in flight
        self.lock = threading.Lock()
        resources = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.device = device if device != "auto" else ("cuda" if any(r.get("GPU", 0) for r in resources) else "cpu")
        self.cpus = spec.cpus_per_cell or 1
        try:
            check_fits(self.techniques.values(), spec, self.device, self.cpus, resources, spec.address)
        except ExecutorError:
            self.shutdown()
            raise
        most_gpus = max(node_gpus(spec, t, self.device) for t in self.techniques.values())
        self.jobs = jobs or capacity(resources, self.cpus, most_gpus)
        from harness import worker

        self.task = ray.remote(max_calls=1)(worker.job_main)
        self.node_task = ray.remote(max_calls=1)(node_task)

    def submit(self, job: Job) -> Future[JobEnd]:
        gpus = job_gpus(self.spec, self.techniques, job, self.device)
        nodes = job_nodes(self.techniques, job)
        if nodes > 1:
            return self._submit_across(job, nodes, gpus)
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

    def _submit_across(self, job: Job, nodes: int, gpus: float) -> Future[JobEnd]:
        """A cell across machines: a placement group of one bundle per node (packed onto as few machines
        as fit), a task in each, node 0's task the job's end. Ray does not retry these tasks: a lost node
        fails the cell, and `--resume` runs it again."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = {"CPU": self.cpus} | ({"GPU": gpus} if gpus else {})
        group = placement_group([bundle] * nodes, strategy="PACK", name=f"harness-{job.id}")
        data, rendezvous = job.payload(self.kind), str(rendezvous_file(job))
        refs = [
            self.node_task.options(
                num_cpus=self.cpus,
                num_gpus=gpus,
                max_retries=0,
                name=f"harness-{job.id}-node{rank}",
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
            ).remote(data, str(job.log_path), cell_env(self.cpus), rank, nodes, rendezvous)
            for rank in range(nodes)
        ]
        with self.lock:
            self.refs[job.id] = refs
        ended: Future = Future()
        threading.Thread(target=lambda: ended.set_result(self._wait_across(job, refs, group)), daemon=True).start()
        return ended

    def _wait_across(self, job: Job, refs: list, group) -> JobEnd:
        from ray.util.placement_group import remove_placement_group

        try:
            self.ray.get(refs[0])
            end = JobEnd(0, None)
        except BaseException as exc:  # noqa: BLE001 — every way a task can end badly becomes a reason
            end = JobEnd(1, self._reason(exc) + log_tail(job.log_path))
        try:  # the other nodes stop once node 0 has ended (distributed.close); then nothing of the job is left
            self.ray.wait(refs[1:], num_returns=len(refs) - 1, timeout=FOLLOWERS_GRACE_SECONDS)
            for ref in refs[1:]:
                self.ray.cancel(ref, force=True)
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 — the cluster is going away (Ctrl-C): nothing left to tidy
            pass
        with self.lock:
            self.refs.pop(job.id, None)
        return end

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
            refs = [r for ref in self.refs.values() for r in (ref if isinstance(ref, list) else [ref])]
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 — already finished or gone
                pass
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def node_task(job: dict, log_path: str, env: dict[str, str], rank: int, nodes: int, rendezvous: str) -> None:
    """One node's task of a cell across machines: its place, then the job as on one machine."""
    from pathlib import Path

    import ray

    from harness import worker
    from harness.distributed import Node

    worker.node_main(job, log_path, env, Node(rank, nodes, ray.util.get_node_ip_address(), Path(rendezvous)))


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
        gpus = node_gpus(spec, technique, device)
        if gpus > most_gpus:
            raise ExecutorError(
                f"technique {technique.name!r} asks for {gpus:g} GPU(s) per node (executor.gpus_per_cell, "
                f"train.distributed) but the largest node of the Ray cluster at {address!r} has {most_gpus:g}"
            )
        nodes = train_nodes(technique)
        if nodes > 1 and capacity(resources, cpus, gpus) < nodes:
            raise ExecutorError(
                f"technique {technique.name!r} trains across {nodes} nodes of {gpus:g} GPU(s) and {cpus} CPU(s) "
                f"each, but the Ray cluster at {address!r} holds {capacity(resources, cpus, gpus)} such place(s)"
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
