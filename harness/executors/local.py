"""The local executor (`executor.kind: local`, the default): each job in a fresh process on this
machine, N at a time."""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from harness import executors
from harness.executors.base import ExecutorError, ExecutorSettings, Job, JobEnd, cell_env, describe_exit


class LocalSettings(ExecutorSettings):
    """Nothing beyond the keys every executor takes (max_retries is unused: a dead process is a failed row)."""

    kind: Literal["local"] = "local"


class LocalExecutor:
    """Runs each job in a fresh process, `jobs` at a time. On CUDA every running job gets one visible
    GPU of its own (CUDA_VISIBLE_DEVICES); on the CPU the cores are split between jobs unless `threads`
    (executor.cpus_per_cell) fixes each job's share.

    Processes are forked from a fork server that imported the libraries once (multiprocessing's
    forkserver with a preload), so a cell does not pay ~10 s of imports; nothing else is shared.
    """

    kind = "local"

    def __init__(self, jobs: int = 1, device: str = "cpu", threads: int | None = None):
        self.device = device
        self.gpus: queue.Queue[str] | None = None
        if device.startswith("cuda"):
            visible = _visible_gpus()
            jobs = min(jobs, len(visible)) or 1
            self.gpus = queue.Queue()
            for gpu in visible[:jobs]:
                self.gpus.put(gpu)
        self.jobs = max(1, jobs)
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="harness-job")
        self.running: dict = {}  # job id -> its process
        self.lock = threading.Lock()

    def submit(self, job: Job) -> Future[JobEnd]:
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

        data = job.payload(self.kind)
        gpu = self.gpus.get() if self.gpus is not None else None
        try:
            process = self._context().Process(
                target=worker.child_main, name=f"harness-{job.id}", args=(data, str(job.log_path), self._env(gpu))
            )
            process.start()
            with self.lock:
                self.running[job.id] = process
            process.join()
            returncode = process.exitcode
        finally:
            with self.lock:
                self.running.pop(job.id, None)
            if gpu is not None and self.gpus is not None:
                self.gpus.put(gpu)
        return JobEnd(returncode, None if returncode == 0 else describe_exit(returncode, job.log_path))

    def _env(self, gpu: str | None) -> dict:
        """What the cell's process sets in its environment before running."""
        threads = self.threads
        if threads is None and gpu is None and self.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)  # N jobs on the CPU share its cores
        env = cell_env(threads)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return env


def make(settings: LocalSettings, device: str, techniques, jobs: int | None) -> LocalExecutor:
    return LocalExecutor(jobs or 1, local_device(device), threads=settings.cpus_per_cell)


def local_device(requested: str) -> str:
    """The device cells run on here: `auto` takes CUDA when a GPU is visible."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ExecutorError("recipe asks for device: cuda but no CUDA device is visible; set device: auto or cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


executors.register(
    executors.ExecutorKind("local", LocalSettings, make, "each job a process on this machine, --jobs at a time")
)
