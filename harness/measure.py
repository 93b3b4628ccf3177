"""Measure one phase (training, evaluation): wall seconds and peak memory, from the device itself.

On CUDA the peak the harness leads with (`peak_bytes`, the rows' *_peak_memory_bytes) comes from the
caching allocator (max_memory_allocated, reset when the phase starts): the tensors the phase held, which
the memory plan estimates. Beside it, as GPU users read memory too: the allocator's reserved peak
(max_memory_reserved: the tensors plus the cache's free blocks) and, where NVML answers (the
nvidia-ml-py package), the device-level peak (the GPU's used memory as nvidia-smi shows it, the CUDA
context and every process on the GPU included, sampled every 20 ms) and the energy the GPU drew in the
phase (NVML's energy counter, Volta and newer), in Wh. On the CPU a background thread samples the
process's resident memory every 20 ms, and those CUDA figures are None. The method travels with the
figure so the report can say how it was measured. torch is imported on the CUDA paths only, so the
driver and the CLI can import this module without it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.02


@dataclass
class Phase:
    seconds: float = 0.0
    peak_bytes: int = 0
    reserved_bytes: int | None = None  # CUDA only: what the allocator held at its peak
    device_peak_bytes: int | None = None  # CUDA with NVML only: the GPU's used memory at its sampled peak
    energy_wh: float | None = None  # CUDA with NVML only: what the GPU drew during the phase
    method: str = ""
    extra: dict = field(default_factory=dict)

    def gpu_figures(self, prefix: str) -> dict[str, float]:
        """The CUDA-only figures that were measured, as a row's keys for phase `prefix` (train, eval,
        lm_eval): `<prefix>_reserved_peak_bytes`, `<prefix>_device_peak_bytes`, `<prefix>_energy_wh`."""
        values = {
            "reserved_peak_bytes": self.reserved_bytes,
            "device_peak_bytes": self.device_peak_bytes,
            "energy_wh": self.energy_wh,
        }
        return {f"{prefix}_{name}": value for name, value in values.items() if value is not None}


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
    sampler = nvml_sampler(torch.cuda.current_device())
    try:
        with sampler or _nothing():
            yield
            torch.cuda.synchronize()  # the phase's last kernels draw their energy before the counter is read
    finally:
        phase.peak_bytes = int(torch.cuda.max_memory_allocated())
        phase.reserved_bytes = int(torch.cuda.max_memory_reserved())
        phase.method = "cuda allocator peak (max_memory_allocated)"
        if sampler is not None:
            phase.device_peak_bytes, phase.energy_wh = sampler.peak_bytes, sampler.energy_wh


def in_sequence(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """The gpu_figures of two phases run one after the other, as one phase's: the higher peaks, the
    energy summed."""

    def joined(key: str) -> float:
        values = [d[key] for d in (first, second) if key in d]
        return sum(values) if key.endswith("_energy_wh") else max(values)

    return {key: joined(key) for key in first | second}


@contextmanager
def _nothing():
    yield


def millijoules_to_wh(millijoules: float) -> float:
    return millijoules / 3.6e6  # 1 Wh = 3600 J


class DeviceSampler:
    """A phase's device-level memory peak (`used()` sampled every `interval` seconds in a thread, and at
    both ends) and energy (`energy_mj()` read at both ends: a counter in millijoules; None: no energy).
    NVML's reads in use (nvml_sampler); any two callables in tests."""

    def __init__(self, used: Callable[[], int], energy_mj: Callable[[], int] | None, interval: float = SAMPLE_SECONDS):
        self.used, self.energy_mj, self.interval = used, energy_mj, interval
        self.peak_bytes: int | None = None
        self.energy_wh: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> None:
        value = int(self.used())
        self.peak_bytes = value if self.peak_bytes is None else max(self.peak_bytes, value)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._read()
            except Exception:  # noqa: BLE001 — a read that fails mid-phase ends sampling; the peak so far stands
                return

    def __enter__(self) -> DeviceSampler:
        self._start_energy = None
        try:  # a device that does not answer leaves the figures None; the phase runs as ever
            self._start_energy = self.energy_mj() if self.energy_mj else None
            self._read()
        except Exception:  # noqa: BLE001
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        try:  # a measurement never costs the phase its result: a failed read leaves what was read
            self._read()
            if self._start_energy is not None and self.energy_mj is not None:
                self.energy_wh = millijoules_to_wh(self.energy_mj() - self._start_energy)
        except Exception:  # noqa: BLE001
            pass


def nvml_sampler(cuda_index: int) -> DeviceSampler | None:
    """A DeviceSampler reading CUDA device `cuda_index` through NVML; None without the nvidia-ml-py package or
    where NVML does not answer. The device is found by its UUID (NVML numbers GPUs in PCI order, CUDA by
    speed unless CUDA_DEVICE_ORDER says otherwise, and CUDA_VISIBLE_DEVICES renumbers them); an energy
    counter the GPU lacks (before Volta) leaves the energy None."""
    try:
        import pynvml
    except ImportError:
        return None
    import torch

    try:
        pynvml.nvmlInit()
        try:
            uuid = str(torch.cuda.get_device_properties(cuda_index).uuid).removeprefix("GPU-")
            handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except (pynvml.NVMLError, AttributeError):
            handle = pynvml.nvmlDeviceGetHandleByIndex(cuda_index)
    except pynvml.NVMLError:
        return None
    energy = functools.partial(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
    try:
        energy()
    except pynvml.NVMLError:
        return DeviceSampler(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used, None)
    return DeviceSampler(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used, energy)


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
