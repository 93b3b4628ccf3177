"""What every executor shares: the settings every `executor:` block takes, a job (one or more cells run
by one process), how it ended, and the interface `submit(job) -> Future[JobEnd]`, `shutdown()`.

The executor only runs jobs; the driver (pipeline.py) alone plans cells and merges their result files.
A job's process writes each cell's result into the run folder (`worker.run_job`), so any executor
whose workers see the run folder can run it.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field, field_validator

from harness.planning import Cell
from harness.results import write_atomic
from harness.yamlconfig import RelativeToFile, Strict, expand_path

LOG_TAIL_LINES = 8


class ExecutorSettings(Strict):
    """The keys every executor takes. Each executor's settings model (in its own file) adds
    `kind: Literal["<name>"]` and its own keys; the recipe's `executor.kind` selects the model."""

    kind: str  # declared here so that it comes first in the stored recipe
    # GPUs per cell: one number, or per technique kind / name ({full: 2, lora: 1, prompt: 1}); default:
    # on CUDA 1, or a multi-process cell's train.distributed processes; 0 on the CPU. Fractions share a
    # GPU between cells (Ray only).
    gpus_per_cell: float | dict[str, float] | None = None
    # CPU cores per cell, also its torch threads; default: ray and slurm 1, local the machine's cores
    # split between --jobs
    cpus_per_cell: int | None = Field(None, ge=1)
    max_retries: int = Field(2, ge=0)  # a cell lost with its worker or node runs again (ray, slurm)
    # the run folder's root for a new run (replaces output_dir): a path all workers see
    storage: Annotated[str | None, RelativeToFile()] = None

    _expand = field_validator("storage")(classmethod(lambda cls, v: v if v is None else expand_path(v)))

    @field_validator("gpus_per_cell")
    @classmethod
    def _not_negative(cls, gpus):
        counts = gpus.items() if isinstance(gpus, dict) else [("", gpus)] if gpus is not None else []
        for name, count in counts:
            if count < 0:
                where = f" ({name})" if name else ""
                raise ValueError(f"a cell cannot ask for {count:g} GPUs{where}; give 0 or more (fractions: Ray only)")
        return gpus

    def gpus_for(self, kind: str, name: str, device: str, ranks: int = 1) -> float:
        """GPUs one cell of this technique asks for (`ranks`: the processes it trains in, one GPU each)."""
        default = float(ranks) if device.startswith("cuda") else 0.0
        if isinstance(self.gpus_per_cell, dict):
            return float(self.gpus_per_cell.get(name, self.gpus_per_cell.get(kind, default)))
        return default if self.gpus_per_cell is None else float(self.gpus_per_cell)


class ExecutorError(RuntimeError):
    """The executor cannot start: its library is missing, its cluster unreachable, or too small for a cell."""


@dataclass(frozen=True)
class Job:
    id: str
    cells: list[Cell]
    run_dir: Path
    device: str

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.id}.log"

    def payload(self, executor: str) -> dict:
        """What the job's process needs, also written to jobs/<id>.json so that `python -m harness.worker
        JOB_FILE` reruns it by hand."""
        data = {
            "run_dir": str(self.run_dir),
            "device": self.device,
            "executor": executor,
            "cells": [c.to_dict() for c in self.cells],
        }
        write_atomic(self.run_dir / "jobs" / f"{self.id}.json", json.dumps(data))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return data


@dataclass(frozen=True)
class JobEnd:
    returncode: int
    reason: str | None  # why the process ended badly (signal, exit code, the log's last lines); None if it exited 0


class Executor(Protocol):
    kind: str  # its registered name (local, ray, slurm, ...), stored in every cell row
    device: str  # where the cells run: cpu or cuda
    jobs: int  # cells it can run at once: how many search trials are asked together

    def submit(self, job: Job) -> Future[JobEnd]: ...

    def shutdown(self) -> None: ...


def require(module: str, kind: str):
    """The cluster library an executor kind needs, or an error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExecutorError(
            f"executor.kind={kind} needs {module}, which is not installed: pip install 'adapt-harness[{kind}]'"
        ) from None


def _distributed(technique):
    """The technique's train.distributed (None for a kind that does not train, or one process)."""
    return getattr(getattr(technique, "train", None), "distributed", None)


def train_ranks(technique) -> int:
    """How many processes a cell of `technique` trains in (1 without train.distributed)."""
    settings = _distributed(technique)
    return settings.world_size if settings is not None else 1


def train_nodes(technique) -> int:
    """How many machines a cell of `technique` trains across (train.distributed.nodes; 1 without it)."""
    settings = _distributed(technique)
    return settings.nodes if settings is not None else 1


def technique_gpus(spec, technique, device: str) -> float:
    """GPUs one cell of `technique` asks for (executor.gpus_per_cell, or its train.distributed processes)."""
    return spec.gpus_for(technique.kind, technique.name, device, train_ranks(technique))


def node_gpus(spec, technique, device: str) -> float:
    """GPUs a cell of `technique` asks of each machine it runs on."""
    return technique_gpus(spec, technique, device) / train_nodes(technique)


def job_nodes(techniques: dict, job: Job) -> int:
    """Machines a job runs across: more than one only for a cell across machines (alone in its job)."""
    return max(train_nodes(techniques[c.technique]) for c in job.cells)


def rendezvous_file(job: Job) -> Path:
    """Where node 0 of a job across machines writes its address and port: in the run folder, which every
    node sees, and new for each attempt, so a retry never reads an earlier attempt's address."""
    return job.run_dir / "jobs" / f"{job.id}.{uuid.uuid4().hex[:8]}.rendezvous"


def node_log(log_path: str, rank: int) -> str:
    """Node 0 writes the job's log (the driver shows it); another node a log of its own beside it."""
    return log_path if rank == 0 else log_path.removesuffix(".log") + f".node{rank}.log"


def job_gpus(spec, techniques: dict, job: Job, device: str) -> float:
    """GPUs a job asks of each machine: the most that any of its cells' techniques asks for."""
    return max(node_gpus(spec, techniques[c.technique], device) for c in job.cells)


def after_retries(tries: int) -> str:
    return f"after {tries} retr{'y' if tries == 1 else 'ies'} (executor.max_retries)"


def cell_env(threads: int | None = None) -> dict[str, str]:
    """The environment a cell's process applies before it runs: the driver's HARNESS_ settings, its datasets
    cache, and its torch thread count when the executor fixes one."""
    env = {key: value for key, value in os.environ.items() if key.startswith("HARNESS_")}
    if "datasets" in sys.modules:  # where the driver read the task's dataset from: the cell reads it again
        from harness.datasources import cache_dir

        env["HF_DATASETS_CACHE"] = cache_dir()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def describe_exit(returncode: int, log_path: Path) -> str:
    """The reason a worker died, for a failed row: the signal (an OOM kill is SIGKILL) or exit code, and
    the last lines it wrote."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = f"worker process killed by {name}"
        if name == "SIGKILL":
            why += " (the OS kills a process that runs out of memory; or it was killed by hand)"
    else:
        why = f"worker process exited with code {returncode}"
    return why + log_tail(log_path)


def log_tail(log_path: Path) -> str:
    tail = last_lines(log_path, LOG_TAIL_LINES)
    return f"; last log lines ({log_path}): " + " | ".join(tail) if tail else ""


def last_lines(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines[-n:] if line.strip()]
