"""The allocator setting the CLI and the workers use: freed blocks are reused, not faulted in again."""
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.allocator import keep_freed_memory


def faults_per_cycle(mb: int, cycles: int = 10) -> float:
    """Minor page faults per allocate-touch-free cycle of an mb-MB array, after one warm-up cycle."""
    def run(k):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(k):
            a = np.empty(mb << 18, np.float32)
            a.fill(1.0)  # touch every page
            del a
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / k
    run(1)
    return run(cycles)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); from test_allocator import faults_per_cycle as f; print(f(40))"
    default = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert keep_freed_memory() is True and keep_freed_memory() is True  # idempotent
    tuned = faults_per_cycle(40)
    # glibc's default unmaps a freed 40 MB block, so every cycle faults it in again (huge pages or not)
    assert default >= 10, default
    assert tuned <= 1, (tuned, default)
