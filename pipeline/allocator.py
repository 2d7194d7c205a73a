"""Keep freed memory in the process for reuse (glibc), instead of handing it back to the kernel after every batch.

The feature stages allocate and free tensors of a few MB (tens of MB for big batches) per batch. With glibc's
defaults, blocks over the mmap threshold (at most 32 MB) are unmapped when freed, and the freed top of the heap
is returned to the kernel once it exceeds about twice the largest recent block, so the next batch faults every
page in again: on the 2-core VM this project is measured on, ΔPhase took ~9 page faults per face at batch 256
and ~57 at batch 4096, 10-40% of its CPU time in the kernel (``BENCH_ALLOCATOR=default python bench/motion.py``
shows it). Raising both thresholds keeps freed blocks for reuse. The peak memory is what the stages use anyway;
what changes is that a process keeps its peak until it exits.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_DONE: list[bool] = []


def keep_freed_memory(mmap_mb: int = 256, trim_mb: int = 512) -> bool:
    """Tune glibc's malloc for this process, once; False where it does not apply (not Linux/glibc).

    Older glibc refuses an mmap threshold over 32 MB: then 32 MB (batches up to ~1024 faces stay fault-free).
    """
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
            ok = ((mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20) == 1 or mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1)
                  and mallopt(_M_TRIM_THRESHOLD, trim_mb << 20) == 1)
        except (OSError, AttributeError):  # musl or another libc: keep its defaults
            ok = False
    _DONE.append(ok)
    return ok
