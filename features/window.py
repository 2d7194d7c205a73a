"""A soft elliptical window over the face in the aligned crop, for ΔPhase: the face moves, the rest need not.

Why: the aligned crop holds more than the face (hair, ears, neck, and past them the background). With the face
held still by the alignment, everything that is not the face moves in the crop whenever the head moves: the
background slides by the head's whole motion, several pixels, where micro-motions are a fraction of one.
Measured with bench/leakage.py, this sliding border carried most of the ΔPhase energy of a head translation
even with perfect alignment. The window keeps the face oval of the alignment template and tapers to zero outside.

    m(p) = 1                                      r <= 1 - edge
           0.5 - 0.5 cos(pi (1 - r) / edge)       1 - edge < r < 1
           0                                      r >= 1
    r = sqrt(((x - cx) / ax)^2 + ((y - cy) / ay)^2),  x, y = pixel centres as fractions of the crop's width, height

The default ellipse holds the 68 landmarks of ``features.face.template`` (jaw at x 0.17-0.83, brows at y 0.29, chin
at y 0.92 of a crop made with TEMPLATE_SCALE 0.7) plus the forehead: centre (0.5, 0.54), half-axes (0.42, 0.47),
so the micro-motion sites (brows, lids, nose, mouth, chin) lie where m = 1.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

FACE_ELLIPSE = (0.5, 0.54, 0.42, 0.47)  # cx, cy, ax, ay as fractions of the crop (template at TEMPLATE_SCALE 0.7)
FACE_EDGE = 0.25  # the outer quarter of the radius falls from 1 to 0


def face_window(h: int, w: int, ellipse=FACE_ELLIPSE, edge: float = FACE_EDGE) -> np.ndarray:
    """The window m [h, w] (float64 in [0, 1]) of the module docstring, for a crop of h x w pixels."""
    cx, cy, ax, ay = (float(v) for v in ellipse)
    if not (ax > 0 and ay > 0 and 0 < edge <= 1):
        raise ValueError(f"window half-axes must be > 0 and edge in (0, 1], got {ellipse}, {edge}")
    y = (np.arange(h) + 0.5) / h
    x = (np.arange(w) + 0.5) / w
    r = np.hypot((x[None, :] - cx) / ax, (y[:, None] - cy) / ay)
    u = np.clip((1.0 - r) / edge, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


@lru_cache(maxsize=32)
def native_window(h: int, w: int, orientation: int, ellipse, edge: float, dtype: torch.dtype,
                  device: str) -> torch.Tensor:
    """face_window laid out as the pyramid's native band [outer, inner, 1] (outer = x for orientation 0, y for 1)."""
    m = face_window(h, w, ellipse, edge)
    m = m.T if orientation == 0 else m
    return torch.as_tensor(np.ascontiguousarray(m)[..., None], dtype=dtype, device=device)
