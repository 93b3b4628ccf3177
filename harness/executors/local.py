"""The local executor (`executor.kind: local`, the default): each job in a fresh process on this
machine, N at a time."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from harness import executors
from harness.executors.base import ExecutorError, ExecutorSettings, Job, JobEnd, cell_env, describe_exit, job_gpus


class LocalSettings(ExecutorSettings):
    """Nothing beyond the keys every executor takes (max_retries is unused: a dead process is a failed row)."""

    kind: Literal["local"] = "local"


class LocalExecutor:
    """Runs each job in a fresh process, `jobs` at a time. On CUDA every running job gets visible GPUs
    of its own (CUDA_VISIBLE_DEVICES): one, or a multi-process cell's `processes` (`gpus(job)`); on the
    CPU the cores are split between jobs unless `threads` (executor.cpus_per_cell) fixes each job's share.

    Processes are forked from a fork server that imported the libraries once (multiprocessing's
    forkserver with a preload), so a cell does not pay ~10 s of imports; nothing else is shared.
    """

    kind = "local"

    def __init__(self, jobs: int = 1, device: str = "cpu", threads: int | None = None, gpus=lambda job: 1):
        self.device = device
        self.free: list[str] | None = None  # the visible GPUs no running job holds (CUDA only)
        self.gpus_for_job = gpus
        self.gpu_freed = threading.Condition()
        if device.startswith("cuda"):
            visible = _visible_gpus()
            jobs = min(jobs, len(visible)) or 1
            self.free = list(visible)
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
        data = job.payload(self.kind)
        gpus = self._take(int(self.gpus_for_job(job))) if self.free is not None else None
        if gpus == []:
            return JobEnd(1, f"its cell needs {self.gpus_for_job(job):g} GPUs; this machine shows {_visible_gpus()}")
        try:
            process = self._context().Process(
                target=cell_process,
                name=f"harness-{job.id}",
                args=(data, str(job.log_path), self._env(gpus), os.getpid()),
            )
            process.start()
            with self.lock:
                self.running[job.id] = process
            process.join()
            returncode = process.exitcode
        finally:
            with self.lock:
                self.running.pop(job.id, None)
            if gpus:
                self._give(gpus)
        return JobEnd(returncode, None if returncode == 0 else describe_exit(returncode, job.log_path))

    def _take(self, count: int) -> list[str]:
        """`count` free GPUs, waiting for running jobs to give theirs back; [] when there are never enough."""
        if count > len(_visible_gpus()):
            return []
        with self.gpu_freed:
            self.gpu_freed.wait_for(lambda: self.free is not None and len(self.free) >= count)
            assert self.free is not None
            taken, self.free = self.free[:count], self.free[count:]
            return taken

    def _give(self, gpus: list[str]) -> None:
        with self.gpu_freed:
            assert self.free is not None
            self.free += gpus
            self.gpu_freed.notify_all()

    def _env(self, gpus: list[str] | None) -> dict:
        """What the cell's process sets in its environment before running."""
        threads = self.threads
        if threads is None and gpus is None and self.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)  # N jobs on the CPU share its cores
        env = cell_env(threads)
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return env


def cell_process(job: dict, log_path: str, env: dict[str, str], driver: int) -> None:
    """A job's process: it ends with the driver (`driver`: its pid), then runs the job (worker.child_main)."""
    from harness import worker

    die_with(driver)
    worker.child_main(job, log_path, env)


def die_with(driver: int, every: float = 0.5) -> None:
    """A thread that SIGKILLs this process once the driver process has ended. A driver stopped by a signal
    it handles stops its jobs itself; one killed by SIGKILL runs no handler, and the fork server between
    them stays up while any job it forked runs: so each job watches the driver (by pid and start time, so
    a reused pid does not count)."""
    import signal

    import psutil

    try:
        born = psutil.Process(driver).create_time()
    except psutil.NoSuchProcess:
        os._exit(1)

    def alive() -> bool:
        try:
            return psutil.Process(driver).create_time() == born
        except psutil.NoSuchProcess:
            return False

    def watch() -> None:
        while alive():
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-driver-watch", daemon=True).start()


def make(settings: LocalSettings, device: str, techniques, jobs: int | None) -> LocalExecutor:
    device = local_device(device)
    by_name = {t.name: t for t in techniques}
    return LocalExecutor(
        jobs or 1, device, threads=settings.cpus_per_cell, gpus=lambda job: job_gpus(settings, by_name, job, device)
    )


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
