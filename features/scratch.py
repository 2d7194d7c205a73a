"""Buffers kept between batches, so a library call's speed does not depend on how its process tuned malloc."""
from __future__ import annotations

import math
import threading

import torch


class Scratch:
    """Named flat buffers, each grown to the largest size asked of it and handed out as views of its start.

    Why: ΔPhase's temporaries are a few MB per batch. Freed, glibc's default malloc hands the top of its heap
    back to the kernel once it exceeds twice the largest recent block, so the next batch faults every page in
    again (~9 minor faults per frame at batch 256; pipeline/allocator.py tunes malloc for the CLI, a library
    caller does not). Held here, each buffer is faulted in once per process.

    A view stays valid until its name is asked for again: a name must not serve two tensors alive at once.
    Buffers are per (name, dtype, device); memory stays at the largest batch seen until :meth:`clear`.
    """

    def __init__(self) -> None:
        self._flat: dict[tuple[str, torch.dtype, str], torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape``: a view of buffer ``name``."""
        key = (name, dtype, str(torch.device(device)))
        n = math.prod(shape)
        buf = self._flat.get(key)
        if buf is None or buf.numel() < n:
            self._flat.pop(key, None)  # drop the smaller one first: both alive would raise the peak
            buf = self._flat[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(b.numel() * b.element_size() for b in self._flat.values())

    def clear(self) -> None:
        """Free every buffer (the next call allocates and faults them in again)."""
        self._flat.clear()


_LOCAL = threading.local()


def thread_scratch() -> Scratch:
    """This thread's buffers: concurrent calls (Dask threads) must not share them."""
    if not hasattr(_LOCAL, "scratch"):
        _LOCAL.scratch = Scratch()
    return _LOCAL.scratch


def take(scratch: Scratch | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor like ``like`` (dtype, device): from ``scratch``, or fresh when it is None."""
    if scratch is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return scratch.take(name, shape, like.dtype, like.device)
