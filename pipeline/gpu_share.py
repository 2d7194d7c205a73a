"""Worker processes sharing one GPU: their CUDA waits sleep instead of spinning on a core.

`features --device cuda` runs one worker process per core, each with its own CUDA context on the same GPU. CUDA's
default wait policy (cudaDeviceScheduleAuto) spins whenever a process has fewer contexts than the machine has cores,
which is always the case here: while one worker waits for the GPU (shared by time slices between the contexts), it
burns a core that another worker needed for decoding and dlib. Measured on an H100 with 16 cores (bench/gpu.py, 16
workers): see the README's "One GPU node". CU_CTX_SCHED_BLOCKING_SYNC makes the waits sleep.
``MIMAMO_CUDA_WAIT=spin`` keeps CUDA's default (for comparison).
"""
from __future__ import annotations

import ctypes
import os

CU_CTX_SCHED_BLOCKING_SYNC = 0x04
_DONE: set[int] = set()


def sleep_while_waiting(device: str) -> bool:
    """Set the blocking-sync wait policy on ``device``'s primary context, once per process; False if not set."""
    import torch

    if not device.startswith("cuda") or os.environ.get("MIMAMO_CUDA_WAIT", "block") == "spin":
        return False
    index = torch.device(device).index or 0
    if index in _DONE:
        return True
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:   # no driver library: nothing to set (torch will say CUDA is unavailable)
        return False
    dev = ctypes.c_int()
    # _v2 (CUDA >= 11) may change the scheduling flags of a primary context that is already active
    ok = (lib.cuInit(0) == 0 and lib.cuDeviceGet(ctypes.byref(dev), index) == 0
          and lib.cuDevicePrimaryCtxSetFlags_v2(dev, CU_CTX_SCHED_BLOCKING_SYNC) == 0)
    if ok:
        _DONE.add(index)
    return ok

