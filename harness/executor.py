"""Executors run jobs (one or more cells) and report how each ended; the driver alone merges results.

The interface is `submit(job) -> Future[JobEnd]` and `shutdown()`: the local executor below runs each
job in a fresh process, N at a time; a cluster executor (Ray, Slurm) can sit beside it without
touching the techniques (`python -m harness.worker JOB_FILE` runs a job anywhere the run folder is).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.results import write_atomic
from harness.study import Cell

LOG_TAIL_LINES = 8


@dataclass(frozen=True)
class Job:
    id: str
    cells: list[Cell]
    run_dir: Path
    device: str

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.id}.log"


@dataclass(frozen=True)
class JobEnd:
    returncode: int
    reason: str | None  # why the process ended badly (signal, exit code, the log's last lines); None if it exited 0


class Executor(Protocol):
    def submit(self, job: Job) -> "Future[JobEnd]": ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Runs each job in a fresh process, `jobs` at a time. On CUDA every running job gets one visible
    GPU of its own (CUDA_VISIBLE_DEVICES); on the CPU the cores are split between jobs.

    Processes are forked from a fork server that imported the libraries once (multiprocessing's
    forkserver with a preload), so a cell does not pay ~10 s of imports; nothing else is shared.
    """

    def __init__(self, jobs: int = 1, device: str = "cpu"):
        self.gpus: queue.Queue[str] | None = None
        if device.startswith("cuda"):
            visible = _visible_gpus()
            jobs = min(jobs, len(visible)) or 1
            self.gpus = queue.Queue()
            for gpu in visible[:jobs]:
                self.gpus.put(gpu)
        self.jobs = max(1, jobs)
        self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="harness-job")
        self.running: dict = {}  # job id -> its process
        self.lock = threading.Lock()

    def submit(self, job: Job) -> "Future[JobEnd]":
        return self.pool.submit(self._run, job)

    @staticmethod
    def _context():
        import multiprocessing

        if "forkserver" not in multiprocessing.get_all_start_methods():  # no fork (Windows): plain spawn
            return multiprocessing.get_context("spawn")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["harness.worker_preload"])
        return context

    def shutdown(self) -> None:
        """Stop every running job (Ctrl-C): their finished cells are already on disk."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            for process in self.running.values():
                if process.is_alive():
                    process.terminate()

    def _run(self, job: Job) -> JobEnd:
        from harness import worker

        data = {"run_dir": str(job.run_dir), "device": job.device, "cells": [c.to_dict() for c in job.cells]}
        write_atomic(job.run_dir / "jobs" / f"{job.id}.json", json.dumps(data))  # `python -m harness.worker` reruns it
        gpu = self.gpus.get() if self.gpus is not None else None
        try:
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            process = self._context().Process(target=worker.child_main, name=f"harness-{job.id}",
                                              args=(data, str(job.log_path), self._env(gpu)))
            process.start()
            with self.lock:
                self.running[job.id] = process
            process.join()
            returncode = process.exitcode
        finally:
            with self.lock:
                self.running.pop(job.id, None)
            if gpu is not None:
                self.gpus.put(gpu)
        return JobEnd(returncode, None if returncode == 0 else describe_exit(returncode, job.log_path))

    def _env(self, gpu: str | None) -> dict:
        """What the cell's process sets in its environment before running."""
        env = {key: value for key, value in os.environ.items() if key.startswith("HARNESS_")}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        elif self.jobs > 1 and "OMP_NUM_THREADS" not in env:  # N jobs on the CPU share its cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
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
    tail = last_lines(log_path, LOG_TAIL_LINES)
    return why + (f"; last log lines ({log_path}): " + " | ".join(tail) if tail else "")


def last_lines(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines[-n:] if line.strip()]


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
