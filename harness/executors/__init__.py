"""Executors run the cells of a study: `local` (processes on this machine), `ray` (a Ray cluster) and
`slurm` (through submitit). Ray and submitit are imported only when their executor is chosen."""

from __future__ import annotations

from harness.executors.base import Executor, ExecutorError, Job, JobEnd, last_lines

__all__ = ["Executor", "ExecutorError", "Job", "JobEnd", "last_lines", "make_executor"]


def make_executor(recipe, jobs: int | None) -> Executor:
    """The recipe's executor; its `device` is where cells run. `jobs`: cells at once (--jobs); None: one
    locally, the cluster's capacity on ray/slurm."""
    spec = recipe.executor
    if spec.kind == "ray":
        from harness.executors.ray_cluster import RayExecutor

        return RayExecutor(spec, recipe.device, recipe.techniques, jobs)
    if spec.kind == "slurm":
        from harness.executors.slurm import SlurmExecutor

        return SlurmExecutor(spec, recipe.device, recipe.techniques, jobs)
    from harness.executors.local import LocalExecutor, local_device

    return LocalExecutor(jobs or 1, local_device(recipe.device), threads=spec.cpus_per_cell)
