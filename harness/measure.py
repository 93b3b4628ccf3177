"""Measure one phase (training, evaluation): wall seconds and peak memory, from the device itself.

On CUDA the peak comes from the caching allocator (reset when the phase starts); on the CPU a
background thread samples the process's resident memory every 20 ms. The method travels with the
figure so the report can say how it was measured. torch is imported on the CUDA paths only, so the
driver and the CLI can import this module without it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.02


@dataclass
class Phase:
    seconds: float = 0.0
    peak_bytes: int = 0
    reserved_bytes: int | None = None  # CUDA only: what the allocator held at its peak
    method: str = ""
    extra: dict = field(default_factory=dict)


@contextmanager
def measure(device: str):
    """with measure(device) as phase: ... ; afterwards phase.seconds and phase.peak_bytes are set."""
    phase = Phase()
    if device.startswith("cuda"):
        with _cuda_peak(phase):
            start = time.perf_counter()
            try:
                yield phase
            finally:
                import torch

                torch.cuda.synchronize()
                phase.seconds = time.perf_counter() - start
    else:
        with _rss_peak(phase):
            start = time.perf_counter()
            try:
                yield phase
            finally:
                phase.seconds = time.perf_counter() - start


@contextmanager
def _cuda_peak(phase: Phase):
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        phase.peak_bytes = int(torch.cuda.max_memory_allocated())
        phase.reserved_bytes = int(torch.cuda.max_memory_reserved())
        phase.method = "cuda allocator peak (max_memory_allocated)"


@contextmanager
def _rss_peak(phase: Phase):
    process = psutil.Process()
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample():
        while not stop.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        phase.peak_bytes = max(peak[0], process.memory_info().rss)
        phase.method = f"process RSS, sampled every {int(SAMPLE_SECONDS * 1000)} ms"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {psutil.cpu_count(logical=True)} threads)"


def saved_activation_bytes(model, input_ids, autocast: bool = False) -> int:
    """Bytes autograd saves for the backward pass of one forward on `input_ids` (unique storages, the
    weights excluded): what the memory plan's activation formula estimates (harness/analysis/memory_plan.py)."""
    import contextlib

    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    return sum(seen.values())


def release_memory() -> None:
    """Give back what is no longer used (Python garbage, the CUDA cache, freed heap pages) before the
    next phase is measured: on the CPU the resident size counts heap pages that were freed but not
    returned (glibc keeps them after training's many mid-sized tensors), so without this a serving phase
    that follows training measures training's leftovers."""
    import ctypes
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # imported already wherever there is anything to free
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
