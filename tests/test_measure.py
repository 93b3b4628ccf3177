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
