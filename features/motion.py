"""Micro-motion inputs of the temporal stream: ΔPhase (the paper's), and phase and optical flow (its ablations).

All functions take aligned gray faces [T, H, W] (48x48 in the paper), uint8 or float in 0..255, numpy or
torch, and return numpy float32 arrays in a dict. They can run on a long video in chunks: pass the last
face of the previous chunk as ``previous`` and the rows equal those of a whole-video run exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch

from .errors import BadInputError
from .pyramid import MirroredFacePyramid

MOTION_VERSION = "1"  # bump whenever the maths of delta_phase/phase/optical_flow changes (cache fingerprints)

_PYRAMIDS: dict[tuple[int, int], MirroredFacePyramid] = {}
_FILTERS: dict[tuple, _Filter] = {}


@dataclass(frozen=True)
class MotionConfig:
    """Settings of the ΔPhase/phase maths; defaults are the paper's released code."""

    sigma: float = 2.0  # Gaussian of the amplitude-weighted denoising blur, pixels
    taps: int = 11  # blur support (taps x taps), zero-padded at the map borders as the released code
    remove_mean: bool = True  # subtract the spatial mean of ΔPhase (rigid head motion)
    mean_window: int | None = None  # None: mean over the whole map (released code); odd k: k x k box at scale 0
    clamp: float = 5 * math.pi  # ΔPhase is clamped to ±clamp after mean removal
    amplitude: str = "geometric"  # blur weight: "geometric" sqrt(A_t A_{t-1}) or "current" A_t

    def __post_init__(self):
        if self.taps < 1 or self.taps % 2 == 0:
            raise ValueError(f"taps must be odd and positive, got {self.taps}")
        if self.mean_window is not None and (self.mean_window < 1 or self.mean_window % 2 == 0):
            raise ValueError(f"mean_window must be None or odd and positive, got {self.mean_window}")
        if self.amplitude not in ("geometric", "current"):
            raise ValueError(f"amplitude must be 'geometric' or 'current', got {self.amplitude!r}")

    def as_dict(self) -> dict:
        """Every setting plus the code version, for cache fingerprints."""
        return {**asdict(self), "version": MOTION_VERSION}


@dataclass(frozen=True)
class FlowConfig:
    """OpenCV Farneback settings for the optical-flow ablation (OpenCV's documented example values)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2

    def as_dict(self) -> dict:
        """Every setting plus the code version, for cache fingerprints."""
        return {**asdict(self), "version": MOTION_VERSION}


def _as_faces(faces, name: str = "faces") -> np.ndarray | torch.Tensor:
    """Check a [T, H, W] stack of faces with even H and W; keep numpy or torch as given."""
    shape = tuple(faces.shape)
    if len(shape) != 3 or shape[1] % 2 or shape[2] % 2 or shape[1] < 16 or shape[2] < 16:
        raise BadInputError(None, f"{name} must be gray faces [T, H, W] with even H, W >= 16, got {shape}",
                            "pass the aligned 48x48 crops (face48), one row per frame")
    return faces


def _batch_last(x) -> torch.Tensor:
    """Faces [T, H, W] (numpy or torch, any dtype) as a [H, W, T] view: the assignment that takes it converts
    dtype and device and transposes in one copy."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.permute(1, 2, 0)


def _pyramid(h: int, w: int) -> MirroredFacePyramid:
    if (h, w) not in _PYRAMIDS:
        _PYRAMIDS[(h, w)] = MirroredFacePyramid((h, w), scales=2, orientations=2)
    return _PYRAMIDS[(h, w)]


def face_bands(faces: torch.Tensor) -> list[torch.Tensor]:
    """Bands of faces [N, H, W] mirror-extended to 2H x 2W, cropped back to the face: [N, 2, H/2^s, W/2^s].

    The extension is the released code's, [[x, flip_w x], [flip_h x, flip_hw x]] with the face top-left:
    periodic without seams, so the FFT's circular boundary sees no edges (it equals symmetric padding by
    H/2 on each side up to a circular shift, which the pyramid commutes with). The bands are those of
    ``ComplexSteerablePyramid((2H, 2W))`` on the extended image.
    """
    return _pyramid(*faces.shape[-2:])(faces)


class _Filter(NamedTuple):
    """A separable filter along one axis: its dense [n, n] matrix, and the matrix split into row blocks
    (lo, hi, col_lo, col_hi, dense[lo:hi, col_lo:col_hi]) that keep only each block's non-zero columns."""

    dense: torch.Tensor
    blocks: list[tuple[int, int, int, int, torch.Tensor]]


def _filter(kind: str, n: int, size, like: torch.Tensor, block: int = 16) -> _Filter:
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
        _FILTERS[key] = _Filter(dense, blocks)
    return _FILTERS[key]


def _separable(x: torch.Tensor, outer: _Filter, inner: _Filter) -> torch.Tensor:
    """Filter maps laid out [..., O, I, B] along O and I.

    The inner pass is one batched product (blocking it would cost a copy per block); the outer pass works on
    contiguous [O, I*B] slabs, so each row block reads and writes contiguous rows with no copy.
    """
    o, i, b = x.shape[-3:]
    y = (inner.dense @ x.reshape(-1, i, b)).view(-1, o, i * b)
    z = torch.empty_like(y)
    for k in range(y.shape[0]):
        for lo, hi, c0, c1, m in outer.blocks:
            torch.mm(m, y[k, c0:c1], out=z[k, lo:hi])
    return z.view(x.shape)


def _blur(x: torch.Tensor, cfg: MotionConfig) -> torch.Tensor:
    """Gaussian blur (unnormalised: only ratios of blurs are used) of maps [..., O, I, B]."""
    o, i = x.shape[-3:-1]
    size = (cfg.sigma, cfg.taps // 2)
    return _separable(x, _filter("gauss", o, size, x), _filter("gauss", i, size, x))


def _remove_mean(x: torch.Tensor, scale: int, cfg: MotionConfig) -> torch.Tensor:
    """Subtract, in place, the mean over the map, or over a k x k box (fewer pixels counted at the borders)."""
    if not cfg.remove_mean:
        return x
    if cfg.mean_window is None:
        return x.sub_(x.mean(dim=(0, 1), keepdim=True))
    k = (cfg.mean_window >> scale) | 1  # the same window in face pixels: half as many at the coarser scale
    o, i = x.shape[:2]
    bo, bi = _filter("box", o, k, x), _filter("box", i, k, x)
    count = bo.dense.sum(1)[:, None, None] * bi.dense.sum(1)[None, :, None]
    return x.sub_(_separable(x, bo, bi).div_(count))


def _delta_band(band: torch.Tensor, scale: int, cfg: MotionConfig) -> torch.Tensor:
    """ΔPhase [O, I, B-1] between consecutive frames of one band [re/im, O, I, B]."""
    re, im = band[0], band[1]
    cr, ci, pr, pi_ = re[..., 1:], im[..., 1:], re[..., :-1], im[..., :-1]
    # in-place wherever possible: fresh multi-MB temporaries cost page faults that rivalled the arithmetic
    # c_t conj(c_{t-1}): its angle is the phase step wrapped to (-pi, pi], right in both directions
    p_re = torch.mul(cr, pr).addcmul_(ci, pi_)
    p_im = torch.mul(ci, pr).addcmul_(cr, pi_, value=-1)
    both = torch.empty((2, *p_re.shape), dtype=p_re.dtype, device=p_re.device)
    if cfg.amplitude == "geometric":  # sqrt(|c_t| |c_t-1|) = sqrt(|p|)
        torch.sqrt(torch.hypot(p_re, p_im, out=both[0]), out=both[1])
    else:
        torch.hypot(cr, ci, out=both[1])
    torch.mul(torch.atan2(p_im, p_re, out=p_im), both[1], out=both[0])
    # Wadhwa et al. 2013: blur(A x) / blur(A), as phase is unreliable where the amplitude is low;
    # a flat image has zero amplitude and numerator: 0, not NaN
    smooth = _blur(both, cfg)
    out = smooth[0].div_(smooth[1].clamp_min_(torch.finfo(smooth.dtype).tiny))
    return _remove_mean(out, scale, cfg).clamp_(-cfg.clamp, cfg.clamp)


def _store(out: dict, s: int, b: int, maps: torch.Tensor, first: int, stop: int) -> None:
    """Write one band's maps [O, I, B] (O = x for orientation 0, y for 1) into out[f"s{s}"][first:stop, b]."""
    rows = maps.permute(2, 1, 0) if b == 0 else maps.permute(2, 0, 1)
    # torch's strided copy transposes about twice as fast as numpy's assignment from a permuted view
    torch.from_numpy(out[f"s{s}"])[first:stop, b].copy_(rows)


def _block(batch_size: int) -> int:
    """Frames per matrix product: batch_size rounded up to a multiple of 16 (tiny products were seen to round
    differently by position; fixed shapes of this size did not)."""
    return max(16, -(-int(batch_size) // 16) * 16)


def _frame_flags(t: int, valid) -> np.ndarray:
    """``valid`` as one bool per frame (all True when None), checked against the t faces."""
    v = np.ones(t, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if v.shape[0] != t:
        raise BadInputError(None, f"valid has {v.shape[0]} entries for {t} faces", "give one flag per frame")
    return v


def _row_mask(t: int, valid, has_previous: bool) -> np.ndarray:
    """Rows whose frame and previous frame are both valid (row 0 needs ``previous``)."""
    v = _frame_flags(t, valid)
    ok = v.copy()
    ok[1:] &= v[:-1]
    if t:
        ok[0] &= has_previous
    return ok


def _batches(faces, ok: np.ndarray, batch_size: int, lead: int, previous, dtype, device):
    """(start, stop, frames) for each batch of rows [start, stop) with at least one ``ok`` row.

    frames is [H, W, lead + batch_size] (batch last: see ``MirroredFacePyramid.native``): ``lead`` (0 or 1) slots
    for the face before the batch (zero when there is none), the batch, then zero padding. Every batch has this
    one fixed shape, so matrix products give each frame the same bits wherever it sits and chunked runs equal
    whole ones.
    """
    t, h, w = faces.shape
    for start in range(0, t, batch_size):
        stop = min(t, start + batch_size)
        if not ok[start:stop].any():
            continue
        frames = torch.zeros((h, w, lead + batch_size), dtype=dtype, device=device)
        frames[..., lead:lead + stop - start] = _batch_last(faces[start:stop])
        if lead and start > 0:
            frames[..., 0] = _batch_last(faces[start - 1:start])[..., 0]
        elif lead and previous is not None:
            frames[..., 0] = _batch_last(previous[-1:])[..., 0]
        yield start, stop, frames


def delta_phase(faces, valid=None, previous=None, *, config: MotionConfig = MotionConfig(), device: str = "cpu",
                batch_size: int = 256, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """ΔPhase of consecutive faces [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32.

    Row t is the denoised, rigid-motion-free phase change from frame t-1 to t, per orientation (0: motion
    along x, 1: along y); a translation by d gives about -omega.d with omega the band's centre frequency.
    Row 0 is 0 unless ``previous`` (the face before ``faces[0]``, e.g. the last one of the previous chunk,
    which must be valid) is given; rows whose frame or previous frame is invalid (``valid`` [T] bool) are 0.
    The blur weight is the geometric mean of the two frames' amplitudes (``config.amplitude``).
    ``batch_size`` frames (rounded up to a multiple of 16) go through the pyramid at a time, bounding
    memory; a short last batch is zero-padded so every matrix product has one shape. Hence chunked calls
    equal one whole call bit for bit when they use the same ``batch_size`` (as measured with MKL and
    tested; it rests on BLAS rounding a column alike wherever it sits in a fixed-shape product); other
    batch sizes agree to rounding (~1e-6 rad).
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = {"s0": np.zeros((t, 2, h, w), np.float32), "s1": np.zeros((t, 2, h // 2, w // 2), np.float32)}
    ok = _row_mask(t, valid, previous is not None)
    if previous is not None:
        previous = _as_faces(previous[None] if previous.ndim == 2 else previous, "previous")
        if tuple(previous.shape[1:]) != (h, w):
            raise BadInputError(None, f"previous face is {tuple(previous.shape[1:])}, faces are {(h, w)}")
    if not ok.any():
        return out
    with torch.no_grad():  # each batch carries the face before it (slot 0) for its first difference
        for start, stop, frames in _batches(faces, ok, _block(batch_size), 1, previous, dtype, device):
            for s, b, band in _pyramid(h, w).native(frames):  # band by band: one band's temporaries at a time
                _store(out, s, b, _delta_band(band, s, config)[..., :stop - start], start, stop)
    for v in out.values():
        v[~ok] = 0
    return out


def phase(faces, valid=None, *, config: MotionConfig = MotionConfig(), device: str = "cpu",
          batch_size: int = 256, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """Denoised phase of each face [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32 in (-pi, pi].

    The denoising is the amplitude-weighted mean taken on the circle, angle(blur(A e^{i phi})), since a
    plain blur(A phi)/blur(A) averages across the 2 pi wraps of a phase map. No mean is removed (a
    circular quantity has no meaningful offset to subtract). Invalid rows are 0.
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = {"s0": np.zeros((t, 2, h, w), np.float32), "s1": np.zeros((t, 2, h // 2, w // 2), np.float32)}
    ok = _frame_flags(t, valid)
    with torch.no_grad():
        for start, stop, frames in _batches(faces, ok, _block(batch_size), 0, None, dtype, device):
            for s, b, band in _pyramid(h, w).native(frames):
                smooth = _blur(band, config)[..., :stop - start]
                _store(out, s, b, torch.atan2(smooth[1], smooth[0]), start, stop)
    for v in out.values():
        v[~ok] = 0
    return out


def _flow_input(faces) -> np.ndarray:
    """uint8 stays 8-bit; float faces go to float32 (Farneback takes both), so no rounding hides changes."""
    a = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    return a if a.dtype == np.uint8 else a.astype(np.float32)


def optical_flow(faces, valid=None, previous=None, *, config: FlowConfig = FlowConfig()) -> dict[str, np.ndarray]:
    """Farneback optical flow from face t-1 to face t -> {"flow": [T, 2, H, W]} float32 (dx, dy in pixels).

    Same row semantics as :func:`delta_phase`: row 0 needs ``previous``; rows touching invalid frames are 0.
    Float faces are used as float32 (no rounding to 8 bits).
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = np.zeros((t, 2, h, w), np.float32)
    ok = _row_mask(t, valid, previous is not None)
    gray = _flow_input(faces)
    before = None if previous is None else _flow_input(previous).astype(gray.dtype).reshape(-1, h, w)[-1]
    for i in range(t):
        prev = gray[i - 1] if i > 0 else before
        if ok[i]:
            flow = cv2.calcOpticalFlowFarneback(
                np.ascontiguousarray(prev), np.ascontiguousarray(gray[i]), None, config.pyr_scale, config.levels,
                config.winsize, config.iterations, config.poly_n, config.poly_sigma, 0)
            out[i] = flow.transpose(2, 0, 1)
    return {"flow": out}


def gamma_jitter(images: np.ndarray, b: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame gamma corruption of uint8 images [T, ...]: 255 (u)^g, u = I/255, g ~ U[1-b, 1+b] (paper Fig. 5)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise BadInputError(None, f"gamma_jitter takes uint8 images, got {images.dtype}")
    if not 0 <= b < 1:
        raise ValueError(f"b must be in [0, 1) so that the gamma stays positive, got {b}")
    t = images.shape[0]
    g = rng.uniform(1 - b, 1 + b, size=t)
    # one 256-entry table per frame: exact and fast whatever the image size
    luts = np.rint(255.0 * (np.arange(256)[None, :] / 255.0) ** g[:, None]).astype(np.uint8)
    return np.take_along_axis(luts, images.reshape(t, -1).astype(np.intp), axis=1).reshape(images.shape)
