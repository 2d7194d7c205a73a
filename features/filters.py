"""Separable zero-padded filters (Gaussian blur, box mean) of maps laid out [..., O, I, B], batch last, as products."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .scratch import Scratch, take

_FILTERS: dict[tuple, Filter] = {}


class Filter(NamedTuple):
    """A separable filter along one axis: its dense [n, n] matrix, and the matrix split into row blocks
    (lo, hi, col_lo, col_hi, dense[lo:hi, col_lo:col_hi]) that keep only each block's non-zero columns."""

    dense: torch.Tensor
    blocks: list[tuple[int, int, int, int, torch.Tensor]]


def filter_matrix(kind: str, n: int, size, like: torch.Tensor, block: int = 16) -> Filter:
    """Cached zero-padded filter on n samples: 'gauss' (size = (sigma, half width)) or 'box' (size = width).

    With 16-row blocks an 11-tap Gaussian on 48 rows costs 3 products of [16 x 26] instead of one [48 x 48]:
    most of a dense blur's time went to multiplying zeros.
    """
    key = (kind, n, size, like.dtype, str(like.device))
    if key not in _FILTERS:
        off = np.arange(n)[None, :] - np.arange(n)[:, None]
        if kind == "box":
            m = (np.abs(off) <= int(size) // 2).astype(np.float64)
        else:
            sigma, half = size
            m = np.exp(-off ** 2 / (2 * sigma ** 2)) * (np.abs(off) <= half)
        dense = torch.as_tensor(m, dtype=like.dtype, device=like.device)
        blocks = []
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            cols = np.flatnonzero(m[lo:hi].any(axis=0))
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            blocks.append((lo, hi, c0, c1, dense[lo:hi, c0:c1].contiguous()))
        _FILTERS[key] = Filter(dense, blocks)
    return _FILTERS[key]


def separable(x: torch.Tensor, outer: Filter, inner: Filter, scratch: Scratch | None = None,
              tag: str = "sep") -> torch.Tensor:
    """Filter maps laid out [..., O, I, B] along O and I; the result is in ``scratch`` buffers ``tag``.*.

    The inner pass is one batched product (blocking it would cost a copy per block); the outer pass works on
    contiguous [O, I*B] slabs, so each row block reads and writes contiguous rows with no copy.
    """
    o, i, b = x.shape[-3:]
    x3 = x.reshape(-1, i, b)
    y = torch.matmul(inner.dense, x3, out=take(scratch, f"{tag}.y", tuple(x3.shape), x)).view(-1, o, i * b)
    z = take(scratch, f"{tag}.z", tuple(y.shape), x)
    for k in range(y.shape[0]):
        for lo, hi, c0, c1, m in outer.blocks:
            torch.mm(m, y[k, c0:c1], out=z[k, lo:hi])
    return z.view(x.shape)


def gaussian_blur(x: torch.Tensor, sigma: float, taps: int, scratch: Scratch | None = None) -> torch.Tensor:
    """taps x taps Gaussian blur of std sigma, zero-padded, of maps [..., O, I, B]; unnormalised (only ratios of
    blurs are used)."""
    o, i = x.shape[-3:-1]
    size = (sigma, taps // 2)
    return separable(x, filter_matrix("gauss", o, size, x), filter_matrix("gauss", i, size, x), scratch, "blur")


def box_mean(x: torch.Tensor, k: int, scratch: Scratch | None = None) -> torch.Tensor:
    """Mean of maps [O, I, B] over a k x k box (fewer pixels counted at the borders)."""
    o, i = x.shape[:2]
    bo, bi = filter_matrix("box", o, k, x), filter_matrix("box", i, k, x)
    count = bo.dense.sum(1)[:, None, None] * bi.dense.sum(1)[None, :, None]
    return separable(x, bo, bi, scratch, "box").div_(count)
