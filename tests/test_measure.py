"""Memory between phases (harness/measure.py): what one phase freed is handed back before the next is
measured, so a serving phase after training does not report training's leftovers (issue: LoRA's serving
peak on the CPU was its training's high-water mark)."""

import ctypes

import psutil
import pytest
import torch

from harness import measure


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "malloc_trim")
    except OSError:
        return False


@pytest.mark.skipif(not glibc(), reason="the freed-but-kept heap pages are glibc's")
def test_release_memory_hands_back_what_a_phase_freed_before_the_next_is_measured():
    process = psutil.Process()
    big = torch.ones(16 * 2**20, dtype=torch.uint8)  # a freed mapped block raises glibc's mmap threshold ...
    del big
    held = [torch.ones(2**20 * (1 + i % 4), dtype=torch.uint8) for i in range(400)]  # ... so these come from the heap
    del held[:-1]  # as training leaves it: most freed, one block still live near the top of the heap
    before = process.memory_info().rss
    measure.release_memory()
    after = process.memory_info().rss
    assert before - after > 256 * 2**20, (before, after)  # ~1.7 GiB were freed; most of it goes back
    with measure.measure("cpu") as phase:  # a phase that allocates little measures little
        torch.ones(2**20)
    assert phase.peak_bytes < before - 256 * 2**20


# --- the GPU's own figures (NVML): the logic, on the CPU --------------------------------------------------


def test_energy_counter_millijoules_convert_to_watt_hours():
    assert measure.millijoules_to_wh(3.6e6) == 1.0 and measure.millijoules_to_wh(0) == 0.0


def test_device_sampler_keeps_the_peak_of_its_reads_and_the_energy_between_its_ends():
    """DeviceSampler as the CUDA phase uses it with NVML's reads: the highest used memory sampled (both ends
    included, so a phase shorter than one interval still has its figure) and the counter's difference."""
    used = iter([100, 900, 300, 200])
    counter = iter([5_000, 5_000 + 7_200_000])
    sampler = measure.DeviceSampler(lambda: next(used, 200), lambda: next(counter), interval=0.001)
    with sampler:
        while next(used, None) is not None:  # the thread and this loop drain the reads between them
            pass
    assert sampler.peak_bytes is not None and 100 <= sampler.peak_bytes <= 900
    assert sampler.energy_wh == 2.0
    quiet = measure.DeviceSampler(lambda: 42, None, interval=10)  # no energy counter (before Volta)
    with quiet:
        pass
    assert quiet.peak_bytes == 42 and quiet.energy_wh is None


def test_a_failing_read_ends_sampling_keeps_the_peak_so_far_and_never_fails_the_phase():
    reads = iter([10, 50])

    def used():
        value = next(reads, None)
        if value is None:
            raise RuntimeError("NVML went away")
        return value

    sampler = measure.DeviceSampler(used, None, interval=0.001)
    with sampler:  # the read at the phase's end fails too: the phase itself goes on
        sampler._thread.join(timeout=1)  # the thread's failed read ended it
    assert sampler.peak_bytes == 50

    def gone():
        raise RuntimeError("no device")

    silent = measure.DeviceSampler(gone, gone, interval=0.001)
    with silent:  # nothing answers from the start: no figures, no failure, no thread
        pass
    assert silent.peak_bytes is None and silent.energy_wh is None


def test_without_nvml_the_sampler_is_none_and_a_cpu_phase_has_no_gpu_figures(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed: import fails
    assert measure.nvml_sampler(0) is None
    with measure.measure("cpu") as phase:
        pass
    assert phase.reserved_bytes is None and phase.device_peak_bytes is None and phase.energy_wh is None
    assert phase.gpu_figures("train") == {}
    gpu = measure.Phase(reserved_bytes=10, device_peak_bytes=20, energy_wh=0.5)
    assert gpu.gpu_figures("eval") == {
        "eval_reserved_peak_bytes": 10,
        "eval_device_peak_bytes": 20,
        "eval_energy_wh": 0.5,
    }


def test_two_phases_in_sequence_keep_the_higher_peaks_and_sum_the_energy():
    first = {"train_reserved_peak_bytes": 10, "train_device_peak_bytes": 30, "train_energy_wh": 1.0}
    second = {"train_reserved_peak_bytes": 20, "train_device_peak_bytes": 25, "train_energy_wh": 0.5}
    assert measure.in_sequence(first, second) == {
        "train_reserved_peak_bytes": 20,
        "train_device_peak_bytes": 30,
        "train_energy_wh": 1.5,
    }
    assert measure.in_sequence({}, {}) == {}


def test_energy_is_summed_over_phases_and_priced_per_kwh_only_where_a_price_is_given():
    from harness.analysis.ownership import energy_figures

    row = {"train_energy_wh": 30.0, "eval_energy_wh": 10.0, "lm_eval_energy_wh": None}
    assert energy_figures(row, None) == {"energy_wh": 40.0}
    assert energy_figures(row, 0.25) == {"energy_wh": 40.0, "energy_cost_usd": 0.01}
    assert energy_figures({"eval_seconds": 1.0}, 0.25) == {}  # a CPU row: nothing measured, nothing priced


def test_the_report_says_which_gpu_memory_it_leads_with_only_where_rows_have_gpu_figures():
    from harness.report.markdown import gpu_measurement_lines

    cuda = {"technique": "full", "train_peak_memory_bytes": 1, "train_device_peak_bytes": 5, "energy_wh": 2.0}
    (line,) = gpu_measurement_lines({"usd_per_kwh": 0.3}, [cuda])
    assert "lead with the CUDA allocator's peak" in line and "$0.30/kWh" in line and "nvidia-smi" in line
    assert gpu_measurement_lines({}, [{"technique": "full", "train_peak_memory_bytes": 1}]) == []
