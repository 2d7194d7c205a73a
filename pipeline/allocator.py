"""Keep freed memory in the process for reuse (glibc), instead of handing it back to the kernel after every batch.

The feature stages allocate and free tensors of a few MB per batch. With glibc's defaults the freed top of the
heap is returned to the kernel once it exceeds about twice the largest recent block (and blocks over a moving
mmap threshold are unmapped), so the next batch faults every page in again: on the 2-core VM this project is
measured on, ΔPhase at batch 256 took ~9 page faults per face, ~10% of its CPU time in the kernel
(``BENCH_ALLOCATOR=default python bench/motion.py`` shows it). Pinning the mmap threshold at glibc's usual
maximum (32 MB) and keeping up to 128 MB of freed heap removes them. Blocks over 32 MB (ResNet50 activations,
ΔPhase batches of thousands) are still unmapped when freed: keeping those too (256 MB) made ΔPhase at batch 4096
2x faster but raised a pipeline worker's peak RSS from 1.1 to 1.5 GB (fragmentation), so the feature stages do
not; the trainer, one process whose big blocks are its ~60 MB motion windows, does (``cli.py``).
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_DONE: list[bool] = []


def keep_freed_memory(mmap_mb: int = 32, trim_mb: int = 128) -> bool:
    """Tune glibc's malloc for this process, once; False where it does not apply (not Linux/glibc)."""
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
            ok = mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_mb << 20) == 1
        except (OSError, AttributeError):  # musl or another libc: keep its defaults
            ok = False
    _DONE.append(ok)
    return ok
